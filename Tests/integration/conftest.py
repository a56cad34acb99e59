"""Integration harness: real peers on loopback (curl, Python requests, openssl s_server/s_client,
Python http.server wrapped in ssl) around a real `authtap proxy` process."""
import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
AUTHTAP = Path(os.environ.get("AUTHTAP_BIN", ROOT / ".build" / "debug" / "authtap")).resolve()
# The benchmark tools (generate, record) live in their own binary, built beside authtap.
AUTHTAP_BENCH = Path(os.environ.get("AUTHTAP_BENCH_BIN", AUTHTAP.parent / "authtap-bench")).resolve()
LARGE_SEED = b"authtap-large-body"


# ---------- test PKI, made at test time ----------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="authtap test upstream CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca_cert, ca_key, names=("localhost", "127.0.0.1"), not_before=None, not_after=None, self_signed=False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = []
    import ipaddress
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    issuer = _name(names[0]) if self_signed else ca_cert.subject
    builder = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - datetime.timedelta(days=1))
               .not_valid_after(not_after or now + datetime.timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    cert = builder.sign(key if self_signed else ca_key, hashes.SHA256())
    return cert, key


def write_pem(path, cert=None, key=None):
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    Path(path).write_bytes(data)
    return str(path)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = make_ca()
    now = datetime.datetime.now(datetime.timezone.utc)
    leaves = {
        "good": make_leaf(ca_cert, ca_key),
        "expired": make_leaf(ca_cert, ca_key, not_before=now - datetime.timedelta(days=60), not_after=now - datetime.timedelta(days=1)),
        "future": make_leaf(ca_cert, ca_key, not_before=now + datetime.timedelta(days=10), not_after=now + datetime.timedelta(days=40)),
        "wronghost": make_leaf(ca_cert, ca_key, names=("other.example",)),
        "selfsigned": make_leaf(None, None, self_signed=True),
    }
    out = {"dir": d, "ca": write_pem(d / "upstream-ca.pem", ca_cert)}
    for name, (cert, key) in leaves.items():
        out[name] = (write_pem(d / f"{name}.pem", cert), write_pem(d / f"{name}.key", key=key))
    return out


# ---------- upstream servers ----------

CANARY = {
    "query_code": "CANARYqueryCODE0001",
    "form_code": "CANARYformCODE0002",
    "client_secret": "CANARYclientSECRET0003",
    "code_verifier": "CANARYverifierVERIFIERverifierVERIFIER00004",
    "password": "CANARYpassword0005",
    "refresh_token": "CANARYrefreshTOKEN0006",
    "basic_secret": "CANARYbasicSECRET0007",
    "bearer": "CANARYbearerTOKEN0008",
    "cookie": "CANARYcookieVALUE0009",
    "set_cookie": "CANARYsetCOOKIE0010",
    "resp_access": "CANARYrespACCESS0011",
    "resp_refresh": "CANARYrespREFRESH0012",
    "jwt_sig": "CANARYjwtSIGNATUREcanaryJWTsignature0013",
    "location_code": "CANARYlocationCODE0014",
    "fragment_token": "CANARYfragmentTOKEN0015",
    "nested_assertion": "CANARYnestedASSERTION0016",
    "device_code": "CANARYdeviceCODE0017",
    "proxy_pass": "CANARYproxyPASS0018",
    "referer_code": "CANARYrefererCODE0019",
    "json_req_secret": "CANARYjsonREQsecret0020",
}


def canary_jwt():
    import base64
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return enc(b'{"alg":"RS256","typ":"JWT"}') + "." + enc(b'{"sub":"alice","iss":"https://idp.test"}') + "." + CANARY["jwt_sig"]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        h = hashlib.sha256()
        got = 0
        chunks = []
        while got < n:
            chunk = self.rfile.read(min(1 << 16, n - got))
            if not chunk:
                break
            got += len(chunk)
            h.update(chunk)
            if got <= 1 << 20:
                chunks.append(chunk)
        self.body_sha = h.hexdigest()
        self.body_len = got
        return b"".join(chunks)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "12345")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        if getattr(self, "drop_next", False):
            # A keep-alive connection the server gives up on: read the request, close without answering.
            self.close_connection = True
            return
        if path == "/then-drop":
            self.drop_next = True
            self._send(200, b'{"then":"drop"}')
            return
        if path == "/204":
            self.send_response(204)
            self.end_headers()
            return
        if path == "/304":
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        if path == "/hello":
            self._send(200, b'{"hello":"world"}')
        elif path.startswith("/large/"):
            n = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = hashlib.sha256(LARGE_SEED).digest() * 2048  # 64 KiB
            sent = 0
            while sent < n:
                part = block[: min(len(block), n - sent)]
                self.wfile.write(part)
                sent += len(part)
        elif path == "/authorize":
            loc = f"https://app.test/cb?code={CANARY['location_code']}&state=xyz#access_token={CANARY['fragment_token']}&token_type=bearer"
            self._send(302, b"", "text/html", [("Location", loc)])
        elif path == "/userinfo":
            self._send(200, b'{"sub":"alice","email":"a@example.test"}', headers=[("Set-Cookie", f"sid={CANARY['set_cookie']}; Path=/; HttpOnly")])
        elif path == "/reset":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            sock = self.connection
            try:
                raw = sock.unwrap() if isinstance(sock, ssl.SSLSocket) else sock
            except Exception:
                raw = sock
            import struct
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            self.close_connection = True
        else:
            self._send(404, b'{"error":"not_found"}')

    def do_POST(self):
        if self.path.startswith("/early"):
            # Answers before reading the request body, then closes (as some login pages and WAFs do).
            self.close_connection = True
            self._send(200, b'{"early":true}', headers=[("Connection", "close")])
            return
        body = self._body()
        path = self.path.split("?")[0]
        if path == "/token":
            resp = {"access_token": CANARY["resp_access"], "token_type": "Bearer", "expires_in": 3600,
                    "refresh_token": CANARY["resp_refresh"], "id_token": canary_jwt(), "scope": "openid"}
            self._send(200, json.dumps(resp).encode(), headers=[("Cache-Control", "no-store")])
        elif path == "/echo-size":
            self._send(200, json.dumps({"size": self.body_len, "sha256": self.body_sha}).encode())
        elif path == "/device":
            self._send(200, json.dumps({"device_code": CANARY["device_code"], "user_code": "ABCD-EFGH",
                                        "verification_uri": "https://idp.test/device", "expires_in": 600}).encode())
        else:
            self._send(200, json.dumps({"received": len(body)}).encode())


