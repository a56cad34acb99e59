"""HTTP/2 on both legs of an intercepted tunnel: real clients (curl --http2, httpx with h2) and real origins (nginx
with http2, h2_upstream.py on the h2 library, HTTP/1.1-only Python servers), the recording of each stream as one
exchange, multiplexing on both legs, upstream RST_STREAM and GOAWAY, and RFC 9113 conformance checks of authtap's
client leg made with raw frames through a CONNECT tunnel (h2spec is a Go binary that neither Debian nor PyPI ships).
"""
import asyncio
import collections
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections import namedtuple
from pathlib import Path

import hpack
import httpx
import pytest
import requests

from conftest import CANARY, port_file_server
from h2_upstream import large_body

HERE = Path(__file__).resolve().parent
H2_UPSTREAM = HERE / "h2_upstream.py"


# ---------- origins ----------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxH2:
    """nginx 1.22 with `listen ... ssl http2` (ALPN h2 and http/1.1), started on a free loopback port."""
    LARGE = 2 * 1024 * 1024
    SLOW = 256 * 1024

    def __init__(self, workdir, cert, key):
        self.dir = Path(workdir)
        for d in ("logs", "tmp", "www/slow"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        (self.dir / "www" / "large.bin").write_bytes(large_body(self.LARGE))
        (self.dir / "www" / "slow" / "a.bin").write_bytes(large_body(self.SLOW))
        template = (HERE / "nginx-h2.conf.template").read_text()
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            conf = template
            for k, v in {"PREFIX": str(self.dir), "PORT": str(self.port), "CERT": cert, "KEY": key}.items():
                conf = conf.replace("@" + k + "@", v)
            self.conf = self.dir / "nginx.conf"
            self.conf.write_text(conf)
            self.proc = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.dir) + "/"],
                                         stdout=open(self.dir / "nginx.stdout", "wb"),
                                         stderr=open(self.dir / "nginx.stderr", "wb"))
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.05)
            log = self.dir / "logs" / "error.log"
            last_error = (self.dir / "nginx.stderr").read_text() + (log.read_text() if log.exists() else "")
            self.stop()
        raise RuntimeError("nginx did not start: " + last_error)

    def access(self):
        """The access log as dicts: nginx's connection serial number, protocol, status, uri, start and end times."""
        path = self.dir / "logs" / "access.log"
        out = []
        for line in (path.read_text().splitlines() if path.exists() else []):
            conn, nreq, proto, status, method, uri, msec, rtime, sent, tls = line.split(" ")
            out.append({"connection": int(conn), "requests": int(nreq), "proto": proto, "status": int(status),
                        "method": method, "uri": uri, "end": float(msec), "start": float(msec) - float(rtime),
                        "sent": int(sent), "tls": tls})
        return out

    def wait_access(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            lines = self.access()
            if len(lines) >= n:
                return lines
            time.sleep(0.05)
        raise AssertionError(f"nginx logged {self.access()}, expected {n} lines")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class H2Upstream:
    def __init__(self, url, workdir):
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.stats_path = Path(workdir) / "stats.json"

    def stats(self):
        return json.loads(self.stats_path.read_text())


@pytest.fixture
def nginx_h2(tmp_path, pki):
    n = NginxH2(tmp_path / "nginx", *pki["good"])
    yield n
    n.stop()


def _h2_upstream(tmp_path, pki, name, alpn):
    d = tmp_path / name
    d.mkdir()
    return d, port_file_server(H2_UPSTREAM, *pki["good"], d, env={**os.environ, "H2UP_ALPN": alpn})


@pytest.fixture
def h2up(tmp_path, pki):
    """h2_upstream.py: ALPN h2 (and an HTTP/1.1 fallback for clients that do not offer h2)."""
    d, server = _h2_upstream(tmp_path, pki, "h2up", "h2,http/1.1")
    with server as url:
        yield H2Upstream(url, d)


@pytest.fixture
def h1echo(tmp_path, pki):
    """h2_upstream.py with ALPN http/1.1 only: an HTTP/1.1 origin that echoes the request head it received."""
    d, server = _h2_upstream(tmp_path, pki, "h1echo", "http/1.1")
    with server as url:
        yield H2Upstream(url, d)


# ---------- clients ----------

Curl = namedtuple("Curl", "rc body version status stderr")


def curl(proxy, *args, timeout=40):
    """curl through the proxy; returns its exit code, body, the HTTP version it used and the status."""
    r = proxy.curl("--cacert", proxy.ca, "-w", "\n@@ %{http_version} %{response_code}", *args, timeout=timeout)
    body, sep, tail = r.stdout.rpartition(b"\n@@ ")
    version, status = tail.decode().split() if sep else ("?", "0")
    return Curl(r.returncode, body, version, int(status), r.stderr.decode())


def _verify(proxy):
    return ssl.create_default_context(cafile=proxy.bundle)


def h2_client(proxy):
    return httpx.Client(http2=True, proxy=proxy.url, verify=_verify(proxy), trust_env=False, timeout=20)


def h2_async_client(proxy):
    return httpx.AsyncClient(http2=True, proxy=proxy.url, verify=_verify(proxy), trust_env=False, timeout=20)


def h1_session(proxy):
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override s.verify
    s.proxies = {"https": proxy.url}
    s.verify = proxy.bundle
    return s


def up_alpn(ex):
    return (ex.get("upstreamTLS") or {}).get("alpn")


def only(xs, target):
    found = [x for x in xs if x["target"] == target]
    assert len(found) == 1, f"{target}: {json.dumps(xs, indent=1)[:3000]}"
    return found[0]


def overlapping(intervals):
    """True when at least two of the (start, end) intervals overlap in time."""
    s = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(s, s[1:]))


