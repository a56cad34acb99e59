"""Side channels (issue 16 §3): what authtap writes beside the masked store must not leak either.
Files are 0600 and folders 0700 even under `umask 000`; SSLKEYLOGFILE alone never turns key logging on;
a pcap written with --pcap-write holds none of the plaintext that crossed the proxy's own listen port."""
import base64
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AUTHTAP

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcap"

PROXY_PASS = "CANARYsideProxyPASS0101"
HTTP_QUERY = "CANARYsidePlainQUERY0102"


def mode(path):
    return oct(stat.S_IMODE(os.stat(path).st_mode))


@pytest.fixture
def umask_000():
    """authtap and every child it is started from here inherit a umask that would make files 0666."""
    old = os.umask(0)
    yield
    os.umask(old)


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("live capture needs root or CAP_NET_RAW; CI runs as root")


def test_files_are_owner_only_under_umask_000(umask_000, make_proxy, upstreams, tmp_path):
    keylog = tmp_path / "keys.log"
    p = make_proxy("--keylog", str(keylog))
    ok = p.curl("--cacert", p.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert ok.stdout == b'{"hello":"world"}', ok.stderr
    p.wait_for(lambda ex: len(ex) == 1)
    # While the proxy runs, SQLite's own -wal and -shm exist beside the database.
    db = p.db
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert mode(f) == "0o600", f
    assert mode(db.parent) == "0o700"  # Captures/, made by authtap
    assert mode(keylog) == "0o600" and keylog.read_text().strip()
    assert mode(p.certs) == "0o700" and mode(p.certs / "authtap-ca.key") == "0o600"
    assert mode(p.certs / "fingerprint.key") == "0o600"
    # The CA certificate and the trust bundle are public on purpose: other users' clients read them.
    assert mode(p.certs / "authtap-ca.pem") == "0o644" and mode(p.certs / "ca-bundle.pem") == "0o644"
    assert p.stop() == 0

    # HAR export: a new file, and an existing world-readable one, end up 0600.
    har = tmp_path / "out.har"
    old = tmp_path / "old.har"
    old.write_text("{}")
    old.chmod(0o666)
    for out in (har, old):
        r = subprocess.run([str(AUTHTAP), "export", "--db", str(db), "--all", "-o", str(out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert mode(out) == "0o600", out
    assert b'"entries"' in har.read_bytes()

    # An existing database (and a stale -wal) that authtap opens again is tightened; so is its Captures folder.
    db.chmod(0o644)
    db.parent.chmod(0o755)
    r = subprocess.run([str(AUTHTAP), "sessions", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(db) == "0o600" and mode(db.parent) == "0o700"


def test_folders_made_for_a_db_path_are_0700_and_others_keep_their_mode(umask_000, tmp_path):
    db = tmp_path / "new" / "deeper" / "c.sqlite"
    r = subprocess.run([str(AUTHTAP), "capture", "--read", str(FIXTURES / "completed.pcap"), "--db", str(db),
                        "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(tmp_path / "new") == "0o700" and mode(tmp_path / "new" / "deeper") == "0o700"
    assert mode(db) == "0o600"
    # A folder the user made is theirs: authtap does not change it.
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o755)
    r = subprocess.run([str(AUTHTAP), "capture", "--read", str(FIXTURES / "completed.pcap"), "--db",
                        str(mine / "c.sqlite"), "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(mine) == "0o755" and mode(mine / "c.sqlite") == "0o600"


def test_sslkeylogfile_alone_writes_nothing_and_warns(make_proxy, upstreams, tmp_path, monkeypatch):
    inherited = tmp_path / "inherited-keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(inherited))
    p = make_proxy()
    # curl honours SSLKEYLOGFILE itself: the client must not write the file this test watches.
    monkeypatch.delenv("SSLKEYLOGFILE")
    ok = p.curl("--cacert", p.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert ok.stdout == b'{"hello":"world"}', ok.stderr
    p.wait_for(lambda ex: len(ex) == 1)
    assert p.stop() == 0
    assert not inherited.exists()
    warnings = [l for l in p.stderr_path.read_text().splitlines() if "SSLKEYLOGFILE" in l]
    assert len(warnings) == 1, p.stderr_path.read_text()
    assert "ignored" in warnings[0] and "--keylog FILE" in warnings[0]
    assert "TLS key log" not in p.stdout_path.read_text()


def test_keylog_option_writes_lines_and_does_not_warn(make_proxy, upstreams, tmp_path, monkeypatch):
    inherited = tmp_path / "inherited-keys.log"
    chosen = tmp_path / "chosen-keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(inherited))
    p = make_proxy("--keylog", str(chosen))
    monkeypatch.delenv("SSLKEYLOGFILE")
    ok = p.curl("--cacert", p.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert ok.stdout == b'{"hello":"world"}', ok.stderr
    p.wait_for(lambda ex: len(ex) == 1)
    assert p.stop() == 0
    lines = chosen.read_text().splitlines()
    assert lines and all(l.split()[0].isupper() and len(l.split()) == 3 for l in lines), lines
    assert not inherited.exists()
    assert "SSLKEYLOGFILE" not in p.stderr_path.read_text()
    assert f"TLS key log: {chosen}" in p.stdout_path.read_text()


def test_keylog_help_says_sslkeylogfile_is_ignored():
    out = subprocess.run([str(AUTHTAP), "proxy", "--help"], capture_output=True, text=True, timeout=30)
    text = " ".join(out.stdout.split())
    assert "SSLKEYLOGFILE is ignored" in text and "--pcap-write-plaintext" in text


def send_secrets_through_the_listen_port(p, upstreams):
    """An HTTPS request (its CONNECT carries Proxy-Authorization) and a plain http:// one with a canary query."""
    auth = ["--proxy-user", f"dev:{PROXY_PASS}"]
    ok = p.curl(*auth, "--cacert", p.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert ok.stdout == b'{"hello":"world"}', ok.stderr
    plain = p.curl(*auth, f"http://127.0.0.1:{upstreams['plain'].port}/hello?note={HTTP_QUERY}")
    assert plain.stdout == b'{"hello":"world"}', plain.stderr
    p.wait_for(lambda ex: len(ex) == 2)


def canaries():
    basic = base64.b64encode(f"dev:{PROXY_PASS}".encode())
    return [PROXY_PASS.encode(), basic, HTTP_QUERY.encode()]


def tshark_fields(tshark, pcap, display_filter, *fields, keylog=None):
    args = [tshark, "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    if keylog:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


def test_pcap_write_cuts_the_listen_port_plaintext(umask_000, make_proxy, upstreams, tmp_path):
    needs_root()
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed: scripts/install-deps --test installs it"
    written = tmp_path / "proxy.pcap"
    keylog = tmp_path / "keys.log"
    good = upstreams["good"].port
    p = make_proxy("--pcap", "lo", "--pcap-port", str(good), "--pcap-write", str(written), "--keylog", str(keylog),
                   "--proxy-auth", f"dev:{PROXY_PASS}")
    time.sleep(0.5)
    send_secrets_through_the_listen_port(p, upstreams)
    time.sleep(1.0)
    assert p.stop() == 0
    data = written.read_bytes()
    assert mode(written) == "0o600"
    for canary in canaries():
        assert canary not in data, canary
    assert b"Proxy-Authorization" not in data and b"CONNECT " not in data
    # The listen port's plaintext packets are still there, cut after the TCP header with their length kept.
    cut = tshark_fields(tshark, written, f"tcp.port == {p.port} and frame.cap_len < frame.len", "frame.number")
    assert len(cut) >= 4, cut
    # The TLS handshakes stay visible: the upstream leg, and the client leg (whole TLS records on lo).
    hellos = tshark_fields(tshark, written, "tls.handshake.type == 1", "tcp.dstport",
                           "tls.handshake.extensions_server_name")
    assert [str(good), "localhost"] in hellos and [str(p.port), "localhost"] in hellos, hellos
    # With the key log, both legs of the HTTPS request still decrypt.
    legs = tshark_fields(tshark, written, 'http.request.uri == "/hello" or http2.headers.path == "/hello"',
                         "frame.number", keylog=keylog)
    assert len(legs) >= 2, legs
    # authtap reads its own file back: the upstream handshake completed.
    db = tmp_path / "again.sqlite"
    r = subprocess.run([str(AUTHTAP), "capture", "--read", str(written), "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"→ 127.0.0.1:{good}  completed" in r.stdout, r.stdout


def test_pcap_write_plaintext_is_an_explicit_opt_in(make_proxy, upstreams, tmp_path):
    needs_root()
    written = tmp_path / "plain.pcap"
    p = make_proxy("--pcap", "lo", "--pcap-write", str(written), "--pcap-write-plaintext",
                   "--proxy-auth", f"dev:{PROXY_PASS}")
    time.sleep(0.5)
    send_secrets_through_the_listen_port(p, upstreams)
    time.sleep(1.0)
    assert p.stop() == 0
    data = written.read_bytes()
    assert HTTP_QUERY.encode() in data and base64.b64encode(f"dev:{PROXY_PASS}".encode()) in data


def test_capture_write_is_0600_under_umask_000(umask_000, tmp_path):
    needs_root()
    written = tmp_path / "live.pcap"
    written.write_bytes(b"")
    written.chmod(0o666)  # an existing file is truncated and tightened
    r = subprocess.run([str(AUTHTAP), "capture", "--interface", "lo", "--duration", "1", "--quiet",
                        "--db", str(tmp_path / "c.sqlite"), "--write", str(written)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(written) == "0o600" and written.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"
