"""The terminal is not the server's: escape sequences that a server, a client or a file sends reach the console
only as visible text. A hostile upstream sends them in error_description, in headers and in JWT claims through the
real proxy; a HAR and a pcap carry them into import and capture. Every console output is then read as raw bytes."""
import base64
import http.server
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import AUTHTAP

pytestmark = pytest.mark.faults

# Terminal attacks: an OSC 8 hyperlink, a window title, clear screen, colour, raw C1 CSI, a bidi override.
OSC8 = "\x1b]8;;https://evil.test/\x1b\\click me\x1b]8;;\x1b\\"
TITLE = "\x1b]0;pwned\x07"
PAYLOAD = OSC8 + TITLE + "\x1b[2J\x1b[31mRED\u009b31mC1 exe.\u202egnp"
# What the escaped payload starts with on screen: the OSC 8 opener, visible.
VISIBLE = r"\x1b]8;;https://evil.test/"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_jwt():
    header = b64url(json.dumps({"alg": "RS256", "kid": "\x1b[2Jk1"}).encode())
    claims = {"iss": "https://evil.test/" + PAYLOAD, "aud": "other-app" + PAYLOAD, "sub": PAYLOAD,
              "iat": 1e300, "nbf": 1e300, "exp": -1e300}
    return f"{header}.{b64url(json.dumps(claims).encode())}.c2lnbmF0dXJlc2lnbmF0dXJl"


class Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        # An authorization error whose code is the attack: the live FINDING line's title quotes the code.
        location = "https://app.test/cb?state=st1&error=" + urllib.parse.quote("access_denied" + PAYLOAD, safe="")
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(n).decode()
        if "code=evil" in form:
            # A hostile error code: it is quoted in the finding's title, on the proxy's live FINDING line.
            status = 400
            body = {"error": "access_denied" + PAYLOAD, "error_description": PAYLOAD}
        elif "code=good" in form:
            status = 200
            body = {"access_token": "AT-hostile-0001", "token_type": "Bearer", "expires_in": 3600,
                    "id_token": hostile_jwt()}
        else:
            # The known crash: a huge number in error_codes; the description is the terminal attack.
            status = 400
            body = {"error": "invalid_grant", "error_description": PAYLOAD, "error_codes": [1e300]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # HTTP parsers refuse C0 controls in a header, but obs-text (0x80-0xFF) passes: a lone 0x9B byte (C1 CSI
        # where read as latin-1) and a UTF-8 bidi override. http.server writes the value as latin-1.
        self.send_header("X-Evil", "\u009b2J" + "exe.\u202egnp".encode().decode("latin-1"))
        self.send_header("WWW-Authenticate", 'Bearer error="invalid_token", error_description="\u009b0;t"')
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hostile(pki):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["good"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def assert_terminal_safe(data: bytes, what: str):
    """No byte a terminal would act on: ESC, raw C1 (UTF-8 encoded or a lone byte), bidi overrides, BEL."""
    assert b"\x1b" not in data, f"{what}: raw ESC in {data[:2000]!r}"
    assert b"\x07" not in data, f"{what}: raw BEL"
    text = data.decode("utf-8", errors="surrogateescape")
    for ch in text:
        code = ord(ch)
        assert not (0x80 <= code <= 0x9F), f"{what}: C1 control U+{code:04X}"
        assert not (0xDC80 <= code <= 0xDC9F), f"{what}: lone byte 0x{code - 0xDC00:02X} (C1 when read as latin-1)"
        assert not (0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069), f"{what}: bidi control U+{code:04X}"


def run(*args, timeout=60):
    return subprocess.run([str(AUTHTAP), *args], capture_output=True, timeout=timeout)


def token_request(p, port, code):
    form = f"grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&client_id=app1"
    return p.curl("--cacert", p.bundle, "-d", form, f"https://localhost:{port}/oauth2/token")


def wait_stdout(p, needle, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = p.stdout_path.read_bytes()
        if needle in data:
            return data
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in the proxy's stdout: {p.stdout_path.read_bytes()[-3000:]!r}")


@pytest.fixture
def hostile_session(make_proxy, hostile):
    """A proxy session with the hostile token endpoint's answers: an error, then a success with a hostile JWT."""
    p = make_proxy()
    bad = token_request(p, hostile, "bad")
    assert bad.returncode == 0, bad.stderr
    assert b"invalid_grant" in bad.stdout
    good = token_request(p, hostile, "good")
    assert good.returncode == 0, good.stderr
    evil = token_request(p, hostile, "evil")
    assert evil.returncode == 0, evil.stderr
    auth = p.curl("--cacert", p.bundle, "-o", "/dev/null", "-w", "%{http_code}",
                  f"https://localhost:{hostile}/authorize?response_type=code&client_id=app1&state=st1"
                  "&redirect_uri=https%3A%2F%2Fapp.test%2Fcb")
    assert auth.stdout == b"302", auth
    # Live analysis prints FINDING lines 300 ms after an exchange; the proxy must still be running.
    out = wait_stdout(p, b"FINDING [error] jwt-invalid")
    assert p.proc.poll() is None, "the proxy died: " + p.stderr_path.read_text()
    return p, out


def test_live_proxy_console_survives_and_escapes(hostile_session):
    p, _ = hostile_session
    time.sleep(0.5)
    assert p.stop() == 0, p.stderr_path.read_text()
    out = p.stdout_path.read_bytes()
    assert_terminal_safe(out, "proxy stdout")
    assert_terminal_safe(p.stderr_path.read_bytes(), "proxy stderr")
    # The huge numbers were analyzed live (clamped), not a crash.
    assert b"clock-skew: id_token issued 9223372036854775807 s in the future" in out


def test_analyze_exchanges_and_audit_output_is_escaped(hostile_session):
    p, _ = hostile_session
    p.stop()
    text = run("analyze", "--db", str(p.db), "--certs", str(p.certs), "--fail-on", "never")
    assert text.returncode == 0, text.stderr
    assert_terminal_safe(text.stdout, "analyze text")
    assert VISIBLE.encode() in text.stdout, text.stdout.decode()
    # The JWT claims reach the findings too (audience, clock skew from iat=1e300).
    assert b"aud: other-app" + VISIBLE.encode() in text.stdout, text.stdout.decode()
    for args in (["analyze", "--format", "json", "--fail-on", "never", "--certs", str(p.certs)],
                 ["exchanges"], ["exchanges", "--format", "json", "--tunnels"], ["sessions"], ["audit"]):
        out = run(*args, "--db", str(p.db))
        assert out.returncode in (0, 1), (args, out.stderr)
        assert_terminal_safe(out.stdout, " ".join(args))
        assert_terminal_safe(out.stderr, " ".join(args) + " (stderr)")
    # JSON output stays the same document: the header value still decodes to what the server sent.
    dump = json.loads(run("exchanges", "--format", "json", "--db", str(p.db)).stdout)
    values = [v for e in dump for name, v in e["responseHeaders"] if name.lower() == "x-evil"]
    assert values and "2J" in values[0] and "gnp" in values[0], values


def test_tui_screen_holds_no_payload_control(hostile_session, tmp_path):
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed: scripts/install-deps installs it")
    p, _ = hostile_session
    p.stop()
    assert run("analyze", "--db", str(p.db), "--certs", str(p.certs), "--fail-on", "never").returncode == 0
    name = "authtap-term-test"
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "env", "-i", "PATH=/usr/bin:/bin",
                    "TERM=xterm-256color", "LANG=C.UTF-8", "HOME=/tmp", str(AUTHTAP), "tui", "--db", str(p.db)],
                   check=True)

    def keys(*k):
        subprocess.run(["tmux", "send-keys", "-t", name, *k], check=True)

    def screen(escapes=True):
        args = ["tmux", "capture-pane", "-p", "-t", name] + (["-e"] if escapes else [])
        return subprocess.run(args, capture_output=True, check=True).stdout

    def wait(needle, timeout=10):
        deadline = time.time() + timeout
        s = b""
        while time.time() < deadline:
            s = screen(escapes=False)
            if needle in s:
                return
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not on screen:\n{s.decode(errors='replace')}")

    def check(what):
        raw = screen()
        # capture-pane -e renders the TUI's own styling as SGR sequences (ESC [ ... m); nothing else may appear.
        stripped = re.sub(rb"\x1b\[[0-9;:]*m", b"", raw)
        assert_terminal_safe(stripped, what)
        assert b"\x1b[31mRED" not in raw and b"\x1b]" not in raw and b"\x1b[2J" not in raw, what
        return raw

    try:
        wait(b"Sessions")
        keys("Enter")
        wait(b"Transactions")
        keys("4")
        wait(b"Findings")
        check("findings list")
        keys("Enter")
        wait(b"Why:")
        shown = check("finding detail")
        assert b"\\x1b" in shown, shown.decode(errors="replace")
        # Every tab of every exchange: headers, bodies, the JWT's claims.
        keys("3")
        wait(b"Exchanges")
        for row in range(2):
            keys("g")
            for _ in range(row):
                keys("j")
            keys("Enter")
            wait(b"Exchange #")
            for tab in range(6):
                time.sleep(0.3)
                check(f"exchange row {row} tab {tab}")
                keys("Tab")
            keys("Escape")
            wait(b"Exchanges")
        keys("Tab")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def har_entry(method, url):
    return {
        "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 5,
        "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "Content-Type", "value": "application/x-www-form-urlencoded"}],
                    "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 1e300,
                    "postData": {"mimeType": "application/x-www-form-urlencoded",
                                 "text": "grant_type=authorization_code&code=c1&client_id=app1"}},
        "response": {"status": 400, "statusText": "Bad", "httpVersion": "HTTP/1.1", "headers": [
                     {"name": "Content-Type", "value": "application/json"}], "cookies": [],
                     "content": {"size": 1e300, "mimeType": "application/json",
                                 "text": json.dumps({"error": "invalid_grant", "error_description": PAYLOAD,
                                                     "error_codes": [1e300]})},
                     "redirectURL": "", "headersSize": -1, "bodySize": 1e300},
        "cache": {}, "timings": {"send": 1, "wait": 1e300, "receive": 1}}