# ---------- raw HTTP/2 frames through a CONNECT tunnel ----------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
CODES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
         "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
         "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
Frame = namedtuple("Frame", "type flags sid payload headers")


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def code_name(payload, offset):
    code = struct.unpack(">I", payload[offset: offset + 4])[0]
    return CODES[code] if code < len(CODES) else hex(code)


class RawH2:
    """An HTTP/2 client made of raw frames, through `CONNECT localhost:PORT` and TLS with ALPN h2: it can send what
    a conforming client never would, and shows every frame authtap answers with."""

    def __init__(self, proxy, port, alpn=("h2",)):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        head = b""
        deadline = time.time() + 5
        while b"\r\n\r\n" not in head and time.time() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=proxy.ca)
        ctx.set_alpn_protocols(list(alpn))
        self.tls = ctx.wrap_socket(sock, server_hostname="localhost")
        self.tls.settimeout(0.2)
        self.alpn = self.tls.selected_alpn_protocol()
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.frames, self.buf, self.closed, self.block = [], b"", False, None

    def close(self):
        self.tls.close()

    def send(self, *data):
        try:
            self.tls.sendall(b"".join(data))
        except OSError:
            self.closed = True

    def start(self, *pairs):
        self.send(PREFACE, settings(*pairs))

    def request(self, sid, headers, end_stream=True):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        self.send(frame(HEADERS, flags, sid, self.encoder.encode(headers)))

    def read(self, until, timeout=5):
        """Reads frames until until(self) holds, the connection closes or the time runs out; answers SETTINGS."""
        deadline = time.time() + timeout
        while not until(self) and not self.closed and time.time() < deadline:
            try:
                data = self.tls.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                break
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                payload, self.buf = self.buf[9: 9 + length], self.buf[9 + length:]
                self.on_frame(ftype, flags, sid, payload)
        return until(self)

    def on_frame(self, ftype, flags, sid, payload):
        headers = None
        if ftype == HEADERS:
            pad = payload[0] if flags & PADDED else 0
            start = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0)
            self.block = [sid, flags, payload[start: len(payload) - pad]]
        elif ftype == CONTINUATION and self.block:
            self.block[2] += payload
        if ftype in (HEADERS, CONTINUATION) and flags & END_HEADERS and self.block:
            sid, flags, block = self.block
            headers = dict(self.decoder.decode(block))
            ftype, payload, self.block = HEADERS, block, None
        elif ftype in (HEADERS, CONTINUATION):
            return
        if ftype == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        self.frames.append(Frame(ftype, flags, sid, payload, headers))

    # what arrived
    def goaway(self):
        g = [f for f in self.frames if f.type == GOAWAY]
        return code_name(g[0].payload, 4) if g else None

    def rst(self, sid):
        r = [f for f in self.frames if f.type == RST_STREAM and f.sid == sid]
        return code_name(r[0].payload, 0) if r else None

    def response(self, sid):
        h = [f.headers for f in self.frames if f.type == HEADERS and f.sid == sid]
        return h[0] if h else None

    def body(self, sid):
        return b"".join(f.payload[1: len(f.payload) - f.payload[0]] if f.flags & PADDED else f.payload
                        for f in self.frames if f.type == DATA and f.sid == sid)

    def ended(self, sid):
        return any(f.sid == sid and f.type in (DATA, HEADERS) and f.flags & END_STREAM for f in self.frames)


def req_headers(port, path="/ok", method="GET", extra=()):
    return [(":method", method), (":scheme", "https"), (":authority", f"localhost:{port}"), (":path", path),
            ("user-agent", "raw-h2-test"), *extra]


def open_raw(proxy, port):
    h = RawH2(proxy, port)
    assert h.alpn == "h2", f"authtap's client leg negotiated {h.alpn!r}, not h2"
    return h


# ---------- both legs, every combination ----------

