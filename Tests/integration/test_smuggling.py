"""Request smuggling through authtap, with the bytes of the published variants on a raw socket, and what
reaches a strict upstream that logs every request it parses.

The variants come from PortSwigger's Web Security Academy, "HTTP request smuggling"
(https://portswigger.net/web-security/request-smuggling: CL.TE, TE.CL, TE.TE and its obfuscations
`Transfer-Encoding: xchunked`, ` Transfer-Encoding: chunked`, `Transfer-Encoding:[tab]chunked`,
`X: X[\\n]Transfer-Encoding: chunked`, `Transfer-Encoding\\n: chunked`, two Transfer-Encoding fields), and from
RFC 9112 §6.1 (a request with both Content-Length and Transfer-Encoding; Transfer-Encoding in HTTP/1.0) and
§6.3 (differing Content-Length values; Transfer-Encoding whose final coding is not chunked). The
`Connection: content-length` case is RFC 9110 §7.6.1: a proxy drops the fields Connection names, and
dropping Content-Length leaves the body unframed upstream, where it reads as a second request.

In every case the request smuggled inside the body (GET /smuggled) must never reach the upstream as a
request of its own: authtap refuses the request (400, recorded as a failure), or forwards it with the one
framing it decoded itself."""
import socket
import time

import pytest

from conftest import raw_exchange
from smuggling_upstream import LoggingUpstream

pytestmark = pytest.mark.faults

SMUG = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def upstream():
    u = LoggingUpstream()
    yield u
    u.stop()


def chunked(data):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


def head(method, up, *fields, version=b"HTTP/1.1"):
    lines = [method + f" http://127.0.0.1:{up}/first ".encode() + version, b"Host: 127.0.0.1"]
    return b"\r\n".join(lines + list(fields)) + b"\r\n\r\n"


# (name, request bytes for an upstream port); every one is refused with 400.
REFUSED = [
    ("Connection: content-length",
     lambda up: head(b"GET", up, b"Content-Length: %d" % len(SMUG), b"Connection: content-length") + SMUG),
    ("Connection: Content-Length among other tokens",
     lambda up: head(b"POST", up, b"Content-Length: %d" % len(SMUG), b"Connection: keep-alive, Content-Length") + SMUG),
    ("Connection: transfer-encoding",
     lambda up: head(b"POST", up, b"Transfer-Encoding: chunked", b"Connection: transfer-encoding") + chunked(SMUG)),
    ("Connection: host", lambda up: head(b"GET", up, b"Connection: host")),
    ("CL.TE", lambda up: head(b"POST", up, b"Content-Length: %d" % (5 + len(SMUG)), b"Transfer-Encoding: chunked")
     + b"0\r\n\r\n" + SMUG),
    ("TE.CL", lambda up: head(b"POST", up, b"Transfer-Encoding: chunked", b"Content-Length: 4") + chunked(SMUG)),
    ("TE.TE xchunked", lambda up: head(b"POST", up, b"Transfer-Encoding: xchunked", b"Content-Length: 4")
     + chunked(SMUG)),
    ("TE.TE xchunked alone", lambda up: head(b"POST", up, b"Transfer-Encoding: xchunked") + chunked(SMUG)),
    ("TE.TE space before colon", lambda up: head(b"POST", up, b"Transfer-Encoding : chunked", b"Content-Length: 4")
     + chunked(SMUG)),
    ("TE.TE chunked, identity", lambda up: head(b"POST", up, b"Transfer-Encoding: chunked, identity") + chunked(SMUG)),
    ("TE.TE identity, chunked twice", lambda up: head(b"POST", up, b"Transfer-Encoding: identity",
                                                       b"Transfer-Encoding: chunked") + chunked(SMUG)),
    ("TE.TE duplicated fields", lambda up: head(b"POST", up, b"Transfer-Encoding: chunked", b"Transfer-Encoding: x")
     + chunked(SMUG)),
    ("TE.TE obs-fold", lambda up: head(b"POST", up, b"Content-Length: 4", b"X: y", b" Transfer-Encoding: chunked")
     + chunked(SMUG)),
    ("TE.TE newline before colon", lambda up: head(b"POST", up, b"Content-Length: 4", b"Transfer-Encoding\n: chunked")
     + chunked(SMUG)),
    ("TE.TE bare LF", lambda up: head(b"POST", up, b"Content-Length: 4", b"X: X\nTransfer-Encoding: chunked")
     + chunked(SMUG)),
    ("differing Content-Length", lambda up: head(b"POST", up, b"Content-Length: 4", b"Content-Length: %d" % len(SMUG))
     + SMUG),
    ("Content-Length list", lambda up: head(b"POST", up, b"Content-Length: 4, %d" % len(SMUG)) + SMUG),
    ("signed Content-Length", lambda up: head(b"POST", up, b"Content-Length: +%d" % len(SMUG)) + SMUG),
    ("Transfer-Encoding in HTTP/1.0", lambda up: head(b"POST", up, b"Transfer-Encoding: chunked", version=b"HTTP/1.0")
     + chunked(SMUG)),
    # NIO's encoder drops a TRACE's framing fields: a body would follow unframed.
    ("TRACE with a body", lambda up: head(b"TRACE", up, b"Content-Length: %d" % len(SMUG)) + SMUG),
]


