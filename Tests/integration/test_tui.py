"""The terminal UI, end to end: the real binary under tmux against a fixture database, driven
with send-keys and read with capture-pane."""
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AUTHTAP, AUTHTAP_BENCH


class Tmux:
    def __init__(self, name, cols=140, rows=40):
        if not shutil.which("tmux"):
            pytest.fail("tmux is not installed: scripts/install-deps installs it")
        self.name = name
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                        "env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm-256color", "LANG=C.UTF-8", "HOME=/tmp",
                        "bash", "--norc", "--noprofile"], check=True)

    def send(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text):
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=True).stdout

    def wait(self, *needles, timeout=10):
        deadline = time.time() + timeout
        s = ""
        while time.time() < deadline:
            s = self.screen()
            if all(n in s for n in needles):
                return s
            time.sleep(0.1)
        raise AssertionError(f"{needles} not on screen:\n{s}")

    def until(self, predicate, what, timeout=10):
        """Polls until predicate(screen) holds: a capture can land mid-redraw, so every check waits."""
        deadline = time.time() + timeout
        s = ""
        while time.time() < deadline:
            s = self.screen()
            if predicate(s):
                return s
            time.sleep(0.1)
        raise AssertionError(f"{what} not on screen:\n{s}")

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def fixture_db(tmp_path):
    db = tmp_path / "tui.sqlite"
    subprocess.run([str(AUTHTAP_BENCH), "generate", "--db", str(db), "--certs", str(tmp_path / "certs"), "--exchanges", "400"],
                   check=True, capture_output=True)
    subprocess.run([str(AUTHTAP), "analyze", "--db", str(db), "--fail-on", "never"], check=True, capture_output=True)
    return db


def test_tui_end_to_end(fixture_db, tmp_path):
    t = Tmux("authtap-tui-e2e")
    try:
        t.type("stty -g > /tmp/stty.before; clear")
        t.send("Enter")
        t.type(f"{AUTHTAP} tui --db {fixture_db}; echo EXITED $?; stty -g > /tmp/stty.after")
        t.send("Enter")
        # Sessions.
        t.wait("authtap › Sessions", "transactions", "errors")
        # Transactions, then a timeline.
        t.send("Enter")
        t.wait("session 1 › Transactions", "app1", "as.example", "failed at callback", "[state-mismatch]")
        t.send("Enter")
        s = t.wait("Transaction 1", "authorize", "callback", "token", "refresh")
        # An exchange: tabs, masked values marked.
        t.send("j", "j", "Enter")
        s = t.wait("Exchange #", "Request", "Response", "TLS")
        t.send("Tab")
        t.wait("HTTP/1.1 200")
        t.send("Tab")
        t.wait("roles:", "[masked")
        t.send("q", "q")
        t.wait("session 1 › Transactions")
        # Exchanges and a filter.
        t.send("3")
        t.wait("Exchanges (")
        t.type("/status:4xx")
        t.send("Enter")
        t.until(lambda s: "filter: status:4xx" in s and " 400 " in s and " 200 " not in s, "only 4xx rows")
        t.type("/")
        for _ in range(12):
            t.send("BSpace")
        t.type("host:cdn")
        t.send("Enter")
        t.until(lambda s: "filter: host:cdn" in s and "/app.js" in s and "as.example" not in s.split("\n", 2)[2], "only cdn rows")
        # A finding: explanation, evidence, fix.
        t.send("4")
        t.wait("Findings", "ERROR")
        t.send("Enter")
        s = t.wait("Why:", "Evidence:", "Fix:")
        t.send("q")
        # Help overlay.
        t.send("?")
        t.wait("follow mode", "PgUp PgDn")
        t.send("Escape")
        # Follow mode: rows written by another process appear.
        t.type("/")
        for _ in range(12):
            t.send("BSpace")
        t.send("Enter")
        t.send("3")
        before = t.wait("Exchanges (")
        count = int(before.split("Exchanges (")[1].split(")")[0])
        t.send("f")
        t.wait("[follow]")
        con = sqlite3.connect(fixture_db)
        cols = [r[1] for r in con.execute("PRAGMA table_info(exchange)")]
        row = con.execute("SELECT * FROM exchange WHERE session_id = 1 ORDER BY id DESC LIMIT 1").fetchone()
        values = dict(zip(cols, row))
        values.pop("id")
        values["host"] = "followed.example"
        con.execute(f"INSERT INTO exchange ({','.join(values)}) VALUES ({','.join('?' * len(values))})", list(values.values()))
        con.commit()
        con.close()
        t.wait(f"Exchanges ({count + 1})", "followed.example")
        # Resize: the layout follows the window.
        subprocess.run(["tmux", "resize-window", "-t", "authtap-tui-e2e", "-x", "90", "-y", "20"], check=True)
        t.until(lambda s: "Exchanges (" in s and all(len(line) <= 90 for line in s.splitlines()), "a 90-column layout")
        # Quit: q from the top view, terminal restored.
        t.send("q", "1", "q")
        t.until(lambda s: "EXITED 0" in s and "authtap ›" not in s, "a clean shell after quitting")
        time.sleep(0.3)
        assert Path("/tmp/stty.before").read_text() == Path("/tmp/stty.after").read_text()
    finally:
        t.close()


def test_tui_restores_the_terminal_on_sigterm(fixture_db):
    t = Tmux("authtap-tui-term")
    try:
        t.type("stty -g > /tmp/stty2.before; clear")
        t.send("Enter")
        t.type(f"{AUTHTAP} tui --db {fixture_db}; echo STATUS $?; stty -g > /tmp/stty2.after; printf 'D%sNE\\n' O")
        t.send("Enter")
        t.wait("authtap › Sessions")
        subprocess.run(["pkill", "-TERM", "-f", f"tui --db {fixture_db}"], check=True)
        # Killed by SIGTERM (status 143), after restoring the terminal.
        t.until(lambda s: "DONE" in s and "STATUS 143" in s and "authtap ›" not in s, "status 143 and a clean shell", timeout=15)
        time.sleep(0.3)
        assert Path("/tmp/stty2.before").read_text() == Path("/tmp/stty2.after").read_text()
    finally:
        t.close()