@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("origin", ["h2", "h1-alpn", "h1-no-alpn"])
def test_legs_are_independent(request, proxy, upstreams, client, origin):
    """curl --http1.1/--http2 against an h2 origin, an origin that picks http/1.1 by ALPN, and one with no ALPN."""
    if origin == "h1-no-alpn":
        port, path = upstreams["good"].port, "/hello"
    else:
        port, path = request.getfixturevalue("h2up" if origin == "h2" else "h1echo").port, "/ok?leg=1"
    c = curl(proxy, "--http2" if client == "h2" else "--http1.1", f"https://localhost:{port}{path}")
    assert c.rc == 0 and c.status == 200, c.stderr
    assert c.version == ("2" if client == "h2" else "1.1"), "the version curl negotiated with authtap"
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["httpVersion"] == ("HTTP/2" if client == "h2" else "HTTP/1.1")
    assert ex["clientTLS"]["alpn"] == ("h2" if client == "h2" else "http/1.1")
    assert up_alpn(ex) == {"h2": "h2", "h1-alpn": "http/1.1", "h1-no-alpn": None}[origin]
    assert (ex["method"], ex["scheme"], ex["host"], ex["port"], ex["target"]) == ("GET", "https", "localhost", port,
                                                                                  path)
    assert ex["status"] == 200 and ex["error"] is None
    assert ex["responseBody"] == c.body.decode() and ex["responseBodySize"] == len(c.body)
    if origin == "h1-no-alpn":
        assert c.body == b'{"hello":"world"}'
        return
    echo = json.loads(c.body)
    assert echo["proto"] == ("h2" if origin == "h2" else "http/1.1"), "the protocol the origin saw"
    if origin == "h2":
        # RFC 9113 8.3.1: :authority from the request (the Host of an HTTP/1.1 client), no connection-specific
        # or Host header, pseudo-headers first.
        assert (echo["method"], echo["scheme"], echo["authority"], echo["path"]) == ("GET", "https",
                                                                                     f"localhost:{port}", path)
        assert echo["violations"] == []
    else:
        names = [k for k, _ in echo["headers"]]
        assert not [k for k in names if k.startswith(":")], "pseudo-headers must not reach an HTTP/1.1 origin"
        assert [v for k, v in echo["headers"] if k.lower() == "host"] == [f"localhost:{port}"]
        assert echo["version"] == "HTTP/1.1" and echo["path"] == path


def test_nginx_h2_origin_from_both_client_versions(proxy, nginx_h2):
    url = f"https://localhost:{nginx_h2.port}/hello"
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        c = curl(proxy, flag, url)
        assert (c.rc, c.status, c.version, c.body) == (0, 200, version, b'{"hello":"nginx"}'), (c.version, c.stderr)
    lines = nginx_h2.wait_access(2)
    assert [x["proto"] for x in lines] == ["HTTP/2.0", "HTTP/2.0"], "authtap offered h2 upstream and nginx took it"
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert [x["httpVersion"] for x in xs] == ["HTTP/2", "HTTP/1.1"]
    assert [x["clientTLS"]["alpn"] for x in xs] == ["h2", "http/1.1"]
    assert [up_alpn(x) for x in xs] == ["h2", "h2"]
    assert all(x["status"] == 200 and x["responseBody"] == '{"hello":"nginx"}' for x in xs)


def test_http2_off_offers_only_http11_on_both_legs(make_proxy, h2up, nginx_h2):
    proxy = make_proxy("--http2", "off")
    c = curl(proxy, "--http2", f"https://localhost:{h2up.port}/ok")
    assert (c.rc, c.status, c.version) == (0, 200, "1.1"), c.stderr
    assert json.loads(c.body)["proto"] == "http/1.1", "the h2-capable origin was offered only http/1.1"
    assert [x["alpn"] for x in h2up.stats()["connections"]] == ["http/1.1"]
    c = curl(proxy, "--http2", f"https://localhost:{nginx_h2.port}/hello")
    assert (c.rc, c.status, c.version) == (0, 200, "1.1"), c.stderr
    assert [x["proto"] for x in nginx_h2.wait_access(1)] == ["HTTP/1.1"]
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert all(x["httpVersion"] == "HTTP/1.1" and x["clientTLS"]["alpn"] == "http/1.1" for x in xs)
    assert all(up_alpn(x) == "http/1.1" for x in xs)


@pytest.mark.faults  # the handshake may end in an alert, which is recorded as a client TLS failure
def test_http2_off_does_not_give_h2_to_an_h2_only_client(make_proxy, h2up):
    proxy = make_proxy("--http2", "off")
    try:
        h = RawH2(proxy, h2up.port)
        assert h.alpn != "h2"  # RFC 7301 3.2: no ALPN extension in the answer ...
        h.close()
    except ssl.SSLError as e:  # ... or a no_application_protocol alert
        assert "NO_APPLICATION_PROTOCOL" in str(e).upper(), e
    assert curl(proxy, "--http2", f"https://localhost:{h2up.port}/ok").version == "1.1"


