"""Packet-capture mode: the committed real pcap fixtures (made by make_pcaps.py with tcpdump,
openssl and curl), bad files, a live capture on lo, and the missing-privilege error."""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AUTHTAP

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcap"


def read(path, db):
    out = subprocess.run([str(AUTHTAP), "capture", "--read", str(path), "--db", str(db)], capture_output=True, text=True, timeout=60)
    return out


def records(db):
    out = subprocess.run([str(AUTHTAP), "handshakes", "--db", str(db), "--format", "json"], capture_output=True, text=True, timeout=60, check=True)
    return [r["record"] for r in json.loads(out.stdout)]


@pytest.mark.parametrize("name,outcome,side,alert,sni", [
    ("completed", "completed", None, None, "localhost"),
    ("completed-ipv6", "completed", None, None, None),
    ("untrusted-tls12", "alert", "client", "unknown_ca", "localhost"),
    ("untrusted-tls13", "alert", "client", "unknown_ca", "localhost"),
    ("version-mismatch", "version-mismatch", "server", "protocol_version", "localhost"),
    ("refused", "refused", "server", None, None),
    ("no-server-hello", "no-server-hello", None, None, "silent.example"),
    ("reset-mid-handshake", "reset-during-handshake", "server", None, "reset.example"),
])
def test_fixture_classification(tmp_path, name, outcome, side, alert, sni):
    db = tmp_path / "c.sqlite"
    out = read(FIXTURES / f"{name}.pcap", db)
    assert out.returncode == 0, out.stderr
    [r] = records(db)
    assert (r["outcome"], r.get("side"), r.get("alert"), r.get("sni")) == (outcome, side, alert, sni), r
    assert r["firstPacket"] == 1 and r["lastPacket"] >= r["firstPacket"]
    assert (r["client"], r["server"]) == (("::1", "::1") if name.endswith("ipv6") else ("127.0.0.1", "127.0.0.1"))
    if outcome == "completed":
        assert r["serverVersion"] == "TLSv1.3" and r["durationMs"] > 0
        assert r["alpnOffered"] and r["versionsOffered"][0].startswith("TLSv1.3")
    if name == "untrusted-tls12":
        # TLS 1.2 sends the certificate in clear: its facts are read from the packets.
        assert r["certificateSubject"] == "CN=localhost" and "localhost" in r["certificateSANs"]


def test_pcapng_reads_the_same(tmp_path):
    editcap = shutil.which("editcap")
    if not editcap:
        pytest.fail("editcap (with tshark) is not installed: scripts/install-deps --test installs it")
    ng = tmp_path / "completed.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(FIXTURES / "completed.pcap"), str(ng)], check=True)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    db = tmp_path / "ng.sqlite"
    assert read(ng, db).returncode == 0
    [r] = records(db)
    assert r["outcome"] == "completed" and r["sni"] == "localhost"


