"""A plain-HTTP upstream that logs, per TCP connection, the raw bytes it received and the requests it parsed
from them with RFC 9112 framing (Content-Length or chunked). A smuggled request is one it parsed that the
client never sent as a request of its own: tests look for its path. Every answer names the upstream
connection that carried it, so a test can tell whether two clients shared one."""
import socket
import threading


def _read_line(buf, recv):
    while b"\r\n" not in buf[0]:
        chunk = recv(65536)
        if not chunk:
            raise EOFError
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\r\n", 1)
    return line


def _read_exact(buf, recv, n):
    while len(buf[0]) < n:
        chunk = recv(65536)
        if not chunk:
            raise EOFError
        buf[0] += chunk
    data, buf[0] = buf[0][:n], buf[0][n:]
    return data


class LoggingUpstream:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = []   # [{"raw": bytes, "requests": [(method, path, headers, body)]}]
        self.running = True
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self.lock:
                index = len(self.connections)
                self.connections.append({"raw": b"", "requests": []})
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn, index):
        conn.settimeout(10)
        buf = [b""]

        def recv(n):
            data = conn.recv(n)
            with self.lock:
                self.connections[index]["raw"] += data
            return data
        try:
            for _ in range(100):
                request_line = _read_line(buf, recv)
                if not request_line:
                    continue
                parts = request_line.split(b" ")
                headers = []
                while True:
                    line = _read_line(buf, recv)
                    if not line:
                        break
                    name, _, value = line.partition(b":")
                    headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
                lower = {n.lower(): v for n, v in headers}
                body = b""
                if lower.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(_read_line(buf, recv).split(b";")[0], 16)
                        if size == 0:
                            while _read_line(buf, recv):
                                pass
                            break
                        body += _read_exact(buf, recv, size)
                        _read_line(buf, recv)
                elif "content-length" in lower:
                    body = _read_exact(buf, recv, int(lower["content-length"]))
                method = parts[0].decode("latin-1")
                path = parts[1].decode("latin-1") if len(parts) > 1 else ""
                with self.lock:
                    self.connections[index]["requests"].append((method, path, headers, body))
                answer = f"conn={index} path={path} body={len(body)}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(answer)).encode() + b"\r\n\r\n" + answer)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            conn.close()

    def requests(self):
        with self.lock:
            return [r for c in self.connections for r in c["requests"]]

    def raw(self):
        with self.lock:
            return b"".join(c["raw"] for c in self.connections)

    def stop(self):
        self.running = False
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)

