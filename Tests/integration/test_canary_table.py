"""Issue 16: the canary table through the real proxy.

The table is generated from `authtap audit --rules`: every example name of every secret family in every
place a name can stand (query, form, multipart, JSON top/nested/camelCase, XML, headers, cookies, a URL
inside a JSON string, Location, HTML inputs, wrong Content-Types, UTF-16, zstd, and gzip/br from an nginx
front), every published token format, a JWS and a random 32-character value under readable names, and a
secret cut in half by --body-limit. curl and Python requests each send the whole table through `authtap
proxy` to a real TLS upstream; every canary is unique, so a leak names its family, name, place and client.

Zero hits anywhere: the database, -wal, -shm (live and after stop), stdout, stderr, `exchanges`, `analyze`,
a HAR export, `audit` output, TUI screens captured in tmux, and the database's blobs decompressed.

curl sends no URL fragment, so fragment canaries travel in a Referer, a Location and a JSON string."""
import gzip
import json
import re
import secrets
import sqlite3
import string
import subprocess
import time
from pathlib import Path

import pytest
import requests

from canary_upstream import (CUT_LIMIT, CanaryUpstream, Nginx, Table, build_cut_table, run_curl,
                             run_requests, target_of)
from conftest import AUTHTAP, Proxy

CLIENTS = ("curl", "requests")
ENCODINGS = (("utf-8", "utf-8"), ("utf-16le", "utf-16-le"), ("utf-16be", "utf-16-be"))
WHERE = ["db", "db-wal", "db-shm", "db live copy", "db-wal live copy", "db-shm live copy", "capture folder",
         "stdout", "stderr", "exchanges json", "exchanges text", "analyze json", "analyze text", "HAR export",
         "audit --db output", "audit HAR output", "TUI screens", "db blobs decompressed"]


def tool(*args, timeout=180):
    return subprocess.run([str(AUTHTAP), *map(str, args)], capture_output=True, timeout=timeout)


def random_value(n=32):
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


# ---------- the runs ----------

class Run:
    """One proxy session and everything it wrote, keyed by WHERE."""

    def __init__(self, name, proxy, positions):
        self.name = name
        self.proxy = proxy
        self.positions = positions
        self.outputs = {}
        self.live = {}
        self.audit_db = None
        self.audit_har = None

    def snapshot_live(self):
        """Copies the database files while the proxy still holds them open."""
        for suffix, where in (("", "db live copy"), ("-wal", "db-wal live copy"), ("-shm", "db-shm live copy")):
            f = Path(str(self.proxy.db) + suffix)
            self.outputs[where] = f.read_bytes() if f.exists() else b""

    def collect(self):
        p = self.proxy
        db = p.db
        self.outputs["stdout"] = p.stdout_path.read_bytes()
        self.outputs["stderr"] = p.stderr_path.read_bytes()
        out = tool("exchanges", "--db", db, "--format", "json")
        assert out.returncode == 0, out.stderr.decode()
        self.outputs["exchanges json"] = out.stdout + out.stderr
        self.exchanges = json.loads(out.stdout)
        out = tool("exchanges", "--db", db)
        self.outputs["exchanges text"] = out.stdout + out.stderr
        out = tool("analyze", "--db", db, "--fail-on", "never", "--format", "json", "--certs", p.certs)
        assert out.returncode == 0, out.stderr.decode()
        self.outputs["analyze json"] = out.stdout + out.stderr
        self.analysis = json.loads(out.stdout)
        out = tool("analyze", "--db", db, "--fail-on", "never", "--certs", p.certs)
        self.outputs["analyze text"] = out.stdout + out.stderr
        har = p.workdir / "export.har"
        out = tool("export", "--db", db, "--all", "-o", har)
        assert out.returncode == 0, out.stderr.decode()
        self.outputs["HAR export"] = har.read_bytes() + out.stdout + out.stderr
        self.audit_db = tool("audit", "--db", db)
        self.outputs["audit --db output"] = self.audit_db.stdout + self.audit_db.stderr
        self.audit_har = tool("audit", har)
        self.outputs["audit HAR output"] = self.audit_har.stdout + self.audit_har.stderr
        # After analyze stored its findings: the files as they are now.
        for suffix, where in (("", "db"), ("-wal", "db-wal"), ("-shm", "db-shm")):
            f = Path(str(db) + suffix)
            self.outputs[where] = f.read_bytes() if f.exists() else b""
        self.outputs["capture folder"] = b"".join(f.read_bytes() for f in sorted(db.parent.iterdir()) if f.is_file())
        self.outputs["db blobs decompressed"] = decompressed_blobs(db)
        self.outputs.setdefault("TUI screens", b"")

    def by_pid(self):
        out = {}
        for x in self.exchanges:
            parts = x["target"].split("/")
            if len(parts) > 2 and parts[1] == "t":
                out.setdefault(parts[2], []).append(x)
        return out


