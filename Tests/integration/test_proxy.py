import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import AUTHTAP, CANARY, LARGE_SEED, canary_jwt, raw_exchange


def header(ex, name, response=True):
    for k, v in ex["responseHeaders" if response else "requestHeaders"]:
        if k.lower() == name.lower():
            return v
    return None


# ---------- forwarding through real clients ----------

def test_curl_https_through_proxy_records_timings_and_tls(proxy, upstreams):
    port = upstreams["good"].port
    r = proxy.curl("--cacert", proxy.ca, f"https://localhost:{port}/hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b'{"hello":"world"}'
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["status"] == 200 and ex["method"] == "GET" and ex["host"] == "localhost" and ex["port"] == port
    # curl offers h2 in ALPN, and authtap takes it on the client leg (the upstream here speaks HTTP/1.1 only).
    assert ex["scheme"] == "https" and ex["target"] == "/hello" and ex["httpVersion"] == "HTTP/2"
    # The test upstream (Python's ssl) offers no ALPN at all: HTTP/1.1 by default.
    assert ex["clientTLS"]["alpn"] == "h2" and ex["upstreamTLS"].get("alpn") is None
    t = ex["timings"]
    assert 0 <= t["connect"] <= t["tls"] <= t["requestSent"] <= t["firstByte"] <= t["end"]
    assert ex["clientTLS"]["version"] == "TLSv1.3" and ex["clientTLS"]["sni"] == "localhost"
    assert ex["clientTLS"]["cipher"].startswith("TLS_") and ex["clientTLS"]["alpn"] == "h2"
    up = ex["upstreamTLS"]
    assert up["verification"] == "verified" and up["version"] == "TLSv1.3" and up["cipher"].startswith("TLS_")
    assert up["sni"] is None or up["sni"] == "localhost"
    assert "localhost" in up["peerCertificate"]["sans"] and "authtap test upstream CA" in up["peerCertificate"]["issuer"]
    assert ex["responseBodySize"] == 17 and ex["responseBody"] == '{"hello":"world"}'


def test_python_requests_keepalive_reuses_both_legs(proxy, upstreams):
    port = upstreams["good"].port
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override s.verify
    s.proxies = {"https": proxy.url, "http": proxy.url}
    s.verify = proxy.bundle
    for i in range(3):
        r = s.post(f"https://localhost:{port}/submit", data={"n": str(i), "pad": "x" * 1000})
        assert r.status_code == 200 and r.json() == {"received": len(f"n={i}&pad=" + "x" * 1000)}
    xs = proxy.wait_for(lambda xs: len(xs) == 3)
    assert len({x["connection"] for x in xs}) == 1, "one client connection (keep-alive)"
    assert [x["connectionReused"] for x in xs] == [False, True, True], "upstream connection reused"
    assert all(x["requestBodySize"] == len(f"n=0&pad=" + "x" * 1000) for x in xs)


def test_upstream_reused_across_client_connections(make_proxy, upstreams):
    # Idle upstream connections are pooled per event loop: with one loop every later connection reuses.
    proxy = make_proxy("--threads", "1")
    port = upstreams["good"].port
    for _ in range(4):
        assert proxy.curl("--cacert", proxy.ca, f"https://localhost:{port}/hello").returncode == 0
    xs = proxy.wait_for(lambda xs: len(xs) == 4)
    assert len({x["connection"] for x in xs}) == 4
    assert [x["connectionReused"] for x in xs] == [False, True, True, True]


def test_openssl_s_server_as_upstream(proxy, pki, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.txt").write_bytes(b"from s_server\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cert, key = pki["good"]
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert, "-key", key, "-WWW", "-quiet"],
                              cwd=www, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        r = proxy.curl("--cacert", proxy.ca, f"https://127.0.0.1:{port}/page.txt")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"from s_server\n"
        [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
        assert ex["status"] == 200 and ex["upstreamTLS"]["verification"] == "verified"
        assert "127.0.0.1" in ex["upstreamTLS"]["peerCertificate"]["sans"]
    finally:
        server.kill()


def test_plain_http_absolute_form_and_chunked_upload(proxy, upstreams):
    port = upstreams["plain"].port
    r = proxy.curl(f"http://127.0.0.1:{port}/hello")
    assert r.stdout == b'{"hello":"world"}'
    r = proxy.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "a=1&b=2", f"http://127.0.0.1:{port}/submit")
    assert json.loads(r.stdout) == {"received": 7}
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert xs[0]["scheme"] == "http" and xs[0]["status"] == 200
    assert xs[1]["requestBodySize"] == 7 and xs[1]["requestBody"] == "a=1&b=2"


def test_response_before_the_request_body_ends(proxy, upstreams):
    """The server answers (and closes) without reading the body: the exchange is recorded with the whole
    body the client sent, and the client connection keeps working."""
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy.url}
    s.verify = proxy.ca
    base = f"https://localhost:{upstreams['good'].port}"
    upload = os.urandom(48 * 1024)
    for _ in range(2):
        assert s.get(f"{base}/hello", timeout=10).json() == {"hello": "world"}
        r = s.post(f"{base}/early", data=upload, headers={"Content-Type": "application/octet-stream"}, timeout=10)
        assert r.json() == {"early": True}
    assert s.get(f"{base}/hello", timeout=10).status_code == 200
    xs = proxy.wait_for(lambda xs: len(xs) == 5)
    early = [x for x in xs if x["target"] == "/early"]
    assert [x["requestBodySize"] for x in early] == [len(upload)] * 2
    assert all(x["error"] is None and x["status"] == 200 for x in early)


