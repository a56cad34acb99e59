"""Timeouts and limits against a real `authtap proxy` on loopback: slow and silent clients, stalled TLS handshakes
on both legs, idle keep-alive on both legs and in relayed tunnels, --max-connections, running out of descriptors,
and a slowloris crowd beside a normal client (AUTHTAP_SLOWLORIS sets its size; CI uses a smaller one)."""
import os
import re
import resource
import socket
import ssl
import statistics
import threading
import time

import pytest

from conftest import raw_exchange


# ---------- helpers ----------

def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def closed_within(sock, seconds):
    """Seconds until the peer closes (EOF or reset), or None if it is still open after `seconds`."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


def proxied_get(proxy_port, upstream_port, path="/hello", timeout=5.0):
    req = (f"GET http://127.0.0.1:{upstream_port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\n"
           f"Connection: close\r\n\r\n").encode()
    return raw_exchange(proxy_port, req, read_timeout=timeout)


def connect_tunnel(port, host, target_port):
    s = connect(port)
    s.sendall(f"CONNECT {host}:{target_port} HTTP/1.1\r\nHost: {host}:{target_port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class AcceptLoop:
    """A loopback listener whose accept loop runs on a thread until stop(); subclasses take each connection."""

    def __init__(self, backlog):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.1)
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.take(c)

    def take(self, c):
        raise NotImplementedError

    def stop(self):
        self.stopped = True
        self.thread.join(timeout=5)
        self.sock.close()


class HoldingServer(AcceptLoop):
    """Accepts TCP and answers nothing: an upstream whose TLS handshake never starts."""

    def __init__(self):
        self.held = []
        super().__init__(64)

    def take(self, c):
        self.held.append(c)

    def stop(self):
        super().stop()
        for c in self.held:
            c.close()


class KeepAliveServer(AcceptLoop):
    """Answers each request on a kept-alive connection and records how long after its last response the
    client (the proxy's pool) closed that connection."""

    def __init__(self):
        self.closed_after = []
        super().__init__(16)

    def take(self, c):
        threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(30)
        buf = b""
        last = time.monotonic()
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    self.closed_after.append(time.monotonic() - last)
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                    last = time.monotonic()
        except OSError:
            self.closed_after.append(time.monotonic() - last)
        finally:
            c.close()


@pytest.fixture
def holding():
    s = HoldingServer()
    yield s
    s.stop()


@pytest.fixture
def keepalive_server():
    s = KeepAliveServer()
    yield s
    s.stop()


# ---------- request head and idle timeouts on the client leg ----------

@pytest.mark.faults
def test_half_a_request_head_is_closed_after_the_head_timeout(make_proxy, upstreams):
    p = make_proxy("--request-head-timeout", "1")
    silent = connect(p.port)
    dribbler = connect(p.port)
    dribbler.sendall(b"GET http://127.0.0.1:1/ HTTP/1.1\r\n")
    start = time.monotonic()
    # One more header byte every 200 ms: bytes alone never move the head deadline.
    while time.monotonic() - start < 0.9:
        dribbler.sendall(b"X")
        time.sleep(0.2)
    assert closed_within(dribbler, 2.0) is not None
    assert closed_within(silent, 1.0) is not None
    assert time.monotonic() - start < 3.0
    # Meanwhile, and after, a normal client is served.
    assert proxied_get(p.port, upstreams["plain"].port).startswith(b"HTTP/1.1 200")


@pytest.mark.faults
def test_half_a_head_inside_an_intercepted_tunnel_is_closed(make_proxy, upstreams):
    p = make_proxy("--request-head-timeout", "1")
    s = connect_tunnel(p.port, "localhost", upstreams["good"].port)
    ctx = ssl.create_default_context(cafile=p.ca)
    tls = ctx.wrap_socket(s, server_hostname="localhost")
    tls.sendall(b"GET /hello HTTP/1.1\r\nHost: loc")
    start = time.monotonic()
    tls.settimeout(3.0)
    try:
        data = tls.recv(4096)
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        data = b""
    assert data == b""
    assert 0.5 < time.monotonic() - start < 2.5
    tls.close()


def test_an_idle_keep_alive_client_is_closed_and_a_busy_one_is_not(make_proxy, keepalive_server):
    p = make_proxy("--client-idle-timeout", "1", "--request-head-timeout", "5")
    s = connect(p.port)
    req = (f"GET http://127.0.0.1:{keepalive_server.port}/ HTTP/1.1\r\n"
           f"Host: 127.0.0.1:{keepalive_server.port}\r\n\r\n").encode()
    for _ in range(3):
        s.sendall(req)
        got = b""
        while not got.endswith(b"ok"):
            chunk = s.recv(4096)
            assert chunk
            got += chunk
        time.sleep(0.6)  # below the idle timeout: still open
    after = closed_within(s, 3.0)
    assert after is not None and after < 1.5


def test_a_pooled_upstream_connection_is_closed_after_the_upstream_idle_timeout(make_proxy, keepalive_server):
    p = make_proxy("--upstream-idle-timeout", "1")
    r = p.curl(f"http://127.0.0.1:{keepalive_server.port}/")
    assert r.stdout == b"ok", r.stderr
    deadline = time.time() + 5
    while not keepalive_server.closed_after and time.time() < deadline:
        time.sleep(0.05)
    assert keepalive_server.closed_after, "the proxy kept the idle upstream connection"
    assert 0.8 < keepalive_server.closed_after[0] < 2.5


def test_a_silent_relayed_tunnel_is_closed_after_the_tunnel_idle_timeout(make_proxy, holding):
    p = make_proxy("--tunnel-idle-timeout", "1", "--intercept", "only.example.test")
    s = connect_tunnel(p.port, "127.0.0.1", holding.port)
    s.sendall(b"ping")  # relayed, never answered
    after = closed_within(s, 4.0)
    assert after is not None and 0.8 < after < 2.5
    tunnels = []
    deadline = time.time() + 10
    while not tunnels and time.time() < deadline:
        tunnels = [t for t in p.exchanges(tunnels=True)["tunnels"] if t.get("port") == holding.port]
        time.sleep(0.1)
    assert tunnels and tunnels[0]["bytesFromClient"] == 4


# ---------- TLS handshake timeouts ----------

@pytest.mark.faults
def test_a_stalled_client_handshake_is_closed_and_recorded(make_proxy, upstreams):
    p = make_proxy("--tls-handshake-timeout", "1")
    s = connect_tunnel(p.port, "localhost", upstreams["good"].port)
    s.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, never finished
    after = closed_within(s, 4.0)
    assert after is not None and 0.8 < after < 2.5
    [ex] = p.wait_for(lambda xs: len(xs) == 1)
    assert ex["error"] == "client-tls" and ex["tlsFailure"] == "handshake-timeout"
    assert "did not finish the TLS handshake within 1 s (--tls-handshake-timeout)" in ex["errorDetail"]
    # The analyzer does not blame the CA for a client that merely stalled.
    [f] = [f for f in p.analyze()["findings"] if f["rule"] == "tls-fault"]
    assert f["title"] == "The client did not finish the TLS handshake in time" and f["severity"] == "warning"


@pytest.mark.faults
def test_a_stalled_upstream_handshake_is_answered_502_with_the_reason(make_proxy, holding):
    p = make_proxy("--tls-handshake-timeout", "1")
    start = time.monotonic()
    r = p.curl("-i", f"https://127.0.0.1:{holding.port}/", "--cacert", p.ca)
    assert time.monotonic() - start < 5
    head = r.stdout.decode(errors="replace")
    assert re.match(r"HTTP/(1\.1|2) 502", head), (head, r.stderr)
    assert "x-authtap-error: upstream-tls" in head.lower()
    [ex] = p.wait_for(lambda xs: len(xs) == 1)
    assert ex["error"] == "upstream-tls" and ex["tlsFailure"] == "handshake-timeout"
    assert ex["errorDetail"] == ("the upstream server did not finish the TLS handshake within 1 s "
                                 "(--tls-handshake-timeout)")
    [f] = [f for f in p.analyze()["findings"] if f["rule"] == "tls-fault"]
    assert f["title"] == "Upstream did not finish the TLS handshake in time"
    assert f["evidence"]["reason"] == "handshake-timeout"


# ---------- connection cap and descriptor exhaustion ----------

@pytest.mark.faults
def test_max_connections_pauses_accepting_without_spinning(make_proxy, upstreams):
    p = make_proxy("--max-connections", "3", "--request-head-timeout", "30")
    held = [connect(p.port) for _ in range(3)]
    time.sleep(0.3)
    waiting = connect(p.port)  # completes in the kernel's backlog; authtap does not accept it yet
    waiting.sendall((f"GET http://127.0.0.1:{upstreams['plain'].port}/hello HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nConnection: close\r\n\r\n").encode())
    cpu_before = cpu_seconds(p.proc.pid)
    waiting.settimeout(1.5)
    with pytest.raises(socket.timeout):
        waiting.recv(4096)
    assert cpu_seconds(p.proc.pid) - cpu_before < 0.3, "the paused listener spins"
    held[0].close()
    waiting.settimeout(5)
    got = b""
    while True:
        chunk = waiting.recv(65536)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b'{"hello":"world"}')
    for s in held[1:]:
        s.close()
    assert p.proc.poll() is None
    assert "--max-connections 3" in p.stderr_path.read_text()