def decompressed_blobs(db):
    """Every stored value that is gzip, zstd or brotli data, decompressed: a leak hidden in stored wire bytes."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = []
    tried_brotli = 0
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in con.execute(f'SELECT * FROM "{t}"'):
                for v in row:
                    if not isinstance(v, bytes) or len(v) < 8:
                        continue
                    if v[:2] == b"\x1f\x8b":
                        try:
                            out.append(gzip.decompress(v))
                        except Exception:
                            out.append(subprocess.run(["gzip", "-dc"], input=v, capture_output=True).stdout)
                    elif v[:4] == b"\x28\xb5\x2f\xfd":
                        out.append(subprocess.run(["zstd", "-dcq"], input=v, capture_output=True, timeout=30).stdout)
                    else:
                        try:
                            v.decode("utf-8")
                        except UnicodeDecodeError:
                            if tried_brotli < 3000:
                                tried_brotli += 1
                                r = subprocess.run(["brotli", "-dc"], input=v, capture_output=True, timeout=30)
                                if r.returncode == 0:
                                    out.append(r.stdout)
    finally:
        con.close()
    return b"\n".join(out)


def wait_recorded(proxy, count, timeout=60):
    """The writer batches: waits until `count` exchanges are stored (bounded)."""
    deadline = time.time() + timeout
    n = -1
    while time.time() < deadline:
        out = tool("exchanges", "--db", proxy.db, "--format", "json")
        if out.returncode == 0:
            n = len(json.loads(out.stdout))
            if n >= count:
                return n
        time.sleep(0.5)
    return n


def send_table(proxy, positions, hosts, work):
    """Both clients; returns {pid: status} as each client saw it, and requests' raw answers."""
    by_client = {c: [p for p in positions if p.client == c] for c in CLIENTS}
    statuses = run_curl(by_client["curl"], proxy, hosts, work / "curl")
    answers = run_requests(by_client["requests"], proxy, hosts)
    statuses.update({pid: a[0] for pid, a in answers.items()})
    return statuses, answers