def _read_until_closed(sock, limit=1 << 20):
    out = b""
    while len(out) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_pipelined_requests_are_answered_in_order(proxy, upstreams):
    """Three requests in one write (plain, then inside an intercepted tunnel): each answered in order on
    the same connection, each recorded. The proxy reads on while a response is in flight, and holds a
    request that arrives early until the response before it is done."""
    import ssl
    plain = upstreams["plain"].port
    burst = b"".join(
        f"{m} http://127.0.0.1:{plain}{p} HTTP/1.1\r\nHost: 127.0.0.1:{plain}\r\n{extra}\r\n".encode() + body
        for m, p, extra, body in [("GET", "/hello", "", b""), ("POST", "/submit", "Content-Length: 3\r\n", b"abc"),
                                  ("GET", "/204", "Connection: close\r\n", b"")])
    out = raw_exchange(proxy.port, burst, until_close=True)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200", b"204"]
    assert out.index(b'{"hello":"world"}') < out.index(b'{"received": 3}')

    good = upstreams["good"].port
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(f"CONNECT localhost:{good} HTTP/1.1\r\nHost: localhost:{good}\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(proxy.ca))
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: localhost:{good}\r\n{extra}\r\n".encode()
                       for p, extra in [("/hello", ""), ("/404-page", ""), ("/hello", "Connection: close\r\n")]))
    out = _read_until_closed(t)
    t.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"404", b"200"]
    xs = proxy.wait_for(lambda xs: len(xs) == 6)
    assert [(x["target"], x["status"]) for x in xs] == [
        ("/hello", 200), ("/submit", 200), ("/204", 204), ("/hello", 200), ("/404-page", 404), ("/hello", 200)]
    assert xs[1]["requestBody"] == "abc"
    assert len({x["connection"] for x in xs[:3]}) == 1 and len({x["connection"] for x in xs[3:]}) == 1
    assert all(x["error"] is None for x in xs)


def test_pipelined_request_waiting_for_100_continue(proxy, upstreams):
    """The second request of a burst only sends its body after 100 Continue: it is replayed after the
    first response, outside any read, and must still reach the server."""
    plain = upstreams["plain"].port
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(f"GET http://127.0.0.1:{plain}/hello HTTP/1.1\r\nHost: 127.0.0.1:{plain}\r\n\r\n"
              f"POST http://127.0.0.1:{plain}/submit HTTP/1.1\r\nHost: 127.0.0.1:{plain}\r\nExpect: 100-continue\r\n"
              f"Content-Length: 3\r\nConnection: close\r\n\r\n".encode())
    out = b""
    while b"100 Continue" not in out:
        chunk = s.recv(65536)  # times out (10 s) if the replayed head never left the proxy
        assert chunk, out
        out += chunk
    s.sendall(b"abc")
    out += _read_until_closed(s)
    s.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"100", b"200"]
    assert out.endswith(b'{"received": 3}')