@pytest.mark.faults
def test_running_out_of_descriptors_is_survived_and_logged_once_per_interval(make_proxy, upstreams):
    p = make_proxy("--max-connections", "10000", "--request-head-timeout", "30")
    pid = p.proc.pid
    base = open_fds(pid)
    limit = base + 12
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    try:
        crowd = []
        for _ in range(60):
            crowd.append(connect(p.port))
        cpu_before = cpu_seconds(pid)
        time.sleep(3)
        # Backing off, not spinning on accept(2).
        assert cpu_seconds(pid) - cpu_before < 0.5
        assert p.proc.poll() is None
        assert open_fds(pid) <= limit
        for s in crowd:
            s.close()
        # The backlog drains as descriptors free up; a normal client is then served.
        deadline = time.time() + 15
        ok = False
        while time.time() < deadline and not ok:
            ok = proxied_get(p.port, upstreams["plain"].port, timeout=3).startswith(b"HTTP/1.1 200")
        assert ok
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    lines = [line for line in p.stderr_path.read_text().splitlines() if "cannot accept" in line]
    assert 1 <= len(lines) <= 3, lines
    assert "EMFILE" in lines[0]


# ---------- slowloris ----------

def test_slowloris_crowd_leaves_a_normal_client_fast_and_memory_bounded(make_proxy, keepalive_server):
    count = int(os.environ.get("AUTHTAP_SLOWLORIS", "1000"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    p = make_proxy("--request-head-timeout", "60", "--max-connections", str(count + 100), "--quiet")
    pid = p.proc.pid
    # An upstream that writes each response at once (http.server's separate writes meet delayed ACKs).
    upstream = keepalive_server.port

    def latencies(n):
        out = []
        for _ in range(n):
            start = time.perf_counter()
            r = proxied_get(p.port, upstream, path="/")
            out.append((time.perf_counter() - start) * 1000)
            assert r.startswith(b"HTTP/1.1 200") and r.endswith(b"ok"), r[:200]
        return sorted(out)

    latencies(20)  # warm-up
    alone = latencies(200)
    rss_before = rss_kib(pid)
    crowd = []
    try:
        for i in range(count):
            s = connect(p.port)
            s.sendall(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: slow")
            crowd.append(s)
        deadline = time.time() + 30
        while open_fds(pid) < count and time.time() < deadline:
            time.sleep(0.1)
        assert open_fds(pid) >= count, "the proxy did not accept the whole crowd"
        lat = latencies(200)
        rss_after = rss_kib(pid)
        p50 = statistics.median(lat)
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(f"\nalone: p50 {statistics.median(alone):.2f} ms, p99 {alone[int(len(alone) * 0.99) - 1]:.2f} ms")
        print(f"slowloris {count}: normal client p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
              f"RSS {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB with the crowd "
              f"({(rss_after - rss_before) / count:.1f} KiB per slow connection)")
        assert p99 < 100
        # Bounded: a few KiB per slow connection, not a buffer each.
        assert rss_after - rss_before < count * 64
        assert p.proc.poll() is None
    finally:
        for s in crowd:
            s.close()