@pytest.fixture(scope="module")
def rules():
    out = tool("audit", "--rules")
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def canary(pki, tmp_path_factory, rules):
    work = tmp_path_factory.mktemp("canary")
    cert, key = pki["good"]
    table = Table(rules)
    opaque = {}
    for client in CLIENTS:
        table.names(client)
        opaque[client] = random_value()
        table.shapes(client, opaque[client])
    cut = build_cut_table(rules, table.n, CLIENTS)
    diag = {"code": "CANARYdiagCODE" + random_value(20), "access": "CANARYdiagACCESS" + random_value(20),
            "refresh": "CANARYdiagREFRESH" + random_value(20), "verifier": "CANARYdiagVERIFIER" + random_value(40)}
    upstream = CanaryUpstream(cert, key, table.positions + cut.positions, diag)
    started = []
    nginx = None
    state = {"table": table, "cut": cut, "diag": diag, "opaque": opaque, "runs": {}, "work": work}
    try:
        nginx = Nginx(work / "nginx", cert, key, upstream.port)
        hosts = {"direct": upstream.port, "cut": upstream.port, "nginx-gzip": nginx.port, "nginx-br": nginx.port}
        state["hosts"] = hosts

        # The main run: the whole table, both clients.
        (work / "main").mkdir()
        main = Proxy(work / "main", pki)
        started.append(main)
        t0 = time.time()
        statuses, answers = send_table(main, table.positions, hosts, work / "main")
        state["send_seconds"] = time.time() - t0
        state["statuses"], state["answers"] = statuses, answers
        state["wire"] = wire_checks(main, table.positions, hosts, work / "main")
        state["recorded"] = wait_recorded(main, len(table.positions) + len(state["wire"]))
        run = Run("main", main, table.positions)
        run.snapshot_live()
        assert main.stop() == 0, main.stderr_path.read_text()[-3000:]
        run.collect()
        state["runs"]["main"] = run

        # The cut run: a small --body-limit, each secret straddling it.
        (work / "cut").mkdir()
        cutp = Proxy(work / "cut", pki, ("--body-limit", str(CUT_LIMIT)))
        started.append(cutp)
        state["cut statuses"], _ = send_table(cutp, cut.positions, hosts, work / "cut")
        wait_recorded(cutp, len(cut.positions))
        run = Run("cut", cutp, cut.positions)
        run.snapshot_live()
        assert cutp.stop() == 0
        run.collect()
        state["runs"]["cut"] = run

        # The diagnosis run: one code redeemed twice through the gzip front.
        (work / "diag").mkdir()
        dp = Proxy(work / "diag", pki)
        started.append(dp)
        state["diag answers"] = diagnosis_flow(dp, nginx.port, diag, work / "diag")
        wait_recorded(dp, 3)
        run = Run("diag", dp, [])
        run.snapshot_live()
        assert dp.stop() == 0
        run.collect()
        state["runs"]["diag"] = run

        state["tui"] = tui_screens(state["runs"]["main"], table.positions, work)
        (work / "tui-screens.txt").write_text(state["tui"]["text"])
        state["runs"]["main"].outputs["TUI screens"] = state["tui"]["text"].encode()
        yield state
    finally:
        for p in started:
            p.stop()
        if nginx:
            nginx.stop()
        upstream.stop()


# ---------- the compressed wire ----------

def wire_checks(proxy, positions, hosts, work):
    """Through the proxy the client still gets the compressed bytes nginx sent; returns what was seen."""
    seen = []
    for enc in ("gzip", "br"):
        p = next(p for p in positions if p.via == f"nginx-{enc}" and p.client == "curl" and "JSON" in p.place)
        url = f"https://localhost:{hosts[p.via]}{target_of(p)}"
        raw_path = work / f"wire-{enc}.bin"
        r = proxy.curl("--cacert", proxy.bundle, "-D", "-", "-o", str(raw_path), "-H", f"Accept-Encoding: {enc}", url)
        head = r.stdout.decode(errors="replace")
        raw = raw_path.read_bytes() if raw_path.exists() else b""
        decoded = compress_back(enc, raw)
        seen.append({"encoding": enc, "pid": p.pid, "head": head, "raw": raw, "decoded": decoded,
                     "expected": p.resp_body, "stderr": r.stderr.decode()})
    return seen


def compress_back(enc, raw):
    try:
        if enc == "gzip":
            return gzip.decompress(raw)
        return subprocess.run(["brotli", "-dc"], input=raw, capture_output=True, timeout=30).stdout
    except Exception:
        return b""


def diagnosis_flow(proxy, nginx_port, diag, work):
    base = f"https://localhost:{nginx_port}"
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy.url}
    s.verify = proxy.bundle
    out = {}
    r = s.get(f"{base}/oauth/authorize?response_type=code&client_id=app1&redirect_uri=https://app.test/cb"
              f"&state=st1&scope=openid", allow_redirects=False, timeout=30)
    out["authorize"] = (r.status_code, r.headers.get("Location", ""))
    form = {"grant_type": "authorization_code", "code": diag["code"], "redirect_uri": "https://app.test/cb",
            "client_id": "app1", "code_verifier": diag["verifier"]}
    r = s.post(f"{base}/oauth/token", data=form, headers={"Accept-Encoding": "gzip"}, timeout=30)
    out["first"] = (r.status_code, r.headers.get("Content-Encoding"), r.json())
    s.close()
    # The replay, from curl this time: raw bytes kept, so the wire encoding is checked, not curl's decoding.
    raw_path = work / "second.bin"
    data = "&".join(f"{k}={v}" for k, v in form.items())
    r = proxy.curl("--cacert", proxy.bundle, "-D", "-", "-o", str(raw_path), "-H", "Accept-Encoding: gzip",
                   "--data-binary", data, f"{base}/oauth/token")
    raw = raw_path.read_bytes() if raw_path.exists() else b""
    out["second"] = (r.stdout.decode(errors="replace"), raw, compress_back("gzip", raw))
    return out