def test_expect_100_continue(proxy, upstreams):
    port = upstreams["good"].port
    body = b"z" * 300_000
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", proxy.url, "--cacert", proxy.ca, "-H", "Expect: 100-continue",
                        "-H", "Content-Type: application/octet-stream", "--data-binary", "@-", f"https://localhost:{port}/echo-size"],
                       input=body, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_bodyless_responses_keep_the_connection_usable(proxy, upstreams):
    port = upstreams["good"].port
    base = f"https://localhost:{port}"
    r = proxy.curl("--cacert", proxy.ca, "-I", f"{base}/head", "-o", "/dev/null", "-w", "%{http_code} ",
                   "--next", "--proxy", proxy.url, "--cacert", proxy.ca, "-o", "/dev/null", "-w", "%{http_code} ", f"{base}/204",
                   "--next", "--proxy", proxy.url, "--cacert", proxy.ca, "-o", "/dev/null", "-w", "%{http_code} ", f"{base}/304",
                   "--next", "--proxy", proxy.url, "--cacert", proxy.ca, "-w", " %{http_code} %{num_connects}", f"{base}/hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == '200 204 304 {"hello":"world"} 200 0'
    xs = proxy.wait_for(lambda xs: len(xs) == 4)
    assert [x["status"] for x in xs] == [200, 204, 304, 200] and xs[0]["method"] == "HEAD"
    assert len({x["connection"] for x in xs}) == 1


def test_stale_pooled_connection_is_retried_for_bodiless_requests(make_proxy, upstreams):
    # One event loop, so the second client connection gets the first one's pooled upstream connection.
    proxy = make_proxy("--threads", "1")
    port = upstreams["good"].port
    assert proxy.curl("--cacert", proxy.ca, f"https://localhost:{port}/then-drop").stdout == b'{"then":"drop"}'
    proxy.wait_for(lambda xs: len(xs) == 1)
    # A new client connection takes the pooled upstream connection, which the server drops.
    r = proxy.curl("--cacert", proxy.ca, f"https://localhost:{port}/hello")
    assert r.stdout == b'{"hello":"world"}', r.stderr
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert xs[1]["status"] == 200 and xs[1]["error"] is None and xs[1]["connectionReused"] is False
    assert xs[1]["timings"].get("connect") is not None, "the retry opened a new connection"


# ---------- TLS faults ----------

@pytest.mark.parametrize("name,reason", [
    ("selfsigned", "untrusted-issuer"),
    ("expired", "expired"),
    ("future", "not-yet-valid"),
    ("wronghost", "hostname-mismatch"),
])
@pytest.mark.faults
def test_upstream_tls_faults(proxy, upstreams, name, reason):
    port = upstreams[name].port
    r = proxy.curl("-i", "--cacert", proxy.ca, f"https://localhost:{port}/hello")
    assert r.returncode == 0, r.stderr
    head = r.stdout.decode().lower()
    assert re.match(r"http/(1\.1|2) 502", head), head
    assert "x-authtap-error: upstream-tls" in head and f"x-authtap-tls-failure: {reason}" in head
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["error"] == "upstream-tls" and ex["tlsFailure"] == reason and ex["status"] == 502
    assert ex["upstreamTLS"]["verification"] == "failed" and ex["upstreamTLS"]["peerCertificate"] is not None
    # The analyzer names the same fault, with the certificate as evidence, and nothing else.
    findings = proxy.analyze()["findings"]
    assert [(f["rule"], f["evidence"]["reason"]) for f in findings] == [("tls-fault", reason)]
    assert findings[0]["evidence"]["subject"] == ex["upstreamTLS"]["peerCertificate"]["subject"]


def test_insecure_upstream_is_noted(make_proxy, upstreams):
    p = make_proxy("--insecure-upstream")
    r = p.curl("--cacert", p.ca, f"https://localhost:{upstreams['selfsigned'].port}/hello")
    assert r.stdout == b'{"hello":"world"}'
    [ex] = p.wait_for(lambda xs: len(xs) == 1)
    assert ex["insecureUpstream"] is True and ex["upstreamTLS"]["verification"] == "insecure"


@pytest.mark.faults
def test_upstream_speaking_plain_http_on_tls_port(proxy, upstreams):
    r = proxy.curl("-i", "--cacert", proxy.ca, f"https://localhost:{upstreams['plain'].port}/hello")
    head = r.stdout.lower()
    assert b"x-authtap-error: upstream-tls" in head and b"x-authtap-tls-failure: protocol-version" in head
    proxy.wait_for(lambda xs: len(xs) == 1)
    [f] = proxy.analyze()["findings"]
    assert f["rule"] == "tls-fault" and "plain HTTP" in f["explanation"]


@pytest.mark.faults
def test_client_that_does_not_trust_the_ca(proxy, upstreams):
    r = subprocess.run(["curl", "-sS", "--proxy", proxy.url, "--cacert", "/etc/ssl/certs/ca-certificates.crt",
                        f"https://localhost:{upstreams['good'].port}/hello"], capture_output=True, timeout=30)
    assert r.returncode == 60, r.stderr
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["method"] == "CONNECT" and ex["error"] == "client-tls" and ex["tlsFailure"] == "handshake-alert"
    assert "unknown_ca" in ex["errorDetail"]
    # openssl s_client that gives up mid-handshake: recorded as closed during handshake or an alert.
    r = subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect", "localhost:443",
                        "-servername", "localhost", "-verify_return_error", "-CAfile", "/etc/ssl/certs/ca-certificates.crt"],
                       input=b"", capture_output=True, timeout=30)
    assert r.returncode != 0
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert xs[1]["error"] == "client-tls" and xs[1]["tlsFailure"] in ("handshake-alert", "closed-during-handshake")
    findings = proxy.analyze()["findings"]
    assert [f["rule"] for f in findings] == ["tls-fault", "tls-fault"]
    assert all("rejected authtap's certificate" in f["title"] and "keytool -importcert" in f["fix"] for f in findings)