def test_bad_files_get_one_line_errors_and_keep_what_they_can(tmp_path):
    db = tmp_path / "c.sqlite"
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all\n" * 10)
    out = read(garbage, db)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not a pcap or pcapng file" in out.stderr
    missing = read(tmp_path / "nope.pcap", db)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    # Truncated in the middle of a packet: the handshakes before the cut are stored, and the error says where.
    whole = (FIXTURES / "completed.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) - 40])
    out = read(cut, db)
    assert out.returncode == 0, out.stderr
    assert "truncated" in out.stderr.lower() and "after packet" in out.stderr
    assert len(records(db)) == 1


@pytest.mark.parametrize("interface", ["lo", "any"])  # "any" is Linux cooked capture
def test_live_capture_on_loopback(tmp_path, pki, interface):
    if os.geteuid() != 0:
        pytest.skip("live capture needs root or CAP_NET_RAW; CI runs as root")
    cert, key = pki["good"]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", str(port), "-cert", cert, "-key", key, "-www", "-quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "live.sqlite"
    written = tmp_path / "live.pcap"
    cap = subprocess.Popen([str(AUTHTAP), "capture", "--interface", interface, "--port", str(port), "--duration", "20",
                            "--db", str(db), "--write", str(written)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout.readline().startswith(f"authtap capturing on {interface}")
        time.sleep(0.5)
        for _ in range(50):
            if f":{port:04X} 00000000:0000 0A" in Path("/proc/net/tcp").read_text():
                break
            time.sleep(0.1)
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pki["ca"],
                            "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"], capture_output=True, text=True, timeout=20)
        assert r.stdout == "200"
        time.sleep(1.0)
    finally:
        cap.send_signal(2)
        out, err = cap.communicate(timeout=30)
        srv.kill()
    assert cap.returncode == 0, err
    assert "completed" in out and "sni=localhost" in out, (out, err)
    assert "0 dropped by the kernel, 0 by authtap" in err
    [r] = [r for r in records(db) if r["serverPort"] == port]
    assert r["outcome"] == "completed" and r["sni"] == "localhost"
    # The written file reads back to the same record.
    db2 = tmp_path / "again.sqlite"
    assert read(written, db2).returncode == 0
    assert [x["outcome"] for x in records(db2) if x["serverPort"] == port] == ["completed"]


def test_missing_privilege_is_one_line_and_status_2(tmp_path):
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv:
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    elif os.geteuid() != 0:
        cmd = []
    else:
        pytest.skip("needs setpriv to drop root for this check")
    binary = tmp_path / "authtap"
    shutil.copy(AUTHTAP, binary)  # readable by nobody, without file capabilities
    binary.chmod(0o755)
    tmp_path.chmod(0o777)
    out = subprocess.run(cmd + [str(binary), "capture", "--interface", "lo", "--duration", "1", "--db", str(tmp_path / "x.sqlite")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "setcap cap_net_raw" in lines[0] and "root or CAP_NET_RAW" in lines[0]
    assert "Traceback" not in out.stderr and "Fatal" not in out.stderr


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("live capture needs root or CAP_NET_RAW; CI runs as root")


@pytest.mark.faults
def test_proxy_pcap_attaches_packets_and_reports_handshakes_it_never_saw(make_proxy, upstreams, tmp_path):
    needs_root()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    keylog = tmp_path / "keys.log"
    written = tmp_path / "proxy.pcap"
    p = make_proxy("--pcap", "lo", "--pcap-port", str(closed_port), "--pcap-port", str(upstreams["good"].port), "--keylog", str(keylog),
                   "--pcap-write", str(written))
    time.sleep(0.5)
    # 1. A client that does not trust the authtap CA: an exchange-level failure, now with its packets.
    r = subprocess.run(["curl", "-sS", "--proxy", p.url, "--cacert", "/etc/ssl/certs/ca-certificates.crt",
                        f"https://localhost:{upstreams['good'].port}/hello"], capture_output=True, timeout=30)
    assert r.returncode == 60
    # 2. A connection that never went through the proxy: refused, seen only in packets.
    subprocess.run(["curl", "-s", "--max-time", "3", f"https://127.0.0.1:{closed_port}/"], capture_output=True, timeout=30)
    # 3. A healthy exchange, for the key log.
    ok = p.curl("--cacert", p.ca, f"https://localhost:{upstreams['good'].port}/hello")
    assert ok.stdout == b'{"hello":"world"}'
    time.sleep(1.0)
    assert p.stop() == 0
    a = p.analyze()
    tls = [f for f in a["findings"] if f["rule"] == "tls-fault"]
    client_leg = [f for f in tls if f["exchanges"]]
    assert len(client_leg) == 1 and "packets" in client_leg[0]["evidence"], json.dumps(tls, indent=1)
    assert client_leg[0]["evidence"]["handshake"].startswith("alert by client")
    refused = [f for f in tls if not f["exchanges"]]
    assert [f["evidence"]["outcome"] for f in refused] == ["refused"], json.dumps(tls, indent=1)
    assert refused[0]["evidence"]["server"] == f"127.0.0.1:{closed_port}"
    hs = records(p.db)
    assert any(h["outcome"] == "completed" and h["serverPort"] == upstreams["good"].port for h in hs)
    # The key log: both legs, NSS format, private to its owner.
    assert oct(keylog.stat().st_mode & 0o777) == "0o600"
    lines = keylog.read_text().splitlines()
    assert any(l.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET ") or l.startswith("CLIENT_RANDOM ") for l in lines)
    randoms = {l.split()[1] for l in lines}
    assert len(randoms) >= 2  # at least one handshake per leg
    # With the key log, tshark decrypts the written capture: the request appears on both legs (HTTP/2 from curl
    # to authtap, HTTP/1.1 from authtap to this upstream).
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed: scripts/install-deps --test installs it"
    out = subprocess.run([tshark, "-r", str(written), "-o", f"tls.keylog_file:{keylog}", "-Y",
                          'http.request.uri == "/hello" or http2.headers.path == "/hello"', "-T", "fields",
                          "-e", "frame.protocols"], capture_output=True, text=True, timeout=60)
    legs = out.stdout.split()
    assert any("http2" in f for f in legs) and any("http2" not in f for f in legs), (out.stdout, out.stderr)


def test_agrees_with_tshark(tmp_path):
    tshark = shutil.which("tshark")
    if not tshark:
        pytest.fail("tshark is not installed: scripts/install-deps --test installs it")
    for name in ["completed", "untrusted-tls12", "untrusted-tls13", "version-mismatch", "refused", "no-server-hello", "reset-mid-handshake"]:
        path = FIXTURES / f"{name}.pcap"
        db = tmp_path / f"{name}.sqlite"
        assert read(path, db).returncode == 0
        [r] = records(db)

        def fields(filter_, field):
            out = subprocess.run([tshark, "-r", str(path), "-Y", filter_, "-T", "fields", "-e", field], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return [x for x in out.stdout.split("\n") if x]

        sni = fields("tls.handshake.type == 1", "tls.handshake.extensions_server_name")
        assert (sni[0] if sni else None) == r.get("sni"), name
        alerts = fields("tls.alert_message", "tls.alert_message.desc")
        if r.get("alert") and r["alert"] != "encrypted":
            codes = {"unknown_ca": "48", "protocol_version": "70", "handshake_failure": "40"}
            assert codes[r["alert"]] in alerts, (name, alerts)
        else:
            assert not alerts or r["outcome"] == "completed", (name, alerts)
        resets = fields("tcp.flags.reset == 1", "tcp.srcport")
        if r["outcome"] in ("refused", "reset-during-handshake"):
            assert resets and int(resets[0]) == (r["serverPort"] if r["side"] == "server" else r["clientPort"]), name