# ---------- the TUI ----------

TUI_PLACES = ("SOAP element", "JSON response", "form", "request header", "request cookie", "Set-Cookie",
              "UTF-16LE JSON (charset)", "zstd JSON", "gzip JSON (nginx)", "br HTML input (nginx)",
              "Location fragment", "multipart", "readable JSON value (response)", "URL path segment")


def tui_screens(run, positions, work):
    """Opens the detail of exchanges carrying canaries in tmux, every tab, a few pages each."""
    from test_tui import Tmux
    picks = []
    for place in TUI_PLACES:
        for fam in ("token", "password", "shape:jws", "secret"):
            p = next((p for p in positions if p.place == place and p.family == fam), None)
            if p:
                picks.append(p)
                break
    screens = []
    opened = []
    t = Tmux("authtap-canary-table", cols=160, rows=50)
    try:
        t.type("clear")
        t.send("Enter")
        t.type(f"{AUTHTAP} tui --db {run.proxy.db}; echo EXITED $?")
        t.send("Enter")
        screens.append(t.wait("authtap › Sessions", timeout=30))
        t.send("Enter")
        time.sleep(0.5)
        t.send("3")
        screens.append(t.wait("Exchanges (", timeout=15))
        for p in picks:
            t.type("/")
            for _ in range(24):
                t.send("BSpace")
            t.type(p.pid)
            t.send("Enter")
            try:
                screens.append(t.until(lambda s: f"filter: {p.pid}" in s and p.pid in s, f"row {p.pid}", timeout=10))
            except AssertionError as e:
                screens.append(str(e))
                continue
            t.send("Enter")
            try:
                screens.append(t.wait("Exchange #", timeout=10))
            except AssertionError as e:
                screens.append(str(e))
                continue
            opened.append(p.pid)
            for _tab in range(6):
                for _page in range(3):
                    time.sleep(0.15)
                    screens.append(t.screen())
                    t.send("NPage")
                t.send("Tab")
            t.send("q")
            time.sleep(0.2)
        t.send("q", "1", "q")
        try:
            t.until(lambda s: "EXITED" in s, "the TUI quitting", timeout=10)
        except AssertionError:
            pass
    finally:
        t.close()
    return {"text": "\n".join(screens), "opened": opened, "picked": [p.pid for p in picks]}


# ---------- leak search ----------

CANARY_RUN = re.compile(rb"CANARY[A-Za-z0-9]*")


def _context(data, i, n):
    return data[max(0, i - 120): i + n + 60].decode("utf-8", "replace")


