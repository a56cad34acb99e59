"""An HTTP/2 origin for test_http2.py, built on the h2 (hyper-h2) library: TLS on 127.0.0.1 with ALPN, paths that
make it misbehave the way real origins do (reset a stream before or during its response, send GOAWAY), and a count
of the connections it accepted so the tests can check upstream pooling.

Run as `h2_upstream.py CERT KEY PORTFILE` (conftest.port_file_server does): it listens on a free loopback port,
writes the port to PORTFILE when it is ready, and keeps STATS (stats.json beside PORTFILE) up to date. The
environment variable H2UP_ALPN (default "h2,http/1.1") lists the ALPN protocols it accepts, in its order of
preference; a connection that does not negotiate h2 is served by a small HTTP/1.1 fallback (the /ok, /large and
/stats paths only), so "http/1.1" alone makes it an HTTP/1.1-only origin that echoes what it received.

Paths (a `delay=MS` query parameter delays any answer, to keep streams in flight at the same time; parameter
names stay clear of OAuth words such as code or cookie, which authtap masks in the targets it records):
  /ok...            200 JSON echo of the request: protocol, connection number, stream, pseudo-headers, headers,
                    body size and SHA-256, and any RFC 9113 section 8.2 violations found in the request head
  /large/N          200 with N bytes (the conftest LARGE_SEED pattern), sent within the peer's flow-control windows
  /reset-before     RST_STREAM (reason=NAME, default REFUSED_STREAM) instead of a response
  /reset-mid        response headers and 1000 body bytes (no content-length), then RST_STREAM (default INTERNAL_ERROR)
  /goaway           GOAWAY (reason=NAME, default NO_ERROR) with last_stream_id below this stream, then close
  /goaway-after     a complete 200, then GOAWAY NO_ERROR with last_stream_id = this stream, then close
  /early            answers 200 as soon as the request head arrives, then RST_STREAM NO_ERROR if the client is
                    still sending the body (RFC 9113 section 8.1)
  /stats            the statistics as JSON (the tests read the file, which adds no connection)
"""
import asyncio
import hashlib
import json
import os
import ssl
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

LARGE_SEED = b"authtap-large-body"  # the same pattern as conftest's /large/N
BLOCK = hashlib.sha256(LARGE_SEED).digest() * 2048  # 64 KiB
CONNECTION_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
REQUEST_PSEUDO = {":method", ":scheme", ":authority", ":path"}


class Stats:
    def __init__(self, path):
        self.path = Path(path)
        self.connections = []
        self.write()

    def new_connection(self, alpn):
        info = {"id": len(self.connections) + 1, "alpn": alpn, "streams": 0, "active": 0, "maxConcurrent": 0,
                "paths": [], "closed": False}
        self.connections.append(info)
        self.write()
        return info

    def as_json(self):
        return {"accepted": len(self.connections), "connections": self.connections}

    def write(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_json()))
        os.replace(tmp, self.path)


STATS = None


def large_body(n):
    out = bytearray()
    while len(out) < n:
        out += BLOCK[: n - len(out)]
    return bytes(out)


def violations(pairs):
    """What RFC 9113 section 8.2 forbids in a request head, as readable strings (empty when well formed)."""
    found = []
    seen_regular = False
    pseudo = []
    for k, v in pairs:
        if k.startswith(":"):
            if seen_regular:
                found.append(f"pseudo-header {k} after a regular header")
            if k not in REQUEST_PSEUDO:
                found.append(f"unknown pseudo-header {k}")
            if k in pseudo:
                found.append(f"duplicate pseudo-header {k}")
            pseudo.append(k)
            continue
        seen_regular = True
        if k != k.lower():
            found.append(f"uppercase header name {k}")
        if k.lower() in CONNECTION_HEADERS:
            found.append(f"connection-specific header {k}")
        if k.lower() == "te" and v.lower() != "trailers":
            found.append(f"te: {v}")
        if k.lower() == "host" and v != dict(pairs).get(":authority", v):
            found.append("host header that differs from :authority")  # 8.3.1 lets an intermediary keep Host
    for k in (":method", ":scheme", ":path"):
        if k not in pseudo:
            found.append(f"missing {k}")
    return found