def test_http11_connection_headers_are_not_forwarded_over_h2(proxy, h2up):
    """RFC 9113 8.2.2 and RFC 9110 7.6.1: Connection, the options it names, Keep-Alive, Proxy-Connection,
    Transfer-Encoding, Upgrade and a TE other than "trailers" must not reach an h2 origin."""
    with h1_session(proxy) as s:
        r = s.post(f"https://localhost:{h2up.port}/ok?hop=1", data=b"x" * 100, timeout=20,
                   headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
                            "Proxy-Connection": "keep-alive", "TE": "gzip", "Upgrade": "websocket"})
    assert r.status_code == 200
    echo = r.json()
    assert echo["proto"] == "h2", "the origin was not reached over h2"
    assert echo["violations"] == [], echo["violations"]
    assert not [k for k, _ in echo["headers"] if k.lower() == "x-hop"], "an option named by Connection was forwarded"
    assert echo["bodySize"] == 100 and echo["method"] == "POST"


# ---------- recording and bodies ----------

def test_httpx_h2_token_request_recorded_and_masked(proxy, upstreams):
    port = upstreams["good"].port
    form = {"grant_type": "authorization_code", "code": CANARY["form_code"], "client_id": "my-client",
            "client_secret": CANARY["client_secret"], "redirect_uri": "https://app.test/cb"}
    with h2_client(proxy) as c:
        r = c.post(f"https://localhost:{port}/token", data=form)
    assert r.http_version == "HTTP/2" and r.status_code == 200
    assert r.json()["access_token"] == CANARY["resp_access"]
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["httpVersion"] == "HTTP/2" and ex["method"] == "POST" and ex["target"] == "/token"
    assert ex["requestBodySize"] == len(r.request.content)
    dump = json.dumps(ex)
    for name in ("form_code", "client_secret", "resp_access", "resp_refresh"):
        assert CANARY[name] not in dump, f"canary {name} recorded unmasked"
    assert "[masked code" in ex["requestBody"] and "[masked client_secret" in ex["requestBody"]
    assert "[masked access_token" in ex["responseBody"]
    assert "token" in ex["roles"]
    assert any(q["name"] == "grant_type" and q["value"] == "authorization_code" for q in ex["oauthParams"])


def test_large_bodies_both_directions_respect_flow_control(proxy, h2up, nginx_h2):
    """Bodies far past the 65,535-byte initial windows: authtap must send WINDOW_UPDATEs on both legs."""
    n = 3_000_000
    upload = os.urandom(2 * 1024 * 1024)
    with h2_client(proxy) as c:
        r = c.get(f"https://localhost:{h2up.port}/large/{n}")
        assert r.http_version == "HTTP/2" and r.status_code == 200
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(large_body(n)).digest()
        r = c.post(f"https://localhost:{h2up.port}/ok", content=upload)
        assert r.status_code == 200
        echo = r.json()
        assert (echo["bodySize"], echo["bodySha256"]) == (len(upload), hashlib.sha256(upload).hexdigest())
        r = c.get(f"https://localhost:{nginx_h2.port}/large.bin")
        assert r.status_code == 200 and r.content == large_body(NginxH2.LARGE)
    assert [x["proto"] for x in nginx_h2.wait_access(1)] == ["HTTP/2.0"]
    xs = proxy.wait_for(lambda xs: len(xs) == 3)
    assert only(xs, f"/large/{n}")["responseBodySize"] == n
    assert only(xs, "/ok")["requestBodySize"] == len(upload)
    assert only(xs, "/large.bin")["responseBodySize"] == NginxH2.LARGE
    assert all(x["httpVersion"] == "HTTP/2" and up_alpn(x) == "h2" and x["error"] is None for x in xs)


# ---------- multiplexing ----------

async def _gather(proxy, urls, warmup):
    async with h2_async_client(proxy) as c:
        first = await c.get(warmup)  # the tunnel is up and h2 negotiated before the burst
        rs = await asyncio.gather(*(c.get(u) for u in urls), return_exceptions=True)
    return first, rs


def test_concurrent_streams_one_client_connection_one_upstream_connection(proxy, h2up):
    base = f"https://localhost:{h2up.port}"
    urls = [f"{base}/ok?delay=700&i={i}" for i in range(6)]
    first, rs = asyncio.run(_gather(proxy, urls, f"{base}/ok?warmup=1"))
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 and r.http_version == "HTTP/2"
               for r in [first, *rs]), [getattr(r, "http_version", r) for r in [first, *rs]]
    echoes = [r.json() for r in [first, *rs]]
    xs = proxy.wait_for(lambda xs: len(xs) == 7)
    assert len({x["connection"] for x in xs}) == 1, "the streams of one client connection"
    assert len({x["id"] for x in xs}) == 7, "one exchange per stream"
    assert sorted(x["target"] for x in xs) == sorted(["/ok?warmup=1"] + [u[len(base):] for u in urls])
    assert all(x["httpVersion"] == "HTTP/2" and up_alpn(x) == "h2" and x["status"] == 200 for x in xs)
    stats = h2up.stats()
    assert stats["accepted"] == 1 and len({e["conn"] for e in echoes}) == 1, "one upstream connection: " + str(stats)
    assert stats["connections"][0]["streams"] == 7
    assert stats["connections"][0]["maxConcurrent"] >= 2, "the streams were multiplexed upstream, not queued"