def leaks(data, positions, where, extra=()):
    """Every needle of every position (and `extra` (label, needle) pairs) found in data, in any encoding:
    a list of (message, needle). Every canary starts with CANARY, so one scan finds them all, whole or cut."""
    found = []
    if not data:
        return found
    labelled = [(p.describe(), n) for p in positions for n in p.needles] + list(extra)
    by_key = {}
    others = {}
    for label, needle in labelled:
        if needle.startswith("CANARY"):
            by_key.setdefault(needle.split("Zq7")[0], label)
        else:
            others.setdefault(needle, []).append(label)
    for m in CANARY_RUN.finditer(data):
        run = m.group().decode()
        key = run.split("Zq7")[0]
        label = by_key.get(key) or next((v for k, v in by_key.items() if k.startswith(key)), "unclaimed")
        found.append((f"{label}: {run!r} in {where} (utf-8) … {_context(data, m.start(), len(run))!r}", run))
        if len(found) >= 200:
            return found
    for enc_label, enc in ENCODINGS[1:]:
        if "CANARY".encode(enc) not in data:
            continue
        for label, needle in labelled:
            i = data.find(needle.encode(enc))
            if i >= 0:
                found.append((f"{label}: {needle!r} in {where} ({enc_label}) … {_context(data, i, 2 * len(needle))!r}",
                              needle))
        if not found:
            i = data.find("CANARY".encode(enc))
            found.append((f"a CANARY fragment in {where} ({enc_label}) … {_context(data, i, 80)!r}", "CANARY"))
    for needle, labels in others.items():
        label = labels[0] + (f" (or one of {len(labels) - 1} more places of it)" if len(labels) > 1 else "")
        for enc_label, enc in ENCODINGS:
            i = data.find(needle.encode(enc))
            if i >= 0:
                found.append((f"{label}: {needle!r} in {where} ({enc_label}) … {_context(data, i, len(needle))!r}",
                              needle))
    return found


