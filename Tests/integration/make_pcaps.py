#!/usr/bin/env python3
"""Produces the small real pcap fixtures in Tests/fixtures/pcap with tcpdump on loopback, using
openssl s_server / s_client and curl as the TLS peers. Needs root (tcpdump). Run from anywhere:

    python3 Tests/integration/make_pcaps.py [OUTDIR]

Each fixture is one scenario; test_capture.py asserts how authtap classifies it."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "fixtures" / "pcap"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(d):
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return crt, key


class Tcpdump:
    def __init__(self, path, port):
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(path), f"tcp port {port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump prints "listening on lo" once the capture is live.
        deadline = time.time() + 10
        line = b""
        while time.time() < deadline and b"listening" not in line:
            line = self.proc.stderr.readline()
        time.sleep(1.0)

    def stop(self):
        time.sleep(0.5)
        self.proc.send_signal(2)
        self.proc.wait(timeout=10)


def s_server(port, crt, key, *extra):
    p = subprocess.Popen(["openssl", "s_server", "-accept", str(port), "-cert", crt, "-key", key, "-www", "-quiet", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait for the listening socket without connecting to it (a probe would show up in the capture).
    deadline = time.time() + 10
    while time.time() < deadline and f":{port:04X} 00000000:0000 0A" not in Path("/proc/net/tcp").read_text():
        time.sleep(0.05)
    return p


def scenario(name, body):
    port = free_port()
    path = OUT / f"{name}.pcap"
    dump = Tcpdump(path, port)
    try:
        body(port)
    finally:
        dump.stop()
    print(f"{path}: {path.stat().st_size} bytes")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp())
    crt, key = make_cert(d)

    def completed(port):
        srv = s_server(port, crt, key)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", crt, "--resolve", f"localhost:{port}:127.0.0.1",
                        "--http1.1", f"https://localhost:{port}/"], timeout=20)
        srv.kill()

    def completed_ipv6(port):
        srv = subprocess.Popen(["openssl", "s_server", "-6", "-accept", str(port), "-cert", crt, "-key", key, "-www", "-quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and f":{port:04X} 00000000000000000000000000000000:0000 0A" not in Path("/proc/net/tcp6").read_text():
            time.sleep(0.05)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-k", "--http1.1", f"https://[::1]:{port}/"], timeout=20)
        srv.kill()

    def untrusted_tls12(port):
        srv = s_server(port, crt, key)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--tls-max", "1.2", "--cacert", "/etc/ssl/certs/ca-certificates.crt",
                        "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"], timeout=20)
        srv.kill()

    def untrusted_tls13(port):
        srv = s_server(port, crt, key)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", "/etc/ssl/certs/ca-certificates.crt",
                        "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"], timeout=20)
        srv.kill()

    def version_mismatch(port):
        srv = s_server(port, crt, key, "-tls1_3")
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-tls1_2"],
                       input=b"", capture_output=True, timeout=20)
        srv.kill()

    def refused(port):
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"https://127.0.0.1:{port}/"], timeout=20)

    def silent(port):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(5)
        held = []
        t = threading.Thread(target=lambda: held.append(ls.accept()), daemon=True)
        t.start()
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "1.5", "--resolve", f"silent.example:{port}:127.0.0.1",
                        f"https://silent.example:{port}/"], timeout=20)
        time.sleep(0.2)
        ls.close()

    def reset_mid_handshake(port):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(5)

        def serve():
            c, _ = ls.accept()
            c.recv(4096)  # the ClientHello
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()     # linger 0: RST

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--resolve", f"reset.example:{port}:127.0.0.1", f"https://reset.example:{port}/"], timeout=20)
        t.join(timeout=5)
        ls.close()

    scenario("completed", completed)
    scenario("completed-ipv6", completed_ipv6)
    scenario("untrusted-tls12", untrusted_tls12)
    scenario("untrusted-tls13", untrusted_tls13)
    scenario("version-mismatch", version_mismatch)
    scenario("refused", refused)
    scenario("no-server-hello", silent)
    scenario("reset-mid-handshake", reset_mid_handshake)


if __name__ == "__main__":
    main()
