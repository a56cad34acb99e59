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
    assert r["client"] == "127.0.0.1" and r["server"] == "127.0.0.1"
    if outcome == "completed":
        assert r["serverVersion"] == "TLSv1.3" and r["durationMs"] > 0
        assert r["alpnOffered"] and r["versionsOffered"][0].startswith("TLSv1.3")
    if name == "untrusted-tls12":
        # TLS 1.2 sends the certificate in clear: its facts are read from the packets.
        assert r["certificateSubject"] == "CN=localhost" and "localhost" in r["certificateSANs"]


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


def test_live_capture_on_loopback(tmp_path, pki):
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
    cap = subprocess.Popen([str(AUTHTAP), "capture", "--interface", "lo", "--port", str(port), "--duration", "20",
                            "--db", str(db), "--write", str(written)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout.readline().startswith("authtap capturing on lo")
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
    assert len(lines) == 1 and "setcap cap_net_raw" in lines[0] and "root" in lines[0]
    assert "Traceback" not in out.stderr and "Fatal" not in out.stderr