class Server:
    def __init__(self, cert=None, key=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        self.httpd.daemon_threads = True
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def upstreams(pki):
    servers = {name: Server(*pki[name]) for name in ("good", "expired", "future", "wronghost", "selfsigned")}
    servers["plain"] = Server()
    yield servers
    for s in servers.values():
        s.stop()


# ---------- the proxy ----------

class Proxy:
    def __init__(self, workdir, pki, extra=()):
        self.workdir = Path(workdir)
        self.certs = self.workdir / "certs"
        self.db = self.workdir / "Captures" / "authtap.sqlite"
        self.stdout_path = self.workdir / "proxy.stdout"
        self.stderr_path = self.workdir / "proxy.stderr"
        args = [str(AUTHTAP), "proxy", "--listen", "127.0.0.1:0", "--certs", str(self.certs), "--db", str(self.db),
                "--upstream-ca", pki["ca"], "--connect-timeout", "3", *extra]
        self.proc = subprocess.Popen(args, stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"), cwd=self.workdir)
        deadline = time.time() + 30
        first = ""
        while time.time() < deadline:
            text = self.stdout_path.read_text()
            if "\n" in text:
                first = text.split("\n")[0]
                break
            if self.proc.poll() is not None:
                raise RuntimeError("authtap exited: " + self.stderr_path.read_text())
            time.sleep(0.05)
        assert first.startswith("authtap listening on 127.0.0.1:"), first
        self.port = int(first.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.ca = str(self.certs / "authtap-ca.pem")
        self.bundle = str(self.certs / "ca-bundle.pem")

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def exchanges(self, tunnels=False):
        args = [str(AUTHTAP), "exchanges", "--db", str(self.db), "--format", "json"]
        if tunnels:
            args.append("--tunnels")
        out = subprocess.run(args, capture_output=True, check=True, timeout=30)
        return json.loads(out.stdout)

    def wait_for(self, predicate, timeout=10):
        """Polls the store (the writer batches every 50 ms) until predicate(exchanges) holds."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.exchanges()
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"condition not met; exchanges: {json.dumps(last, indent=1)[:4000]}")

    def analyze(self, *extra):
        """`authtap analyze --format json` over this proxy's latest session."""
        out = subprocess.run([str(AUTHTAP), "analyze", "--db", str(self.db), "--format", "json", "--fail-on", "never",
                              "--certs", str(self.certs), *extra], capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)

    def assert_no_error_findings(self):
        if not self.db.exists():
            return
        errors = [f for f in self.analyze()["findings"] if f["severity"] == "error"]
        assert not errors, "the analyzer flagged a healthy capture: " + json.dumps(errors, indent=1)[:3000]

    def curl(self, *args, timeout=30):
        cmd = ["curl", "-sS", "--max-time", "20", "--suppress-connect-headers", "--proxy", self.url, *args]
        return subprocess.run(cmd, capture_output=True, timeout=timeout)


def _healthy(request):
    """Tests not marked `faults` make healthy captures: the analyzer must flag no error in them."""
    return request.node.get_closest_marker("faults") is None


@pytest.fixture
def proxy(tmp_path, pki, request):
    p = Proxy(tmp_path, pki)
    yield p
    p.stop()
    if _healthy(request):
        p.assert_no_error_findings()


@pytest.fixture
def make_proxy(tmp_path, pki, request):
    made = []

    def make(*extra, name="p"):
        d = tmp_path / f"{name}{len(made)}"
        d.mkdir()
        p = Proxy(d, pki, extra)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
    if _healthy(request):
        for p in made:
            p.assert_no_error_findings()


def raw_exchange(port, data, read_timeout=5.0, until_close=False):
    """Sends raw bytes to the proxy and returns everything it answers until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and not until_close:
                head, _, body = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        s.close()
                        return out
    except socket.timeout:
        pass
    s.close()
    return out


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: the test provokes failures on purpose, so its capture is not checked for zero error findings")


# ---------- real authorization servers ----------

def pkce():
    """A fresh PKCE pair: (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@contextlib.contextmanager
def port_file_server(script, cert, key, workdir, env=None, start_timeout=30):
    """Runs a loopback TLS server script (`script CERT KEY PORTFILE`) that writes its port when it is ready;
    yields its https://localhost:PORT base URL and stops it by its id."""
    portfile = Path(workdir) / "port"
    proc = subprocess.Popen([sys.executable, str(script), cert, key, str(portfile)],
                            stdout=open(Path(workdir) / "out", "wb"), stderr=open(Path(workdir) / "err", "wb"),
                            env=env)
    try:
        deadline = time.time() + start_timeout
        while not portfile.exists():
            assert proc.poll() is None, (Path(workdir) / "err").read_text()
            assert time.time() < deadline, f"{script} did not start: " + (Path(workdir) / "err").read_text()
            time.sleep(0.05)
        yield f"https://localhost:{portfile.read_text()}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