# Those NIOHTTP1's decoder (llhttp) lets through, and authtap's own framing check refuses. The decoder refuses
# the others (CL.TE, TE.CL, obfuscated or listed TE, differing or signed Content-Length, obs-fold, bare LF).
REFUSED_BY_AUTHTAP = {"Connection: content-length", "Connection: Content-Length among other tokens",
                      "Connection: transfer-encoding", "Connection: host", "TE.TE identity, chunked twice",
                      "Transfer-Encoding in HTTP/1.0", "TRACE with a body"}


@pytest.mark.parametrize("name,make", REFUSED, ids=[n for n, _ in REFUSED])
def test_smuggling_variants_are_refused(make_proxy, upstream, name, make):
    proxy = make_proxy()
    out = raw_exchange(proxy.port, make(upstream.port), until_close=True, read_timeout=5)
    assert out.startswith(b"HTTP/1.1 400"), (name, out[:300])
    assert b"X-Authtap-Error: malformed-request" in out, out[:300]
    # The connection is closed after the refusal, and nothing reached the upstream.
    assert out.count(b"HTTP/1.1 ") == 1, out
    time.sleep(0.2)
    assert upstream.raw() == b"", upstream.raw()
    xs = proxy.wait_for(lambda xs: any(x["error"] == "malformed-request" for x in xs))
    assert all(x["status"] == 400 for x in xs if x["error"] == "malformed-request")
    if name in REFUSED_BY_AUTHTAP:
        assert "ambiguous request framing" in xs[0]["errorDetail"], xs[0]["errorDetail"]


def test_refusals_say_why(make_proxy, upstream):
    proxy = make_proxy()
    raw_exchange(proxy.port, REFUSED[0][1](upstream.port), until_close=True)
    xs = proxy.wait_for(lambda xs: any(x["error"] == "malformed-request" for x in xs))
    detail = [x for x in xs if x["error"] == "malformed-request"][0]["errorDetail"]
    assert "ambiguous request framing" in detail and "Connection header names content-length" in detail, detail


# Unambiguous spellings authtap accepts; upstream must get exactly one request, with the body authtap decoded
# and one canonical framing field.
ACCEPTED = [
    ("Transfer-Encoding:<tab>chunked", lambda up: head(b"POST", up, b"Transfer-Encoding:\tchunked") + chunked(SMUG),
     ("Transfer-Encoding", "chunked")),
    ("Transfer-Encoding: Chunked on a GET", lambda up: head(b"GET", up, b"Transfer-Encoding: Chunked") + chunked(SMUG),
     ("Transfer-Encoding", "chunked")),
    ("Transfer-Encoding with spaces", lambda up: head(b"POST", up, b"Transfer-Encoding:   chunked  ") + chunked(SMUG),
     ("Transfer-Encoding", "chunked")),
    ("Content-Length with leading zeros", lambda up: head(b"POST", up, b"Content-Length: 0%d" % len(SMUG)) + SMUG,
     ("Content-Length", str(len(SMUG)))),
]