def locate_in_db(db, needle):
    """table.column and row id holding needle, for the failure report."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = []
    try:
        for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
            for row in con.execute(f'SELECT rowid, * FROM "{t}"'):
                for c, v in zip(cols, row[1:]):
                    b = v if isinstance(v, bytes) else str(v).encode() if v is not None else b""
                    if any(needle.encode(enc) in b for _, enc in ENCODINGS):
                        tgt = ""
                        if t == "exchange":
                            tgt = " target=" + str(row[cols.index("target") + 1])[:80]
                        out.append(f"{t}.{c} rowid={row[0]}{tgt}")
    finally:
        con.close()
    return out


def diag_extra(diag):
    return [(f"diagnosis {k}", v) for k, v in diag.items()]


def report(found, limit=80):
    return f"{len(found)} hits:\n" + "\n".join(found[:limit])


# ---------- the tests ----------

def test_table_size(canary, rules):
    table, cut = canary["table"], canary["cut"]
    per_client = {c: sum(1 for p in table.positions if p.client == c) for c in CLIENTS}
    places = sorted({p.place.split(" camelCase ")[0] for p in table.positions})
    names = sum(len(f["examples"]) for f in rules["names"])
    print(f"\ncanary table: {per_client['curl']} positions per client ({len(table.positions)} sent), "
          f"{len(cut.positions)} cut at --body-limit {CUT_LIMIT}, {names} names in {len(rules['names'])} families, "
          f"{len(rules.get('tokenFormats', []))} token formats, {len(places)} places; "
          f"sent in {canary['send_seconds']:.1f} s, {canary['recorded']} exchanges recorded")
    assert per_client["curl"] >= 150 and per_client["requests"] >= 150
    assert rules.get("tokenFormats"), "audit --rules lists no token formats"


def test_every_position_answered_and_recorded(canary):
    statuses = canary["statuses"]
    wrong = [f"{p.describe()}: got {statuses.get(p.pid)} want {p.resp_status}"
             for p in canary["table"].positions if statuses.get(p.pid) != p.resp_status]
    assert not wrong, report(wrong)
    run = canary["runs"]["main"]
    recorded = run.by_pid()
    missing = [p.describe() for p in canary["table"].positions if p.pid not in recorded]
    if missing:
        # A position is found by the /t/<pid>/ prefix of its target: say what became of targets without it.
        missing += ["recorded target without its readable /t/<pid>/ path: " + x["target"][:160]
                    for x in run.exchanges if not x["target"].startswith("/t/")
                    and not x["target"].startswith("/oauth/")]
    assert not missing, report(missing)


@pytest.mark.parametrize("where", WHERE)
def test_zero_hits(canary, where):
    found = []
    for name, run in canary["runs"].items():
        positions = run.positions if name != "diag" else []
        extra = diag_extra(canary["diag"]) if name == "diag" else []
        data = run.outputs.get(where, b"")
        hits = leaks(data, positions, f"{name} {where}", extra)
        found += [m for m, _ in hits]
        if hits and where.startswith("db") and "live" not in where and "decompressed" not in where:
            # Say which row and column: the first few needles found.
            for _, needle in hits[:10]:
                found.append(f"  {needle} stored at {locate_in_db(run.proxy.db, needle)}")
    assert not found, report(found)


def test_audit_finds_nothing(canary):
    bad = []
    for name, run in canary["runs"].items():
        for what, r in (("audit --db", run.audit_db), ("audit HAR", run.audit_har)):
            if r.returncode != 0:
                bad.append(f"{name} {what} exit {r.returncode}:\n{(r.stdout + r.stderr).decode()[:6000]}")
    assert not bad, "\n".join(bad)


def test_audit_flags_a_raw_har_without_printing_it(tmp_path):
    access, client_secret, bearer = ("CANARYrawACCESS" + random_value(16), "CANARYrawSECRET" + random_value(16),
                                     "CANARYrawBEARER" + random_value(16))
    body = json.dumps({"access_token": access, "token_type": "Bearer", "expires_in": 3600})
    har = {"log": {"version": "1.2", "creator": {"name": "hand", "version": "1"}, "entries": [{
        "startedDateTime": "2024-05-01T10:00:00.000Z", "time": 12,
        "request": {"method": "POST", "url": "https://idp.test/token", "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "Authorization", "value": "Bearer " + bearer},
                                {"name": "Content-Type", "value": "application/x-www-form-urlencoded"}],
                    "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 60,
                    "postData": {"mimeType": "application/x-www-form-urlencoded",
                                 "text": f"grant_type=client_credentials&client_secret={client_secret}"}},
        "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": "Content-Type", "value": "application/json"}], "cookies": [],
                     "content": {"size": len(body), "mimeType": "application/json", "text": body},
                     "redirectURL": "", "headersSize": -1, "bodySize": len(body)},
        "cache": {}, "timings": {"send": 1, "wait": 10, "receive": 1}}]}}
    path = tmp_path / "raw.har"
    path.write_text(json.dumps(har))
    r = tool("audit", path)
    text = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, text
    for v in (access, client_secret, bearer):
        assert v not in text and v[6:18] not in text, text


def test_wire_stays_compressed_while_the_store_decodes(canary):
    for w in canary["wire"]:
        enc = w["encoding"]
        assert f"content-encoding: {enc}" in w["head"].lower(), w["head"] + w["stderr"]
        assert not w["raw"].lstrip().startswith(b"{"), f"{enc}: the client got plain JSON"
        assert w["decoded"] == w["expected"], f"{enc}: the bytes do not decompress to the upstream body"
    # requests got the compressed bytes too (raw read, not decoded).
    for p in canary["table"].positions:
        if p.client == "requests" and p.via.startswith("nginx-") and p.resp_body:
            enc = p.via.split("-")[1]
            status, headers, raw = canary["answers"][p.pid]
            assert headers.get("Content-Encoding") == enc, (p.describe(), headers)
            assert compress_back(enc, raw) == p.resp_body, p.describe()
    # The store keeps decoded, masked text.
    recorded = canary["runs"]["main"].by_pid()
    bad = []
    for p in canary["table"].positions:
        enc = {"nginx-gzip": "gzip", "nginx-br": "br"}.get(p.via) or ("zstd" if p.place == "zstd JSON" else None)
        if not enc or not p.resp_body:
            continue
        for x in recorded.get(p.pid, []):
            body = x.get("responseBody") or ""
            if x.get("responseBodyEncoding") != enc:
                bad.append(f"{p.describe()}: responseBodyEncoding={x.get('responseBodyEncoding')!r} "
                           f"note={x.get('responseBodyNote')!r}")
            elif "[masked" not in body:
                bad.append(f"{p.describe()}: decoded body has no marker: {body[:200]!r}")
            elif "JSON" in p.place:
                try:
                    json.loads(body)
                except ValueError:
                    bad.append(f"{p.describe()}: decoded body is not JSON: {body[:200]!r}")
    assert not bad, report(bad)


def test_utf16_bodies_are_decoded_and_masked(canary):
    recorded = canary["runs"]["main"].by_pid()
    bad = []
    for p in canary["table"].positions:
        if not p.place.startswith("UTF-16"):
            continue
        for x in recorded.get(p.pid, []):
            body = x.get("responseBody") or ""
            if '"ok"' not in body or "[masked" not in body:
                bad.append(f"{p.describe()}: stored {body[:160]!r} note={x.get('responseBodyNote')!r}")
    assert not bad, report(bad)


def test_jws_keeps_header_and_claims(canary):
    recorded = canary["runs"]["main"].by_pid()
    bad = []
    for p in canary["table"].positions:
        if p.family != "shape:jws" or p.place != "readable JSON value (response)":
            continue
        for x in recorded.get(p.pid, []):
            body = x.get("responseBody") or ""
            note = json.loads(p.resp_body)["note"]
            header_claims = note.rsplit(".", 1)[0]
            if header_claims + "." not in body:
                bad.append(f"{p.describe()}: header.claims gone: {body[:240]!r}")
    assert not bad, report(bad)


def test_cut_at_the_body_limit(canary):
    run = canary["runs"]["cut"]
    windows = {}
    for p in run.positions:
        for i in range(len(p.canary) - 11):
            windows.setdefault(p.canary[i:i + 12].encode(), []).append(p)
    found = []
    for where, data in run.outputs.items():
        i = 0
        while i < len(data) - 11 and len(found) < 80:
            ps = windows.get(data[i:i + 12])
            if not ps:
                i += 1
                continue
            # Name the position by the whole CANARY run around the window when there is one.
            start = data.rfind(b"CANARY", max(0, i - 40), i + 1)
            run_text = CANARY_RUN.match(data, start).group().decode() if start >= 0 else ""
            p = next((p for p in ps if run_text and p.canary.startswith(run_text)), ps[0])
            who = p.describe() if len(ps) == 1 or run_text else f"one of {len(ps)} cut canaries, e.g. {p.describe()}"
            found.append(f"{who}: {data[i:i + 12]!r} of {p.canary!r} in cut {where} … "
                         f"{data[max(0, i - 80):i + 40].decode('utf-8', 'replace')!r}")
            i += 40  # one report per leaked value
    assert not found, report(found)
    # The limit did cut them: every cut body is recorded as truncated.
    recorded = run.by_pid()
    untruncated = []
    for p in run.positions:
        for x in recorded.get(p.pid, []):
            side = "response" if "response" in p.place else "request"
            if not x.get(f"{side}BodyTruncated"):
                untruncated.append(p.describe())
    assert not untruncated, report(untruncated)


def test_tui_screens_were_captured(canary):
    tui = canary["tui"]
    assert tui["opened"], tui["text"][-3000:]
    assert len(tui["opened"]) == len(tui["picked"]), (tui["picked"], tui["opened"], tui["text"][-3000:])
    assert "[masked" in tui["text"]


def test_diagnosis_on_compressed_traffic(canary):
    ids = {r["id"] for r in json.loads(tool("rules", "--format", "json").stdout)}
    reuse = {"code-reuse"} & ids
    non_json = {"non-json-response"} & ids
    assert reuse and non_json, ids
    a = canary["diag answers"]
    assert a["authorize"][0] == 302
    assert a["first"][0] == 200 and a["first"][1] == "gzip" and a["first"][2]["token_type"] == "Bearer"
    head, raw, decoded = a["second"]
    assert "content-encoding: gzip" in head.lower() and raw[:2] == b"\x1f\x8b", head
    assert json.loads(decoded)["error"] == "invalid_grant"
    run = canary["runs"]["diag"]
    token_ex = [x for x in run.exchanges if x["target"].startswith("/oauth/token")]
    assert len(token_ex) == 2 and all(x.get("responseBodyEncoding") == "gzip" for x in token_ex), \
        [(x["status"], x.get("responseBodyEncoding"), x.get("responseBodyNote")) for x in token_ex]
    findings = run.analysis["findings"]
    rules_seen = sorted({f["rule"] for f in findings})
    assert any(f["rule"] in reuse for f in findings), rules_seen
    assert not [f for f in findings if f["rule"] in non_json], json.dumps(
        [f for f in findings if f["rule"] in non_json], indent=1)[:3000]