# ---------- connection errors ----------

def test_connection_refused_and_dns_failure(proxy):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    r = proxy.curl("-i", f"http://127.0.0.1:{closed_port}/x")
    assert r.stdout.startswith(b"HTTP/1.1 502") and b"X-Authtap-Error: connection-refused" in r.stdout
    r = proxy.curl("-i", "--cacert", proxy.ca, f"https://127.0.0.1:{closed_port}/x")
    assert b"x-authtap-error: connection-refused" in r.stdout.lower()
    r = proxy.curl("-i", "http://authtap-test.invalid/x")
    assert r.stdout.startswith(b"HTTP/1.1 502") and b"X-Authtap-Error: dns-failure" in r.stdout
    xs = proxy.wait_for(lambda xs: len(xs) == 3)
    assert [x["error"] for x in xs] == ["connection-refused", "connection-refused", "dns-failure"]


def test_relayed_tunnel_connect_failure(make_proxy):
    p = make_proxy("--intercept", "nothing.example")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    out = raw_exchange(p.port, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 502") and b"X-Authtap-Error: connection-refused" in out


def test_upstream_reset_mid_response(proxy, upstreams):
    r = proxy.curl("--cacert", proxy.ca, f"http://127.0.0.1:{upstreams['plain'].port}/reset")
    assert r.returncode != 0
    [ex] = proxy.wait_for(lambda xs: len(xs) == 1)
    assert ex["status"] == 200 and ex["error"] in ("upstream-reset", "upstream-closed")
    assert ex["responseBodySize"] == 10


# ---------- bad input ----------

@pytest.mark.parametrize("payload,status,kind", [
    (b"HELLO THERE\r\n\r\n", b"400", b"malformed-request"),
    (b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"400", b"headers-too-large"),
    (b"CONNECT not-a-target HTTP/1.1\r\nHost: x\r\n\r\n", b"400", b"bad-connect-target"),
    (b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n", b"400", b"bad-connect-target"),
    (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", b"400", b"malformed-request"),
    (b"CONNECT localhost:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"400", b"non-tls-in-tunnel"),
])
def test_bad_input_gets_an_error_and_others_are_served(proxy, upstreams, payload, status, kind):
    tunnel = payload.startswith(b"CONNECT localhost")
    out = raw_exchange(proxy.port, payload, until_close=tunnel)
    if tunnel:
        out = out.split(b"\r\n\r\n", 1)[1]  # after the 200 Connection established
    assert out.startswith(b"HTTP/1.1 " + status), out[:200]
    assert b"X-Authtap-Error: " + kind in out
    r = proxy.curl("--cacert", proxy.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert r.stdout == b'{"hello":"world"}'
    xs = proxy.wait_for(lambda xs: any(x["error"] == kind.decode() for x in xs) and any(x["status"] == 200 for x in xs))
    assert xs


def test_requests_to_authtap_itself_are_refused(proxy):
    for payload in (f"GET http://127.0.0.1:{proxy.port}/ HTTP/1.1\r\nHost: x\r\n\r\n",
                    f"CONNECT localhost:{proxy.port} HTTP/1.1\r\n\r\n"):
        out = raw_exchange(proxy.port, payload.encode())
        assert out.startswith(b"HTTP/1.1 400") and b"X-Authtap-Error: forbidden-target" in out, out[:200]


def test_garbage_tls_bytes_after_connect_close_the_tunnel(proxy, upstreams):
    out = raw_exchange(proxy.port, b"CONNECT localhost:443 HTTP/1.1\r\n\r\n\x00\x01\x02garbage", until_close=True)
    assert out.startswith(b"HTTP/1.1 200")
    xs = proxy.wait_for(lambda xs: any(x["error"] == "non-tls-in-tunnel" for x in xs))
    assert xs[0]["method"] == "CONNECT"


# ---------- robustness ----------

def _rss_kib(pid, field="VmHWM"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def test_large_bodies_stream_byte_exact_with_bounded_memory(proxy, upstreams):
    port = upstreams["good"].port
    size = 256 * 1024 * 1024
    rss_before = _rss_kib(proxy.proc.pid, "VmRSS")
    p = subprocess.run(["curl", "-sS", "--max-time", "120", "--proxy", proxy.url, "--cacert", proxy.ca,
                        f"https://localhost:{port}/large/{size}", "-o", "-"], capture_output=True, timeout=150)
    assert p.returncode == 0, p.stderr
    block = hashlib.sha256(LARGE_SEED).digest() * 2048
    expected = hashlib.sha256()
    sent = 0
    while sent < size:
        part = block[: min(len(block), size - sent)]
        expected.update(part)
        sent += len(part)
    assert len(p.stdout) == size and hashlib.sha256(p.stdout).hexdigest() == expected.hexdigest()
    # Upload 64 MiB (chunked from stdin) and check the upstream saw every byte.
    upload = os.urandom(1 << 20) * 64
    p = subprocess.run(["curl", "-sS", "--max-time", "120", "--proxy", proxy.url, "--cacert", proxy.ca,
                        "-H", "Content-Type: application/octet-stream", "--data-binary", "@-", f"https://localhost:{port}/echo-size"],
                       input=upload, capture_output=True, timeout=150)
    assert json.loads(p.stdout) == {"size": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
    growth_mib = (_rss_kib(proxy.proc.pid) - rss_before) / 1024
    assert growth_mib < 100, f"peak RSS grew by {growth_mib:.0f} MiB while relaying 320 MiB"
    xs = proxy.wait_for(lambda xs: len(xs) == 2)
    assert xs[0]["responseBodySize"] == size and xs[0]["responseBodyTruncated"] is True
    assert xs[1]["requestBodySize"] == len(upload) and xs[1]["requestBodyTruncated"] is True


def test_ctrl_c_during_load_loses_nothing_completed(proxy, upstreams):
    port = upstreams["good"].port
    completed = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker():
        s = requests.Session()
        s.trust_env = False
        s.proxies = {"https": proxy.url}
        s.verify = proxy.ca
        for _ in range(400):
            if stop.is_set():
                return
            try:
                # A fresh code each time: this is a healthy load, and the analyzer must see it as one.
                r = s.post(f"https://localhost:{port}/token", data={"grant_type": "authorization_code", "code": secrets.token_urlsafe(16)}, timeout=10)
                if r.status_code == 200 and r.json()["token_type"] == "Bearer":
                    with lock:
                        completed.append(1)
            except requests.RequestException:
                return

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(completed) < 150 and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.stop(signal.SIGINT) == 0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    done = len(completed)
    assert done >= 150
    xs = proxy.exchanges()
    ok = [x for x in xs if x["status"] == 200 and x["target"] == "/token"]
    assert len(ok) >= done, f"client saw {done} completed exchanges, store has {len(ok)}"
    sessions = json.loads(subprocess.run([str(AUTHTAP), "sessions", "--db", str(proxy.db), "--format", "json"],
                                         capture_output=True, check=True).stdout)
    assert sessions[-1]["ended_at"] is not None and sessions[-1]["dropped"] == 0


def test_a_writer_that_cannot_write_holds_new_requests_and_loses_nothing(proxy, upstreams):
    # Another process holds SQLite's write lock, as a stalled disk would: the writer can store
    # nothing. The proxy must stop taking new requests once the bodies waiting for the writer pass the
    # high-water mark (16 MiB, one batch), keep its memory bounded, and serve and record every request once the
    # lock is gone. The writer waits up to 5 s for a lock, so the lock is held for less than that.
    port = upstreams["good"].port
    r = proxy.curl("--cacert", proxy.ca, f"https://localhost:{port}/hello")
    assert r.returncode == 0, r.stderr
    proxy.wait_for(lambda xs: len(xs) == 1)
    rss_before = _rss_kib(proxy.proc.pid, "VmRSS")
    total, size = 120, 1 << 20
    completed, failures = [], []

    def client():
        s = requests.Session()
        s.trust_env = False
        s.proxies = {"https": proxy.url}
        s.verify = proxy.ca
        for _ in range(total):
            try:
                r = s.get(f"https://localhost:{port}/large/{size}", timeout=30)
                if r.status_code != 200 or len(r.content) != size:
                    failures.append(f"{r.status_code} {len(r.content)}")
                    return
                completed.append(time.time())
            except requests.RequestException as e:
                failures.append(repr(e))
                return

    lock = sqlite3.connect(str(proxy.db), timeout=10, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    locked_at = time.time()
    thread = threading.Thread(target=client)
    thread.start()
    held, samples = None, []
    try:
        # Wait until completions stop advancing for 0.5 s: the proxy is holding the next request.
        while time.time() - locked_at < 3.5:
            time.sleep(0.25)
            samples.append(len(completed))
            if len(samples) >= 3 and samples[-1] == samples[-3] and samples[-1] > 0:
                held = samples[-1]
                break
        rss_held_mib = (_rss_kib(proxy.proc.pid, "VmRSS") - rss_before) / 1024
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    thread.join(timeout=90)
    assert not failures, failures
    assert held is not None, f"requests kept completing while nothing could be stored: {samples}"
    # 16 MiB of 1 MiB bodies wait for the writer; a request or two more may be in flight.
    assert 14 <= held <= 24, f"the proxy held new requests after {held} exchanges: {samples}"
    assert rss_held_mib < 150, f"RSS grew by {rss_held_mib:.0f} MiB while the writer could not write"
    assert len(completed) == total
    assert completed[held] - completed[held - 1] >= 0.4, "no pause between the held request and the one before"
    xs = proxy.wait_for(lambda xs: len(xs) == 1 + total, timeout=30)
    assert all(x["status"] == 200 and x["responseBodySize"] == size for x in xs[1:])
    assert proxy.stop() == 0
    sessions = json.loads(subprocess.run([str(AUTHTAP), "sessions", "--db", str(proxy.db), "--format", "json"],
                                         capture_output=True, check=True).stdout)
    assert sessions[-1]["dropped"] == 0


def _thread_nice(pid):
    """{thread name: [nice, ...]} for a process, from /proc/PID/task/*/stat (field 19)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        out.setdefault((task / "comm").read_text().strip(), []).append(int(fields[16]))
    return out


def test_writer_thread_yields_to_the_event_loops(proxy, upstreams):
    # Recording is asynchronous: the one writer runs ten nice levels below the event loops, so under
    # load it takes the CPU the request path leaves idle (README "Performance").
    r = proxy.curl("--cacert", proxy.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert r.returncode == 0, r.stderr
    threads = _thread_nice(proxy.proc.pid)
    base = os.getpriority(os.PRIO_PROCESS, proxy.proc.pid)
    assert threads.get("authtap-writer") == [min(19, base + 10)], threads
    loops = [n for name, ns in threads.items() if name.startswith("NIO-ELT") for n in ns]
    assert loops and all(n == base for n in loops), threads
    proxy.wait_for(lambda xs: len(xs) == 1)


# ---------- safe defaults ----------

def test_refuses_non_loopback_without_auth(tmp_path):
    r = subprocess.run([str(AUTHTAP), "proxy", "--listen", "0.0.0.0:0", "--certs", str(tmp_path / "c"), "--db", str(tmp_path / "d.sqlite")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"not a loopback address" in r.stderr
    r = subprocess.run([str(AUTHTAP), "proxy", "--listen", "0.0.0.0:0", "--allow-remote", "--certs", str(tmp_path / "c"), "--db", str(tmp_path / "d.sqlite")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"requires --proxy-auth" in r.stderr


def test_body_limit_is_bounded(tmp_path):
    r = subprocess.run([str(AUTHTAP), "proxy", "--listen", "127.0.0.1:0", "--body-limit", str(3 << 30), "--certs", str(tmp_path / "c"), "--db", str(tmp_path / "d.sqlite")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"--body-limit must be at most" in r.stderr


def test_proxy_auth_and_key_modes(make_proxy, upstreams):
    p = make_proxy("--proxy-auth", "dev:" + CANARY["proxy_pass"])
    r = p.curl("-i", f"http://127.0.0.1:{upstreams['plain'].port}/hello")
    assert r.stdout.startswith(b"HTTP/1.1 407") and b"Proxy-Authenticate: Basic" in r.stdout
    r = subprocess.run(["curl", "-sS", "--proxy", f"http://dev:{CANARY['proxy_pass']}@127.0.0.1:{p.port}", "--cacert", p.ca,
                        f"https://localhost:{upstreams['good'].port}/hello"], capture_output=True, timeout=30)
    assert r.stdout == b'{"hello":"world"}'
    assert oct(os.stat(p.certs / "authtap-ca.key").st_mode & 0o777) == "0o600"
    assert oct(os.stat(p.certs / "fingerprint.key").st_mode & 0o777) == "0o600"


def test_each_install_gets_its_own_ca(make_proxy):
    a, b = make_proxy(), make_proxy()
    assert Path(a.certs / "authtap-ca.key").read_bytes() != Path(b.certs / "authtap-ca.key").read_bytes()
    assert Path(a.certs / "authtap-ca.pem").read_bytes() != Path(b.certs / "authtap-ca.pem").read_bytes()


def test_intercept_scope_relays_other_hosts_as_tunnels(make_proxy, upstreams, pki):
    p = make_proxy("--intercept", "*.example.test")
    # Not intercepted: the client sees the upstream's own certificate.
    r = p.curl("--cacert", pki["ca"], f"https://localhost:{upstreams['good'].port}/hello")
    assert r.stdout == b'{"hello":"world"}', r.stderr
    p.stop()
    out = p.exchanges(tunnels=True)
    [t] = out["tunnels"]
    assert t["intercepted"] is False and t["host"] == "localhost" and t["bytesFromClient"] > 100 and t["bytesFromUpstream"] > 100
    assert t["ending"] in ("client-closed", "upstream-closed")
    assert out["exchanges"] == []


def test_cli_help_env_and_startup_lines(proxy):
    out = subprocess.run([str(AUTHTAP), "proxy", "--help"], capture_output=True, text=True).stdout
    for flag in ("--listen", "--allow-remote", "--proxy-auth", "--intercept", "--body-limit", "--connect-timeout",
                 "--upstream-ca", "--insecure-upstream", "--quiet", "--certs", "--db"):
        assert flag in out
    env = subprocess.run([str(AUTHTAP), "env", "--listen", "127.0.0.1:9999", "--certs", str(proxy.certs)], capture_output=True, text=True).stdout
    assert "export HTTPS_PROXY=http://127.0.0.1:9999" in env and "REQUESTS_CA_BUNDLE=" in env and "NODE_EXTRA_CA_CERTS=" in env
    assert "keytool -importcert" in env
    start = proxy.stdout_path.read_text()
    assert "CA certificate: " + str(proxy.certs / "authtap-ca.pem") in start
    assert "SSL_CERT_FILE=" in start and "NODE_EXTRA_CA_CERTS=" in start and "keytool" in start
    bundle = Path(proxy.bundle).read_text()
    assert Path(proxy.ca).read_text().strip() in bundle and bundle.count("BEGIN CERTIFICATE") > 10


def test_console_line_per_exchange_and_quiet(make_proxy, upstreams):
    loud = make_proxy()
    loud.curl("--cacert", loud.ca, f"https://localhost:{upstreams['good'].port}/hello?state=s1")
    loud.wait_for(lambda xs: len(xs) == 1)
    time.sleep(0.2)
    lines = [l for l in loud.stdout_path.read_text().splitlines() if "/hello" in l]
    assert len(lines) == 1 and " GET https://localhost:" in lines[0] and " 200 " in lines[0] and "ms" in lines[0]
    quiet = make_proxy("--quiet")
    quiet.curl("--cacert", quiet.ca, f"https://localhost:{upstreams['good'].port}/hello")
    quiet.wait_for(lambda xs: len(xs) == 1)
    assert "/hello" not in quiet.stdout_path.read_text()