def query(path):
    q = parse_qs(urlsplit(path).query)
    return {k: v[-1] for k, v in q.items()}


def error_code(q, default):
    return h2.errors.ErrorCodes[q.get("reason", default)]


class Request:
    def __init__(self, headers):
        self.headers = headers
        self.pseudo = {k: v for k, v in headers if k.startswith(":")}
        self.path = self.pseudo.get(":path", "")
        self.route = urlsplit(self.path).path
        self.q = query(self.path)
        self.body = hashlib.sha256()
        self.size = 0
        self.ended = False
        self.answered = False


class H2Origin:
    """One HTTP/2 connection, server side."""

    def __init__(self, reader, writer, info):
        self.reader, self.writer, self.info = reader, writer, info
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=False, normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.requests = {}
        self.tasks = set()
        self.window = asyncio.Event()
        self.closing = False

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def run(self):
        self.conn.initiate_connection()
        self.flush()
        while not self.closing:
            data = await self.reader.read(65536)
            if not data:
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.flush()
                break
            for ev in events:
                self.on_event(ev)
            self.flush()
        for t in list(self.tasks):
            t.cancel()

    def on_event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            req = Request([(k, v) for k, v in ev.headers])
            self.requests[ev.stream_id] = req
            self.info["streams"] += 1
            self.info["active"] += 1
            self.info["maxConcurrent"] = max(self.info["maxConcurrent"], self.info["active"])
            self.info["paths"].append(req.path)
            STATS.write()
            if req.route == "/early":
                req.answered = True
                self.spawn(self.early(ev.stream_id, req))
        elif isinstance(ev, h2.events.DataReceived):
            req = self.requests.get(ev.stream_id)
            if req is not None:
                req.body.update(ev.data)
                req.size += len(ev.data)
            if ev.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except h2.exceptions.StreamClosedError:
                    pass
        elif isinstance(ev, h2.events.StreamEnded):
            req = self.requests.get(ev.stream_id)
            if req is not None:
                req.ended = True
                if not req.answered:
                    self.spawn(self.respond(ev.stream_id, req))
        elif isinstance(ev, h2.events.StreamReset):
            self.done(ev.stream_id)
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window.set()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closing = True

    def spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def done(self, sid):
        req = self.requests.pop(sid, None)
        if req is not None:
            self.info["active"] -= 1
            STATS.write()
        self.window.set()

    async def send_body(self, sid, data, end=True):
        pos = 0
        while pos < len(data):
            if sid not in self.requests:
                return
            try:
                size = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                           len(data) - pos)
            except h2.exceptions.StreamClosedError:
                return
            if size <= 0:
                self.window.clear()
                try:
                    await asyncio.wait_for(self.window.wait(), 30)
                except asyncio.TimeoutError:
                    return
                continue
            self.conn.send_data(sid, data[pos: pos + size])
            pos += size
            self.flush()
            await self.writer.drain()
        if end:
            self.conn.end_stream(sid)
            self.flush()
            self.done(sid)

    async def respond(self, sid, req):
        req.answered = True
        try:
            if "delay" in req.q:
                await asyncio.sleep(int(req.q["delay"]) / 1000)
            await self.route(sid, req)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            self.done(sid)
        self.flush()

    async def route(self, sid, req):
        r = req.route
        if r == "/reset-before":
            self.conn.reset_stream(sid, error_code(req.q, "REFUSED_STREAM"))
            self.done(sid)
        elif r == "/reset-mid":
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
            self.conn.send_data(sid, b"m" * 1000)
            self.flush()
            await asyncio.sleep(0.3)
            self.conn.reset_stream(sid, error_code(req.q, "INTERNAL_ERROR"))
            self.done(sid)
        elif r == "/goaway":
            self.conn.close_connection(error_code(req.q, "NO_ERROR"), last_stream_id=max(0, sid - 2))
            self.done(sid)
            await self.close_soon()
        elif r == "/goaway-after":
            await self.send_json(sid, req, 200, self.echo(sid, req))
            self.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid)
            await self.close_soon()
        else:
            status, ctype, body = answer(r, req, self.echo(sid, req))
            self.conn.send_headers(sid, [(":status", str(status)), ("content-type", ctype),
                                         ("content-length", str(len(body)))])
            await self.send_body(sid, body)

    async def early(self, sid, req):
        await self.send_json(sid, req, 200, {"early": True})
        if not req.ended:
            try:
                self.conn.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass
        self.done(sid)
        self.flush()

    async def send_json(self, sid, req, status, obj):
        body = json.dumps(obj).encode()
        self.conn.send_headers(sid, [(":status", str(status)), ("content-type", "application/json"),
                                     ("content-length", str(len(body)))])
        await self.send_body(sid, body)

    async def close_soon(self):
        self.flush()
        await self.writer.drain()
        self.closing = True
        await asyncio.sleep(0.1)
        self.writer.close()

    def echo(self, sid, req):
        return {"proto": "h2", "conn": self.info["id"], "stream": sid, "method": req.pseudo.get(":method"),
                "scheme": req.pseudo.get(":scheme"), "authority": req.pseudo.get(":authority"), "path": req.path,
                "headers": req.headers, "violations": violations(req.headers), "bodySize": req.size,
                "bodySha256": req.body.hexdigest()}