def test_curl_parallel_multiplexes_from_a_cold_start(proxy, h2up):
    """curl --parallel opens one tunnel and sends all its streams at once, before authtap has any connection to
    the origin: they must still end up on one h2 client connection and one upstream connection."""
    base = f"https://localhost:{h2up.port}"
    args = ["--http2", "--parallel", "--parallel-max", "6", "-w", "%{http_version} %{num_connects}\n"]
    for i in range(6):
        args += ["-o", "/dev/null", f"{base}/ok?delay=700&i={i}"]
    r = proxy.curl("--cacert", proxy.ca, *args, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [x.split() for x in r.stdout.decode().splitlines()]
    assert [v for v, _ in lines] == ["2"] * 6 and sum(int(n) for _, n in lines) == 1, lines
    xs = proxy.wait_for(lambda xs: len(xs) == 6)
    assert len({x["connection"] for x in xs}) == 1 and all(x["httpVersion"] == "HTTP/2" for x in xs)
    stats = h2up.stats()
    assert stats["accepted"] == 1, f"streams that arrived together opened {stats['accepted']} upstream connections"
    assert stats["connections"][0]["maxConcurrent"] >= 2


def test_concurrent_http11_clients_share_one_h2_upstream_connection(make_proxy, h2up):
    """Separate HTTP/1.1 client connections to one h2 origin: one event loop, so one pooled upstream connection."""
    proxy = make_proxy("--threads", "1")
    base = f"https://localhost:{h2up.port}"
    assert curl(proxy, "--http1.1", f"{base}/ok?warmup=1").status == 200
    cmds = [["curl", "-sS", "--max-time", "20", "--http1.1", "--proxy", proxy.url, "--cacert", proxy.ca,
             f"{base}/ok?delay=800&i={i}"] for i in range(4)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    echoes = [json.loads(o) for o, _ in outs]
    assert [e["proto"] for e in echoes] == ["h2"] * 4, "the origin was not reached over h2"
    xs = proxy.wait_for(lambda xs: len(xs) == 5)
    assert len({x["connection"] for x in xs}) == 5
    assert all(x["httpVersion"] == "HTTP/1.1" and up_alpn(x) == "h2" for x in xs)
    stats = h2up.stats()
    assert stats["accepted"] == 1, "one upstream h2 connection for every client: " + str(stats)
    assert stats["connections"][0]["maxConcurrent"] >= 2


def test_concurrent_streams_to_nginx_share_one_connection_and_overlap(proxy, nginx_h2):
    base = f"https://localhost:{nginx_h2.port}"
    urls = [f"{base}/slow/a.bin?i={i}" for i in range(6)]
    first, rs = asyncio.run(_gather(proxy, urls, f"{base}/hello"))
    assert first.status_code == 200
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 and r.content == large_body(NginxH2.SLOW)
               for r in rs), rs
    lines = nginx_h2.wait_access(7)
    assert {x["proto"] for x in lines} == {"HTTP/2.0"}
    assert len({x["connection"] for x in lines}) == 1, f"nginx saw several connections: {lines}"
    slow = [(x["start"], x["end"]) for x in lines if x["uri"].startswith("/slow/")]
    assert overlapping(slow), f"the streams were not in flight at the same time upstream: {slow}"
    xs = proxy.wait_for(lambda xs: len(xs) == 7)
    assert len({x["connection"] for x in xs}) == 1 and all(x["httpVersion"] == "HTTP/2" for x in xs)


# ---------- upstream faults ----------

@pytest.mark.faults
@pytest.mark.parametrize("code", ["REFUSED_STREAM", "INTERNAL_ERROR"])
@pytest.mark.parametrize("client", ["h1", "h2"])
def test_upstream_reset_before_headers_is_a_502(proxy, h2up, client, code):
    base = f"https://localhost:{h2up.port}"
    if client == "h2":
        with h2_client(proxy) as c:
            r = c.get(f"{base}/reset-before?reason={code}")
            assert (r.status_code, r.http_version) == (502, "HTTP/2"), r.text
            assert c.get(f"{base}/ok?after=1").status_code == 200, "the client connection still works"
    else:
        with h1_session(proxy) as s:
            r = s.get(f"{base}/reset-before?reason={code}", timeout=20)
            assert r.status_code == 502, r.text
            assert s.get(f"{base}/ok?after=1", timeout=20).status_code == 200
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    ex = only(xs, f"/reset-before?reason={code}")
    assert ex["error"] == "upstream-stream-reset" and code in (ex["errorDetail"] or ""), ex
    assert only(xs, "/ok?after=1")["error"] is None
    if client == "h2":
        assert len({x["connection"] for x in xs}) == 1


@pytest.mark.faults
def test_upstream_reset_mid_response_resets_only_that_stream(proxy, h2up):
    h = open_raw(proxy, h2up.port)
    try:
        h.start()
        h.request(1, req_headers(h2up.port, "/reset-mid"))
        assert h.read(lambda h: h.rst(1) or h.goaway(), timeout=10), h.frames
        assert (h.response(1) or {}).get(":status") == "200", "the response headers were passed on"
        assert 0 < len(h.body(1)) <= 1000 and not h.ended(1), "a truncated body must not end cleanly"
        assert h.rst(1) is not None and h.goaway() is None, "the client's stream is reset, not its connection"
        h.request(3, req_headers(h2up.port, "/ok?after=reset", method="DELETE"))
        assert h.read(lambda h: h.ended(3), timeout=10), h.frames
        assert h.response(3)[":status"] == "200" and json.loads(h.body(3))["method"] == "DELETE"
    finally:
        h.close()
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    ex = only(xs, "/reset-mid")
    assert ex["error"] == "upstream-stream-reset" and "INTERNAL_ERROR" in (ex["errorDetail"] or ""), ex
    assert ex["status"] == 200 and ex["responseBodySize"] <= 1000
    after = only(xs, "/ok?after=reset")
    assert after["method"] == "DELETE" and after["error"] is None and after["httpVersion"] == "HTTP/2"
    assert ex["connection"] == after["connection"]


@pytest.mark.faults
def test_upstream_reset_mid_response_real_clients(proxy, h2up):
    base = f"https://localhost:{h2up.port}"

    async def run():
        async with h2_async_client(proxy) as c:
            await c.get(f"{base}/ok?warmup=1")
            return await asyncio.gather(c.get(f"{base}/ok?delay=900"), c.get(f"{base}/reset-mid"),
                                        c.get(f"{base}/ok?delay=300"), return_exceptions=True)

    slow, reset, fast = asyncio.run(run())
    assert isinstance(reset, httpx.HTTPError), f"a reset stream must not look complete: {reset!r}"
    assert slow.status_code == 200 and fast.status_code == 200, "the other streams are unaffected"
    c = curl(proxy, "--http1.1", f"{base}/reset-mid")
    assert c.rc != 0 and c.status == 200 and len(c.body) <= 1000, "an HTTP/1.1 client sees the transfer cut"
    xs = proxy.wait_for(lambda xs: len(xs) == 5)
    resets = [x for x in xs if x["target"] == "/reset-mid"]
    assert len(resets) == 2 and all(x["error"] == "upstream-stream-reset" for x in resets)
    assert all(x["error"] is None for x in xs if x["target"] != "/reset-mid")


@pytest.mark.faults
@pytest.mark.parametrize("code", ["NO_ERROR", "ENHANCE_YOUR_CALM"])
@pytest.mark.parametrize("client", ["h1", "h2"])
def test_upstream_goaway_fails_the_stream_and_the_next_request_reconnects(proxy, h2up, client, code):
    """GOAWAY with last_stream_id below the in-flight stream (the origin's first request made it stream 1, this
    one is stream 3): the stream was not processed, the connection is done, the next request gets a new one.
    RFC 9113 6.8 lets authtap retry the unprocessed stream once on a new connection (httpx does, on its own); the
    origin answers that with GOAWAY too, so the exchange still fails."""
    base = f"https://localhost:{h2up.port}"
    if client == "h2":
        with h2_client(proxy) as c:
            first = c.get(f"{base}/ok?before=1")
            try:
                failed = c.get(f"{base}/goaway?reason={code}").status_code
            except httpx.HTTPError as e:  # or authtap resets the client's stream (REFUSED_STREAM)
                failed = repr(e)
            after = c.get(f"{base}/ok?after=1")
    else:
        with h1_session(proxy) as s:
            first = s.get(f"{base}/ok?before=1", timeout=20)
            failed = s.get(f"{base}/goaway?reason={code}", timeout=20).status_code
            after = s.get(f"{base}/ok?after=1", timeout=20)
    assert first.status_code == 200 and after.status_code == 200
    assert failed in (502, 503) or "StreamReset" in str(failed), f"{failed}: {h2up.stats()['connections']}"
    conns = h2up.stats()["connections"]
    assert first.json()["conn"] == 1 and conns[0]["paths"] == ["/ok?before=1", f"/goaway?reason={code}"], conns
    served_after = conns[after.json()["conn"] - 1]
    assert served_after["paths"][0] == "/ok?after=1", "the next request must open a new upstream connection"
    assert len(conns) in (2, 3) and sum(p.startswith("/goaway") for c in conns for p in c["paths"]) <= 2, conns
    xs = proxy.wait_for(lambda xs: len(xs) == 3)
    ex = only(xs, f"/goaway?reason={code}")
    assert ex["error"] == "upstream-goaway" and code in (ex["errorDetail"] or ""), ex
    assert only(xs, "/ok?after=1")["error"] is None and only(xs, "/ok?after=1")["connectionReused"] is False


def test_graceful_goaway_after_a_complete_response_is_not_an_error(proxy, h2up):
    base = f"https://localhost:{h2up.port}"
    with h2_client(proxy) as c:
        r = c.get(f"{base}/goaway-after")
        assert r.status_code == 200 and r.json()["conn"] == 1, r.text
        time.sleep(0.3)  # the GOAWAY and close reach authtap
        r = c.get(f"{base}/ok?after=1")
        assert r.status_code == 200 and r.json()["conn"] == 2
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert all(x["error"] is None and x["status"] == 200 for x in xs), xs
    assert h2up.stats()["accepted"] == 2


def test_upstream_early_response_then_rst_no_error_is_a_complete_response(proxy, h2up):
    """RFC 9113 8.1: an origin may answer before the request body ends and then RST_STREAM NO_ERROR; the proxy
    must not discard that response. (curl 7.88 and httpx stall on this when they are the h2 client themselves, so
    the client here speaks HTTP/1.1.)"""
    upload = os.urandom(256 * 1024)  # past the origin's 65,535-byte window: it answers while the body is sent
    with h1_session(proxy) as s:
        r = s.post(f"https://localhost:{h2up.port}/early", data=upload, timeout=20,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200 and r.json() == {"early": True}, r.text
        assert s.get(f"https://localhost:{h2up.port}/ok?after=1", timeout=20).status_code == 200
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    ex = only(xs, "/early")
    assert ex["status"] == 200 and ex["error"] is None and ex["responseBody"] == '{"early": true}', ex
    assert up_alpn(ex) == "h2"


# ---------- authtap's client leg against RFC 9113 (h2spec-style) ----------

def test_raw_client_ping_unknown_frame_and_split_cookies(proxy, h1echo):
    """A well-behaved raw client: PING is echoed with ACK (6.7), an unknown frame type is ignored (5.5), and cookie
    fields split over several header lines reach an HTTP/1.1 origin joined with "; " (8.2.3)."""
    h = open_raw(proxy, h1echo.port)
    try:
        h.start()
        h.send(frame(PING, 0, 0, b"authtap!"), frame(0x20, 0, 0, b"unknown frame type"))
        assert h.read(lambda h: any(f.type == PING and f.flags & ACK for f in h.frames)), h.frames
        ack = next(f for f in h.frames if f.type == PING and f.flags & ACK)
        assert ack.payload == b"authtap!"
        h.request(1, req_headers(h1echo.port, "/ok?split=1", extra=[("cookie", "a=1"), ("cookie", "b=2")]))
        assert h.read(lambda h: h.ended(1), timeout=10), h.frames
        assert h.response(1)[":status"] == "200" and h.goaway() is None
        echo = json.loads(h.body(1))
        assert [v for k, v in echo["headers"] if k.lower() == "cookie"] == ["a=1; b=2"]
        assert [v for k, v in echo["headers"] if k.lower() == "host"] == [f"localhost:{h1echo.port}"]
    finally:
        h.close()
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["httpVersion"] == "HTTP/2" and ex["target"] == "/ok?split=1" and ex["status"] == 200


def _bad_preface(h, port):
    h.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", settings())


def _data_on_stream_0(h, port):
    h.start()
    h.send(frame(DATA, 0, 0, b"stream zero"))


def _even_stream_id(h, port):
    h.start()
    h.request(2, req_headers(port, "/ok?malformed=1"))


def _bad_settings_length(h, port):
    h.send(PREFACE, frame(SETTINGS, 0, 0, b"\x00\x02\x00"))


def _settings(*pairs):
    return lambda h, port: h.start(*pairs)


def _conn_window_overflow(h, port):
    h.start()
    h.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))