def test_imported_har_with_hostile_url_method_and_creator(tmp_path):
    # bodySize 1e300 and error_codes [1e300] are the two known crashes; the strings are the terminal attack.
    har = {"log": {"version": "1.2", "creator": {"name": "evil\x1b]0;t\x07", "version": "1"}, "entries": [
        har_entry("PO\u009bST", "https://idp.test/tok\x1b[2Jen\u202e?x=1"),
        har_entry("POST", "https://idp.test/oauth2/token")]}}
    path = tmp_path / "hostile.har"
    path.write_text(json.dumps(har))
    db, certs = str(tmp_path / "db.sqlite"), str(tmp_path / "certs")
    out = run("import", str(path), "--db", db, "--certs", certs)
    assert out.returncode == 0, out.stderr
    assert_terminal_safe(out.stdout + out.stderr, "import")
    assert rb"evil\x1b]0;t\x07" in out.stdout
    ex = run("exchanges", "--db", db)
    assert_terminal_safe(ex.stdout, "exchanges text")
    assert rb"PO\u{9b}ST https://idp.test/tok\x1b[2Jen\u{202e}" in ex.stdout, ex.stdout
    an = run("analyze", "--db", db, "--certs", certs, "--fail-on", "never")
    assert an.returncode == 0, an.stderr
    assert_terminal_safe(an.stdout, "analyze of the import")
    assert VISIBLE.encode() in an.stdout
    audit = run("audit", str(path))
    assert_terminal_safe(audit.stdout + audit.stderr, "audit of the HAR")


def test_handshakes_with_hostile_sni_and_certificate(tmp_path):
    # The real fixture with every "localhost" (SNI, certificate CN and SAN) replaced by a payload of the same length.
    data = (FIXTURES / "pcap" / "completed.pcap").read_bytes()
    assert b"localhost" in data
    hostile = tmp_path / "hostile.pcap"
    hostile.write_bytes(data.replace(b"localhost", b"\x1b[2J\x9b31mZ"))
    db = str(tmp_path / "db.sqlite")
    cap = run("capture", "--read", str(hostile), "--db", db)
    assert cap.returncode == 0, cap.stderr
    assert_terminal_safe(cap.stdout + cap.stderr, "capture --read")
    hs = run("handshakes", "--db", db)
    assert hs.returncode == 0, hs.stderr
    assert_terminal_safe(hs.stdout, "handshakes")
    assert rb"sni=\x1b[2J" in hs.stdout, hs.stdout
    js = run("handshakes", "--db", db, "--format", "json")
    assert_terminal_safe(js.stdout, "handshakes json")
