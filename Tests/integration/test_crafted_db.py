"""A capture database is a file anyone can edit, cut short or replace. The real commands that read it
(exchanges, sessions, analyze, export, audit --db) must never die on a signal: a damaged row is skipped with one
line naming the row and the column, and a file that is not an authtap database ends the command with one error
line and exit status 1."""
import hashlib
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AUTHTAP, AUTHTAP_BENCH

TIMEOUT = 120


def run(args, cwd):
    return subprocess.run([str(AUTHTAP), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def commands(db, cwd):
    """Every command that reads a capture database, as a user runs it; the exit status each gives on a database
    it can read. audit exits 1 when something looks like a secret, so either status is a finished run."""
    return {
        "exchanges": (["exchanges", "--db", db], {0}),
        "exchanges-json": (["exchanges", "--db", db, "--format", "json", "--tunnels"], {0}),
        "sessions": (["sessions", "--db", db], {0}),
        "sessions-json": (["sessions", "--db", db, "--format", "json"], {0}),
        "analyze": (["analyze", "--db", db, "--all", "--fail-on", "never", "--certs", str(cwd / "certs")], {0}),
        "export": (["export", "--db", db, "--all", "-o", str(cwd / "out.har")], {0}),
        "audit": (["audit", "--db", db], {0, 1}),
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A capture written and analyzed by the real authtap, with its NOT NULL constraints taken out of the
    schema so that the tests can write NULLs where a damaged file would hold them."""
    d = tmp_path_factory.mktemp("crafted")
    db = d / "pristine.sqlite"
    r = subprocess.run([str(AUTHTAP_BENCH), "generate", "--db", str(db), "--exchanges", "200", "--certs", str(d / "certs")],
                       cwd=d, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    r = run(["analyze", "--db", str(db), "--fail-on", "never", "--certs", str(d / "certs")], d)
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'")
    con.commit()
    con.close()
    return db


def damaged(pristine, tmp_path, sql):
    db = tmp_path / "damaged.sqlite"
    shutil.copy(pristine, db)
    shutil.copytree(pristine.parent / "certs", tmp_path / "certs", dirs_exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys = OFF")
    con.executescript(sql)
    con.commit()
    con.close()
    return db


ROLE_ROW = "(SELECT MIN(id) FROM exchange WHERE oauth_roles IS NOT NULL)"
EXCHANGE_READERS = {"exchanges", "exchanges-json", "analyze", "export", "audit"}
SESSION_READERS = {"sessions", "sessions-json"}

# (table, column, SQL value, the line's end or None when the value is one the column may hold, commands that read it)
DAMAGE = [
    ("exchange", "status", "'abc'", "column status holds text; row skipped", EXCHANGE_READERS),
    ("exchange", "port", "1e300", "column port holds 1e+300; row skipped", EXCHANGE_READERS),
    ("exchange", "request_body_size", "-5", "column request_body_size holds -5; row skipped", EXCHANGE_READERS),
    ("exchange", "started_at", "1e300", "column started_at holds 1e+300; row skipped", EXCHANGE_READERS),
    ("exchange", "host", "NULL", "column host holds NULL; row skipped", EXCHANGE_READERS),
    ("exchange", "connection_id", "X'00ff'", "column connection_id holds a blob; row skipped", EXCHANGE_READERS),
    ("exchange", "end_ms", "9e999", "column end_ms holds inf; row skipped", EXCHANGE_READERS),
    ("exchange", "response_body_truncated", "'yes'", "column response_body_truncated holds text; row skipped",
     EXCHANGE_READERS),
    ("exchange", "client_tls", "'{not json'", "column client_tls holds invalid JSON; read as none", EXCHANGE_READERS),
    # A finite duration, however large, is a value the column may hold: read as it is, printed, exported.
    ("exchange", "end_ms", "1e300", None, EXCHANGE_READERS),
    ("exchange", "request_headers", "'[[\"a\"'", None, EXCHANGE_READERS),
    ("session", "started_at", "'yesterday'", "column started_at holds text; row skipped", SESSION_READERS),
    ("session", "ended_at", "1e300", "column ended_at holds 1e+300; row skipped", SESSION_READERS),
    ("session", "dropped", "-1", "column dropped holds -1; row skipped", SESSION_READERS),
    ("oauth_transaction", "started_at", "NULL", "column started_at holds NULL; row skipped", {"export"}),
    ("oauth_transaction", "number", "2.5", "column number holds 2.5; row skipped", {"export"}),
    ("finding", "evidence", "'{bad'", "column evidence holds invalid JSON; read as no evidence", {"export"}),
    ("finding", "exchanges", "'[1e300]'", "column exchanges holds invalid JSON; read as no exchanges", {"export"}),
]


def row_of(table):
    return ROLE_ROW if table == "exchange" else f"(SELECT MIN(id) FROM {table})"


@pytest.mark.parametrize("table,column,value,line,readers", DAMAGE, ids=[f"{d[0]}.{d[1]}={d[2]}" for d in DAMAGE])
@pytest.mark.parametrize("command", list(commands("x", Path("."))))
def test_a_damaged_row_is_reported_and_skipped_never_a_crash(pristine, tmp_path, table, column, value, line, readers,
                                                               command):
    db = damaged(pristine, tmp_path, f"UPDATE {table} SET {column} = {value} WHERE id = {row_of(table)};")
    row = sqlite3.connect(db).execute(f"SELECT {row_of(table)}").fetchone()[0]
    args, statuses = commands("damaged.sqlite", tmp_path)[command]
    r = run(args, tmp_path)
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {r.stderr[-2000:]}"
    assert "crashed" not in r.stderr, r.stderr
    assert r.returncode in statuses, r.stderr[-2000:]
    problems = [x for x in r.stderr.splitlines() if x.startswith("authtap: damaged.sqlite: ")]
    if line is not None and command in readers:
        singular = {"oauth_transaction": "transaction"}.get(table, table)
        assert f"authtap: damaged.sqlite: {singular} {row}: {line}" in problems, r.stderr[-2000:]
    else:
        assert problems == [], r.stderr[-2000:]


def test_the_skipped_exchange_is_left_out_and_the_others_are_listed(pristine, tmp_path):
    db = damaged(pristine, tmp_path, f"UPDATE exchange SET status = 'abc' WHERE id = {ROLE_ROW};")
    con = sqlite3.connect(db)
    total = con.execute("SELECT COUNT(*) FROM exchange").fetchone()[0]
    bad = con.execute(f"SELECT {ROLE_ROW}").fetchone()[0]
    con.close()
    r = run(["exchanges", "--db", "damaged.sqlite", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    ids = [e["id"] for e in json.loads(r.stdout)]
    assert len(ids) == total - 1 and bad not in ids
    assert r.stderr.splitlines() == [f"authtap: damaged.sqlite: exchange {bad}: column status holds text; row skipped"]


def test_every_column_damaged_at_once(pristine, tmp_path):
    cols = {}
    con = sqlite3.connect(pristine)
    for table in ["session", "exchange", "tunnel", "oauth_transaction", "transaction_member", "finding", "handshake"]:
        cols[table] = [c[1] for c in con.execute(f"PRAGMA table_info({table})") if c[1] != "id"]
    con.close()
    for value in ["NULL", "'text'", "X'00ff'", "1e300", "-5", "9e999"]:
        sql = "".join(f"UPDATE OR IGNORE {t} SET {c} = {value};" for t, cs in cols.items() for c in cs)
        sub = tmp_path / value.strip("'").replace("-", "minus")
        sub.mkdir()
        damaged(pristine, sub, sql)
        for name, (args, statuses) in commands("damaged.sqlite", sub).items():
            r = run(args, sub)
            assert r.returncode >= 0, f"{name} with {value}: killed by signal {-r.returncode}: {r.stderr[-2000:]}"
            assert r.returncode in statuses, f"{name} with {value}: {r.stderr[-2000:]}"
            assert "crashed" not in r.stderr


def one_error_line(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("command", list(commands("x", Path("."))))
def test_a_file_that_is_not_sqlite(tmp_path, command):
    f = tmp_path / "notes.sqlite"
    f.write_text("these are not the pages you are looking for\n" * 100)
    before = f.read_bytes()
    args, _ = commands("notes.sqlite", tmp_path)[command]
    r = run(args, tmp_path)
    assert r.returncode == 1, r.stderr
    assert one_error_line(r) == "Error: notes.sqlite is not a SQLite database (file is not a database)"
    assert f.read_bytes() == before


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("command", list(commands("x", Path("."))))
def test_a_truncated_database(pristine, tmp_path, fraction, command):
    data = pristine.read_bytes()
    (tmp_path / "cut.sqlite").write_bytes(data[: int(len(data) * fraction)])
    shutil.copytree(pristine.parent / "certs", tmp_path / "certs")
    args, _ = commands("cut.sqlite", tmp_path)[command]
    r = run(args, tmp_path)
    assert r.returncode == 1, r.stderr
    assert one_error_line(r).startswith("Error: cut.sqlite is damaged (database disk image is malformed)")


@pytest.mark.parametrize("command", list(commands("x", Path("."))))
def test_another_programs_database_is_refused_and_left_alone(tmp_path, command):
    f = tmp_path / "other.sqlite"
    con = sqlite3.connect(f)
    con.executescript("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');")
    con.close()
    before = hashlib.sha256(f.read_bytes()).hexdigest()
    args, _ = commands("other.sqlite", tmp_path)[command]
    r = run(args, tmp_path)
    assert r.returncode == 1, r.stderr
    assert one_error_line(r) == ("Error: other.sqlite is not an authtap capture database "
                                 "(it has other tables, not authtap's)")
    assert hashlib.sha256(f.read_bytes()).hexdigest() == before
    assert not (tmp_path / "other.sqlite-wal").exists()


def test_the_tui_browses_a_damaged_database(pristine, tmp_path):
    """Extreme values a column may hold (a 1e300 ms duration, port 99999, status 2^41, dates in years 1 and 9999,
    sizes near Int64.max) reach every view of the TUI, beside a row that is skipped; it keeps running and quits
    cleanly."""
    from test_tui import Tmux
    db = damaged(pristine, tmp_path, """
        UPDATE exchange SET status = 'abc' WHERE id = 1;
        UPDATE exchange SET end_ms = 1e300, connect_ms = -1e300, tls_ms = 1e300, first_byte_ms = -1e300
          WHERE id BETWEEN 2 AND 10;
        UPDATE exchange SET port = 99999, status = 2199023255552, started_at = 253402300799,
          response_body_size = 9000000000000000000, response_body_decoded_size = 9000000000000000000,
          response_body_encoding = 'gzip' WHERE id BETWEEN 11 AND 15;
        UPDATE exchange SET started_at = -62135596800, status = -5 WHERE id BETWEEN 16 AND 20;
        UPDATE session SET ended_at = 253402300799, dropped = 9000000000000000000;
        UPDATE oauth_transaction SET started_at = -62135596800, number = 9000000000000000000
          WHERE id = (SELECT MIN(id) FROM oauth_transaction);
        UPDATE finding SET exchanges = '[9223372036854775807, -9223372036854775808]'
          WHERE id = (SELECT MIN(id) FROM finding);
        """)
    t = Tmux("authtap-crafted-tui")
    try:
        t.type(f"{AUTHTAP} tui --db {db} 2>/dev/null; echo EXITED $?")
        t.send("Enter")
        t.wait("authtap › Sessions")
        for keys in (["Enter"], ["Enter"], ["j", "j", "Enter", "Tab", "Tab", "q", "q"]):
            t.send(*keys)
            time.sleep(0.3)
        t.send("3")
        t.wait("Exchanges (")
        for _ in range(16):
            t.send("j", "Enter", "Tab", "Tab", "Tab", "q")
            time.sleep(0.2)
        t.send("4")
        t.wait("Findings")
        t.send("Enter")
        time.sleep(0.3)
        t.send("q", "2")
        time.sleep(0.3)
        t.send("q", "1", "q")
        t.until(lambda s: "EXITED 0" in s, "a clean exit")
    finally:
        t.close()