def _stream_window_overflow(h, port):
    h.start()
    h.request(1, req_headers(port, "/ok?window=1", "POST", [("content-length", "10")]), end_stream=False)
    h.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))


def _bad_head(*extra, drop=None):
    def send(h, port):
        h.start()
        h.request(1, [(k, v) for k, v in req_headers(port, "/ok?malformed=1", extra=extra) if k != drop])
    return send


# (send, scope, RFC 9113 error code): "connection" wants GOAWAY with the code and a close; "stream" accepts
# RST_STREAM on stream 1 or GOAWAY with the code (5.4 lets an endpoint widen a stream error), after a 4xx response
# at most (8.1.1); "preface" wants a close, with GOAWAY PROTOCOL_ERROR if any (3.4 lets the GOAWAY be omitted).
VIOLATIONS = {
    "invalid-preface": (_bad_preface, "preface", "PROTOCOL_ERROR"),                                   # 3.4
    "data-on-stream-0": (_data_on_stream_0, "connection", "PROTOCOL_ERROR"),                          # 6.1
    "even-stream-id": (_even_stream_id, "connection", "PROTOCOL_ERROR"),                              # 5.1.1
    "settings-length": (_bad_settings_length, "connection", "FRAME_SIZE_ERROR"),                      # 6.5
    "settings-enable-push-2": (_settings((0x2, 2)), "connection", "PROTOCOL_ERROR"),                  # 6.5.2
    "settings-window-2^31": (_settings((0x4, 1 << 31)), "connection", "FLOW_CONTROL_ERROR"),          # 6.5.2
    "settings-max-frame-16383": (_settings((0x5, 16383)), "connection", "PROTOCOL_ERROR"),            # 6.5.2
    "connection-window-overflow": (_conn_window_overflow, "connection", "FLOW_CONTROL_ERROR"),        # 6.9.1
    "stream-window-overflow": (_stream_window_overflow, "stream", "FLOW_CONTROL_ERROR"),              # 6.9.1
    "uppercase-header-name": (_bad_head(("X-Upper", "1")), "stream", "PROTOCOL_ERROR"),               # 8.2.1
    "connection-header": (_bad_head(("connection", "keep-alive")), "stream", "PROTOCOL_ERROR"),       # 8.2.2
    "te-gzip": (_bad_head(("te", "gzip")), "stream", "PROTOCOL_ERROR"),                               # 8.2.2
    "missing-path": (_bad_head(drop=":path"), "stream", "PROTOCOL_ERROR"),                            # 8.3.1
}


