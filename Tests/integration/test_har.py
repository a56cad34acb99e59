"""HAR export: valid HAR 1.2 that other tools read (haralyzer, mitmproxy from PyPI), carrying
authtap's facts and failed exchanges, with every secret still masked."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AUTHTAP
from test_analyzer import Client, authserver, pkce  # noqa: F401  (fixture re-export)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ROOT = Path(__file__).resolve().parent.parent.parent


def check_har12(har):
    """The required fields and types of HAR 1.2 (softwareishard.com/blog/har-12-spec)."""
    log = har["log"]
    assert log["version"] == "1.2"
    assert isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
    assert isinstance(log["entries"], list)
    for e in log["entries"]:
        assert ISO.match(e["startedDateTime"]), e["startedDateTime"]
        assert isinstance(e["time"], (int, float)) and e["time"] >= 0
        req, resp, t = e["request"], e["response"], e["timings"]
        for k, typ in [("method", str), ("url", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                       ("queryString", list), ("headersSize", int), ("bodySize", int)]:
            assert isinstance(req[k], typ), (k, req.get(k))
        for k, typ in [("status", int), ("statusText", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                       ("content", dict), ("redirectURL", str), ("headersSize", int), ("bodySize", int)]:
            assert isinstance(resp[k], typ), (k, resp.get(k))
        assert isinstance(resp["content"]["size"], int) and isinstance(resp["content"]["mimeType"], str)
        assert isinstance(e["cache"], dict)
        for k in ["send", "wait", "receive"]:
            assert isinstance(t[k], (int, float)) and t[k] >= 0
        for k in ["blocked", "dns", "connect", "ssl"]:
            assert t[k] == -1 or t[k] >= 0
        if t["ssl"] >= 0:
            assert t["connect"] >= t["ssl"]  # ssl is included in connect
        total = sum(v for k, v in t.items() if k != "ssl" and v >= 0)
        assert abs(total - e["time"]) < 0.01, (total, e["time"])
        for h in req["headers"] + resp["headers"]:
            assert set(h) >= {"name", "value"}
        if "postData" in req:
            assert isinstance(req["postData"]["mimeType"], str) and isinstance(req["postData"]["text"], str)


@pytest.mark.faults
def test_export_is_valid_har_that_other_tools_read(proxy, authserver, upstreams, tmp_path):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    c.exchange(code, verifier)
    c.exchange(code, verifier)  # code reuse: a finding
    r = c.s.get(f"https://localhost:{upstreams['selfsigned'].port}/hello", timeout=10)  # a TLS failure: an entry with _error
    assert r.status_code == 502
    assert proxy.stop() == 0
    out = tmp_path / "s.har"
    run = subprocess.run([str(AUTHTAP), "export", "--db", str(proxy.db), "--session", "1", "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    har = json.loads(text)
    check_har12(har)
    entries = har["log"]["entries"]
    assert len(entries) == len(proxy.exchanges())
    # Form bodies carry params; masked values stay masked; no secret anywhere.
    token = [e for e in entries if e["request"]["url"].endswith("/token")]
    assert len(token) == 2
    params = {p["name"]: p["value"] for p in token[0]["request"]["postData"]["params"]}
    assert params["grant_type"] == "authorization_code" and params["code"].startswith("[masked code len=")
    for secret in [code, verifier, "webapp-secret-0001"]:
        assert secret not in text
    # authtap's facts.
    assert token[0]["_authtap"]["roles"] == ["token"] and token[0]["_authtap"]["transaction"] == 1
    assert token[1]["_authtap"]["findings"], token[1]["_authtap"]
    findings = har["log"]["_authtap"]["findings"]
    reuse = [f for f in findings if f["rule"] == "code-reuse"][0]
    assert [entries[i]["request"]["url"].endswith("/token") for i in reuse["entries"]] == [True, True]
    assert reuse["fix"] and reuse["explanation"] and reuse["severity"] == "error"
    failed = [e for e in entries if "_error" in e]
    assert len(failed) == 1 and failed[0]["_error"].startswith("upstream-tls") and failed[0]["response"]["status"] == 502
    assert failed[0]["_authtap"]["tlsFailure"] == "untrusted-issuer"
    assert any(e["timings"]["ssl"] >= 0 for e in entries)
    # Python's haralyzer parses it.
    from haralyzer import HarParser
    parser = HarParser(har)
    assert parser.har_data["version"] == "1.2" and len(parser.har_data["entries"]) == len(entries)
    # mitmproxy (from PyPI, in its own venv) reads it and sees the same number of flows.
    mitmdump = mitmproxy_venv(tmp_path)
    read = subprocess.run([mitmdump, "-nr", str(out)], capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr
    flows = [l for l in read.stdout.splitlines() if l.startswith("127.0.0.1") or re.match(r"^\S+:\d+: [A-Z]+ ", l)]
    assert len(flows) == len(entries), read.stdout
    # One transaction: its legs and its findings only.
    one = subprocess.run([str(AUTHTAP), "export", "--db", str(proxy.db), "--transaction", "1:1", "-o", "-"], capture_output=True, text=True, timeout=60)
    assert one.returncode == 0, one.stderr
    tx = json.loads(one.stdout)["log"]
    check_har12({"log": tx})
    assert [e["request"]["method"] for e in tx["entries"]] == ["GET", "GET", "POST", "POST"]
    assert {f["rule"] for f in tx["_authtap"]["findings"]} == {"code-reuse"}
    missing = subprocess.run([str(AUTHTAP), "export", "--db", str(proxy.db), "--transaction", "1:99", "-o", "-"], capture_output=True, text=True)
    assert missing.returncode != 0 and "no transaction 99 in session 1" in missing.stderr
    # -o - writes the same document to stdout.
    stdout = subprocess.run([str(AUTHTAP), "export", "--db", str(proxy.db), "--session", "1", "-o", "-"], capture_output=True, text=True, timeout=60)
    assert json.loads(stdout.stdout) == har


def mitmproxy_venv(tmp_path):
    """mitmproxy from PyPI in a venv under .build-mitmproxy (git-ignored), made once."""
    venv = ROOT / ".build-mitmproxy"
    mitmdump = venv / "bin" / "mitmdump"
    if not mitmdump.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mitmproxy"], check=True, timeout=900)
    return str(mitmdump)


def test_export_arguments(tmp_path):
    out = subprocess.run([str(AUTHTAP), "export", "--db", str(tmp_path / "none.sqlite"), "--session", "1", "-o", "-"], capture_output=True, text=True)
    assert out.returncode != 0 and "no capture database" in out.stderr
    out = subprocess.run([str(AUTHTAP), "export", "--session", "1", "--all", "-o", "-"], capture_output=True, text=True)
    assert out.returncode != 0 and "exactly one of" in out.stderr


FIX = ROOT / "Tests" / "fixtures" / "har"


def import_har(path, db, certs):
    return subprocess.run([str(AUTHTAP), "import", str(path), "--db", str(db), "--certs", str(certs)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["chrome-oauth", "firefox-oauth"])
def test_import_golden_pairs_mask_everything(tmp_path, name):
    """HARs shaped like Chrome's and Firefox's exports (written for this project), with the expected result."""
    expected = json.loads((FIX / f"{name}.expected.json").read_text())
    db = tmp_path / "i.sqlite"
    out = import_har(FIX / f"{name}.har", db, tmp_path / "certs")
    assert out.returncode == 0, out.stderr
    assert f"imported {expected['imported']} of" in out.stdout
    assert [l.split(f"{FIX / (name + '.har')}: ", 1)[1] for l in out.stderr.strip().splitlines()] == expected["skipped"]
    xs = json.loads(subprocess.run([str(AUTHTAP), "exchanges", "--db", str(db), "--format", "json"], capture_output=True, check=True).stdout)
    got = [{"method": x["method"], "host": x["host"], "status": x["status"], "roles": x["roles"], **({"error": x["error"]} if x.get("error") else {})} for x in xs]
    assert got == expected["exchanges"]
    a = json.loads(subprocess.run([str(AUTHTAP), "analyze", "--db", str(db), "--format", "json", "--fail-on", "never"], capture_output=True, check=True).stdout)
    assert len(a["transactions"]) == expected["transactions"]
    assert sorted({f["rule"] for f in a["findings"] if f["severity"] == "error"}) == expected["error_rules"]
    # Masking applies on import exactly as on capture: nothing raw in the database, its WAL, or any output.
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    dump = json.dumps(xs) + out.stdout + out.stderr + json.dumps(a)
    for canary in expected["canaries"]:
        assert canary.encode() not in blob and canary not in dump, canary
    assert any("[masked " in x["target"] for x in xs)


@pytest.mark.parametrize("content,message", [
    (b"this is not json", "not JSON"),
    (b'{"log": {"version": "1.2", "entries": [{"request": ', "truncated"),
    (b'{"entries": []}', "not a HAR file"),
    (b'[1, 2, 3]', "not a HAR file"),
])
def test_bad_har_files_get_one_line_errors_with_status_2(tmp_path, content, message):
    bad = tmp_path / "bad.har"
    bad.write_bytes(content)
    out = import_har(bad, tmp_path / "i.sqlite", tmp_path / "certs")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and message in lines[0], out.stderr
    if message in ("not JSON", "truncated"):
        assert "line 1, column" in lines[0]


@pytest.mark.faults
def test_round_trip_export_import_and_a_har_written_by_mitmproxy(proxy, authserver, tmp_path):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    c.exchange(code, verifier)
    c.exchange(code, verifier)
    assert proxy.stop() == 0
    original = proxy.analyze()
    har = tmp_path / "out.har"
    assert subprocess.run([str(AUTHTAP), "export", "--db", str(proxy.db), "--session", "1", "-o", str(har)], capture_output=True).returncode == 0
    db = tmp_path / "again.sqlite"
    out = import_har(har, db, proxy.certs)
    assert out.returncode == 0, out.stderr
    before = proxy.exchanges()
    after = json.loads(subprocess.run([str(AUTHTAP), "exchanges", "--db", str(db), "--format", "json"], capture_output=True, check=True).stdout)
    strip = lambda xs: [(x["method"], x["host"], x["port"], x["target"], x["status"], x["roles"], x["requestBody"], x["responseBody"]) for x in xs]
    assert strip(after) == strip(before)
    again = json.loads(subprocess.run([str(AUTHTAP), "analyze", "--db", str(db), "--format", "json", "--fail-on", "never"], capture_output=True, check=True).stdout)
    assert [t["outcome"] for t in again["transactions"]] == [t["outcome"] for t in original["transactions"]]
    assert sorted((f["rule"], f["severity"]) for f in again["findings"]) == sorted((f["rule"], f["severity"]) for f in original["findings"])
    # mitmproxy reads our HAR and writes its own; authtap imports that one too.
    mitmdump = mitmproxy_venv(tmp_path)
    theirs = tmp_path / "mitmproxy.har"
    run = subprocess.run([mitmdump, "-nr", str(har), "--set", f"hardump={theirs}"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and theirs.exists(), run.stderr
    assert json.loads(theirs.read_text())["log"]["creator"]["name"] == "mitmproxy"
    out = import_har(theirs, tmp_path / "m.sqlite", proxy.certs)
    assert out.returncode == 0 and f"imported {len(before)} of {len(before)} entries" in out.stdout, out.stdout + out.stderr
    m = json.loads(subprocess.run([str(AUTHTAP), "analyze", "--db", str(tmp_path / "m.sqlite"), "--format", "json", "--fail-on", "never"],
                                  capture_output=True, check=True).stdout)
    assert "code-reuse" in {f["rule"] for f in m["findings"]}


def test_huge_har_is_refused_with_one_line(tmp_path):
    huge = tmp_path / "huge.har"
    with open(huge, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: no disk used
    out = import_har(huge, tmp_path / "i.sqlite", tmp_path / "certs")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "too large" in out.stderr and str(huge) in out.stderr