def answer(route, req, echo):
    """(status, content type, body) of the paths both protocols serve."""
    if route.startswith("/ok"):
        return 200, "application/json", json.dumps(echo).encode()
    if route.startswith("/large/"):
        return 200, "application/octet-stream", large_body(int(route.split("/")[2]))
    if route == "/stats":
        return 200, "application/json", json.dumps(STATS.as_json()).encode()
    if route in ("/reset-before", "/reset-mid", "/goaway", "/goaway-after", "/early"):
        return 404, "application/json", json.dumps({"error": "this path needs h2", "proto": echo["proto"]}).encode()
    return 404, "application/json", b'{"error":"not_found"}'


async def serve_h1(reader, writer, info):
    """A small HTTP/1.1 origin for connections that did not negotiate h2: Content-Length and chunked bodies."""
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
        low = {k.lower(): v for k, v in headers}
        req = Request([(":method", method), (":path", target)] + headers)
        if low.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                chunk = await reader.readexactly(size)
                req.body.update(chunk)
                req.size += size
                await reader.readexactly(2)
        elif int(low.get("content-length", "0")):
            chunk = await reader.readexactly(int(low["content-length"]))
            req.body.update(chunk)
            req.size += len(chunk)
        info["streams"] += 1
        info["paths"].append(target)
        STATS.write()
        if "delay" in req.q:
            await asyncio.sleep(int(req.q["delay"]) / 1000)
        echo = {"proto": "http/1.1", "conn": info["id"], "version": version, "method": method, "path": target,
                "headers": headers, "bodySize": req.size, "bodySha256": req.body.hexdigest()}
        status, ctype, body = answer(req.route, req, echo)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        await writer.drain()


async def handle(reader, writer):
    sslobj = writer.get_extra_info("ssl_object")
    alpn = sslobj.selected_alpn_protocol() if sslobj else None
    info = STATS.new_connection(alpn)
    try:
        if alpn == "h2":
            await H2Origin(reader, writer, info).run()
        else:
            await serve_h1(reader, writer, info)
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        info["closed"] = True
        STATS.write()
        writer.close()


async def main(cert, key, portfile):
    global STATS
    STATS = Stats(Path(portfile).with_name("stats.json"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(os.environ.get("H2UP_ALPN", "h2,http/1.1").split(","))
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    tmp = Path(portfile + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, portfile)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