@pytest.mark.faults
@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_client_protocol_violation(proxy, h1echo, case):
    send, scope, code = VIOLATIONS[case]
    h = open_raw(proxy, h1echo.port)
    try:
        send(h, h1echo.port)
        if scope == "stream":
            assert h.read(lambda h: h.rst(1) or h.goaway()), f"no RST_STREAM or GOAWAY: {h.frames}"
            got = h.rst(1) or h.goaway()
            assert got == code, f"RST_STREAM/GOAWAY {got}, RFC 9113 wants {code}"
            status = (h.response(1) or {}).get(":status", "400")
            assert status.startswith("4"), f"a malformed request got a {status} response (8.1.1 allows a 4xx)"
            if h.goaway() is None:
                # A stream error ends its stream only (5.4.2): the same connection serves the next stream.
                h.request(3, req_headers(h1echo.port, "/ok?after-stream-error=1"))
                assert h.read(lambda h: h.ended(3), timeout=10), h.frames
                assert h.response(3)[":status"] == "200" and h.goaway() is None, h.frames
        else:
            h.read(lambda h: False, timeout=5)  # until authtap closes the connection
            assert h.closed, "authtap must close the connection after a connection error"
            if scope == "connection" or h.goaway() is not None:
                assert h.goaway() == code, f"GOAWAY {h.goaway()}, RFC 9113 wants {code}; frames {h.frames}"
    finally:
        h.close()
    # 8.1.1: an intermediary must not forward a malformed request.
    assert not [p for c in h1echo.stats()["connections"] for p in c["paths"] if "malformed" in p]
    c = curl(proxy, "--http2", f"https://localhost:{h1echo.port}/ok?next=1")
    assert (c.rc, c.status, c.version) == (0, 200, "2"), "authtap keeps serving other clients: " + c.stderr
    assert proxy.proc.poll() is None
    # The record names the violation with the code authtap answered it with.
    xs = proxy.wait_for(lambda xs: any(x["error"] == "client-http2" for x in xs))
    assert any(x["error"] == "client-http2" and code in x["errorDetail"] for x in xs), xs