@pytest.mark.parametrize("name,make,framing", ACCEPTED, ids=[n for n, _, _ in ACCEPTED])
def test_unambiguous_framing_is_forwarded_canonically(make_proxy, upstream, name, make, framing):
    proxy = make_proxy()
    out = raw_exchange(proxy.port, make(upstream.port))
    if out.startswith(b"HTTP/1.1 400"):
        # The decoder may refuse a spelling outright; refused is safe too, as long as nothing went upstream.
        assert upstream.raw() == b""
        return
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    time.sleep(0.2)
    reqs = upstream.requests()
    assert [(m, p) for m, p, _, _ in reqs] == [(out_method(make(upstream.port)), "/first")], reqs
    _, _, fields, body = reqs[0]
    assert body == SMUG
    # NIO's encoder may spell the name in lower case; the value and the count are what framing depends on.
    framing_fields = [(n.lower(), v) for n, v in fields if n.lower() in ("content-length", "transfer-encoding")]
    assert framing_fields == [(framing[0].lower(), framing[1])], fields


def out_method(request):
    return request.split(b" ", 1)[0].decode()


def test_identical_duplicate_content_length_is_one_length(make_proxy, upstream):
    proxy = make_proxy()
    req = head(b"POST", upstream.port, b"Content-Length: %d" % len(SMUG), b"Content-Length: %d" % len(SMUG)) + SMUG
    out = raw_exchange(proxy.port, req)
    time.sleep(0.2)
    assert all(p != "/smuggled" for _, p, _, _ in upstream.requests())
    if out.startswith(b"HTTP/1.1 200"):
        _, _, fields, body = upstream.requests()[0]
        assert [(n, v) for n, v in fields if n.lower() == "content-length"] == [("Content-Length", str(len(SMUG)))]
        assert body == SMUG
    else:
        assert out.startswith(b"HTTP/1.1 400") and upstream.raw() == b""


# ---------- the upstream pool is never shared between clients with --allow-remote ----------

def send_and_read(sock, request):
    sock.sendall(request)
    data = b""
    deadline = time.time() + 10
    while time.time() < deadline:
        data += sock.recv(65536)
        if b"\r\n\r\n" in data:
            head_, _, body = data.partition(b"\r\n\r\n")
            length = [int(l.split(b":")[1]) for l in head_.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return head_, body[:length[0]]
    raise AssertionError(data)


def upstream_connections(proxy_port, up_port, auth):
    """Client A makes two requests on one connection and stays open; then client B makes one.
    Returns the upstream connection index that carried each answer."""
    extra = b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n" if auth else b""
    def req(path):
        return (f"GET http://127.0.0.1:{up_port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n".encode()
                + extra + b"\r\n")
    a = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    b = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    try:
        seen = []
        for sock, path in ((a, "/a1"), (a, "/a2"), (b, "/b1"), (a, "/a3"), (b, "/b2")):
            head_, body = send_and_read(sock, req(path))
            assert head_.startswith(b"HTTP/1.1 200"), head_
            assert f"path={path}".encode() in body, body
            seen.append(int(body.split(b" ")[0].split(b"=")[1]))
        return seen
    finally:
        a.close()
        b.close()


def test_loopback_proxy_pools_upstream_connections_per_event_loop(make_proxy, upstream):
    # The control: without --allow-remote, client B takes the idle connection client A left (one loop).
    proxy = make_proxy("--threads", "1")
    a1, a2, b1, a3, b2 = upstream_connections(proxy.port, upstream.port, auth=False)
    assert a1 == a2 == b1, "a loopback proxy reuses idle upstream connections across its local clients"


def test_allow_remote_never_shares_an_upstream_connection_between_clients(make_proxy, upstream):
    proxy = make_proxy("--threads", "1", "--allow-remote", "--proxy-auth", "user:pass", "--allow-private-targets",
                       "--allow-ports", str(upstream.port))
    a1, a2, b1, a3, b2 = upstream_connections(proxy.port, upstream.port, auth=True)
    assert a1 == a2 == a3, "a client keeps its own upstream connection alive"
    assert b1 == b2, "and so does the other"
    assert a1 != b1, "but never gets the other client's"
    # Every upstream connection served one client only.
    by_conn = {}
    for index, conn in enumerate(upstream.connections):
        by_conn[index] = {p[1] for p in (r[:2] for r in conn["requests"])}
    assert by_conn[a1] == {"/a1", "/a2", "/a3"} and by_conn[b1] == {"/b1", "/b2"}, by_conn