def test_a_busy_nginx_connection_survives_its_rst_no_error_after_every_early_answer(proxy, nginx_h2):
    """nginx answers a POST to a `return` location before reading its body and then ends the stream with
    RST_STREAM NO_ERROR (RFC 9113 §8.1). Over 200 of those in 30 s once tripped NIOHTTP2's rapid-reset defence on
    authtap's upstream connection, which then failed every stream in flight; found by scripts/bench-h2."""
    def body():
        # The head goes first and the body a moment later, as a browser's or an SDK's upload does: nginx has
        # answered by the time the body comes, and resets the stream.
        time.sleep(0.002)
        yield b"note=" + b"x" * 200

    with h1_session(proxy) as s:
        statuses = [s.post(f"https://localhost:{nginx_h2.port}/hello", data=body(), timeout=20).status_code
                    for _ in range(260)]
    assert statuses == [200] * 260, collections.Counter(statuses)
    lines = nginx_h2.wait_access(260)
    assert {line["proto"] for line in lines} == {"HTTP/2.0"}
    assert len({line["connection"] for line in lines}) == 1, "one upstream HTTP/2 connection carried every request"
    xs = proxy.wait_for(lambda xs: len(xs) == 260)
    assert all(x["error"] is None and up_alpn(x) == "h2" for x in xs)
