"""authtap's reverse mode (`authtap proxy --reverse URL[@HOST:PORT] [--rewrite-urls]`) with the client it exists
for: a Node app using the built-in `fetch` (undici), which ignores HTTPS_PROXY, so the only way to put authtap in
its path is to hand it authtap's URL as the server's. The client is node/oidc_client.mjs (plain fetch, no npm
package) and the servers are the real ones of the analyzer tests: django-oauth-toolkit (authserver2: OIDC
discovery, JWKS, Django's CSRF-protected login form, consent, PKCE required) and Authlib (authserver.py).

Each test runs the Node client as a subprocess with NODE_EXTRA_CA_CERTS naming only the CAs it is meant to trust,
and checks three things: what the client saw (its JSON report), what authtap recorded (`exchanges`, `sessions`,
`analyze`), and, where it matters, that the client's requests did or did not pass through authtap. The
test_direct_* controls run the same client against the servers without authtap: when they pass and a reverse
test fails, the failure is authtap's."""
import gzip
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import AUTHTAP, Proxy, port_file_server

HERE = Path(__file__).parent
NODE = shutil.which("node") or "/usr/bin/node"
CLIENT = HERE / "node" / "oidc_client.mjs"
USERNAME, PASSWORD = "alice", "alice-password-0001"
WEBAPP_SECRET = "webapp-secret-0001"
DOT_DISCOVERY = "/o/.well-known/openid-configuration"
AUTHLIB_DISCOVERY = "/.well-known/openid-configuration"
LISTENER_LINE = re.compile(r"^authtap reverse proxy on https://127\.0\.0\.1:(\d+) for (\S+)$")


# ---------- servers ----------

@pytest.fixture(scope="module")
def dot(pki, tmp_path_factory):
    """django-oauth-toolkit on loopback TLS (its leaf is signed by the test CA): https://localhost:PORT."""
    d = tmp_path_factory.mktemp("reverse-dot")
    cert, key = pki["good"]
    env = dict(os.environ, AUTHSERVER2_DATA=str(d), AUTHSERVER2_CODE_SECONDS="30")
    with port_file_server(HERE / "authserver2" / "serve.py", cert, key, d, env=env, start_timeout=60) as url:
        yield url


@pytest.fixture(scope="module")
def authlib(pki, tmp_path_factory):
    """Authlib's authorization server (auto-approves, fixed issuer https://localhost:PORT, no id_token)."""
    d = tmp_path_factory.mktemp("reverse-authlib")
    with port_file_server(HERE / "authserver.py", *pki["good"], d) as url:
        yield url


class _Discovery(http.server.BaseHTTPRequestHandler):
    """A discovery document that spells its own origin both ways servers do: plainly and JSON-escaped
    (`https:\\/\\/localhost:PORT`, as PHP's json_encode writes it), plus one URL of another origin that must
    stay as it is. Under /gz/ the same document is gzip-encoded when the client accepts it (as IdPs behind a
    CDN or nginx send it): a rewrite that only reads plain bodies would miss it."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        base = f"https://localhost:{self.server.server_port}"
        esc = base.replace("/", "\\/")
        path = self.path.split("?")[0]
        if path in (AUTHLIB_DISCOVERY, "/gz" + AUTHLIB_DISCOVERY):
            body = ('{"issuer":"%s","authorization_endpoint":"%s\\/authorize","token_endpoint":"%s/token",'
                    '"userinfo_endpoint":"%s\\/userinfo","jwks_uri":"%s\\/jwks",'
                    '"service_documentation":"https:\\/\\/docs.example.test\\/idp"}' % (esc, esc, base, esc, esc))
            data = body.encode()
            headers = [("Content-Type", "application/json")]
            if path.startswith("/gz/") and "gzip" in self.headers.get("Accept-Encoding", ""):
                data = gzip.compress(data)
                headers.append(("Content-Encoding", "gzip"))
        elif path == "/jwks":
            data = b'{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"AAAA","y":"AAAA"}]}'
            headers = [("Content-Type", "application/json")]
        else:
            data, headers = b'{"error":"not_found"}', [("Content-Type", "application/json")]
        self.send_response(200 if data != b'{"error":"not_found"}' else 404)
        for k, v in headers + [("Content-Length", str(len(data)))]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def escaped(pki):
    """The _Discovery server on loopback TLS: https://localhost:PORT."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["good"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# ---------- authtap in reverse mode ----------

class ReverseProxy(Proxy):
    """`authtap proxy --reverse ...`: waits (bounded) for one `authtap reverse proxy on https://127.0.0.1:PORT
    for URL` line per --reverse, before any other output, and maps each URL to its listener. Reading the
    capture (exchanges, analyze, stop) is conftest's Proxy."""

    def __init__(self, workdir, pki, reverse, rewrite=False, extra=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = self.workdir / "certs"
        self.db = self.workdir / "Captures" / "authtap.sqlite"
        self.stdout_path = self.workdir / "proxy.stdout"
        self.stderr_path = self.workdir / "proxy.stderr"
        args = [str(AUTHTAP), "proxy"]
        for spec in reverse:
            args += ["--reverse", spec]
        if any("@" not in spec for spec in reverse):
            args += ["--listen", "127.0.0.1:0"]
        if rewrite:
            args.append("--rewrite-urls")
        args += ["--certs", str(self.certs), "--db", str(self.db), "--upstream-ca", pki["ca"],
                 "--connect-timeout", "3", *extra]
        self.args = args
        self.proc = subprocess.Popen(args, stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
                                     cwd=self.workdir)
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            lines = self.stdout_path.read_text().split("\n")[:-1]
            if len(lines) >= len(reverse):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"authtap exited ({self.proc.returncode}): {self.stderr_path.read_text()}")
            time.sleep(0.05)
        else:
            self.stop()
            raise AssertionError(f"no listener line within 30 s; stdout: {self.stdout_path.read_text()!r}; "
                                 f"stderr: {self.stderr_path.read_text()[:2000]}")
        self.listeners = {}
        for line in lines[: len(reverse)]:
            m = LISTENER_LINE.match(line)
            if not m:
                self.stop()
            assert m, f"expected one listener line per --reverse first, got {lines[:len(reverse) + 2]}"
            self.listeners[m.group(2)] = int(m.group(1))
        self.ca = str(self.certs / "authtap-ca.pem")
        self.stdout_lines = lines

    def origin(self, upstream):
        return f"https://127.0.0.1:{self.listeners[upstream]}"

    def sessions(self):
        out = subprocess.run([str(AUTHTAP), "sessions", "--db", str(self.db), "--format", "json"],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)


@pytest.fixture
def reverse_proxy(tmp_path, pki):
    """Starts ReverseProxy instances for one test and stops each by its process at the end."""
    made = []

    def make(*reverse, rewrite=False, extra=()):
        p = ReverseProxy(tmp_path / f"authtap{len(made)}", pki, reverse, rewrite, extra)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# ---------- the Node client ----------

def ca_bundle(path, *pems):
    Path(path).write_text("".join(Path(p).read_text() for p in pems))
    return str(path)


def _node_cmd(config):
    return [NODE, str(CLIENT), json.dumps(config)]


def _node_env(cafile):
    # A clean environment: only what Node needs, and the CAs the client is meant to trust.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "NODE_EXTRA_CA_CERTS": str(cafile)}


def _report(stdout, stderr, returncode):
    lines = stdout.strip().splitlines()
    assert lines, f"the Node client printed nothing (exit {returncode}): {stderr[:2000]}"
    report = json.loads(lines[-1])
    report["exit"] = returncode
    report["stderr"] = stderr[:2000]
    return report


def run_node(config, cafile, timeout=90):
    """Runs the Node client once (bounded) and returns its JSON report."""
    r = subprocess.run(_node_cmd(config), capture_output=True, text=True, timeout=timeout, env=_node_env(cafile))
    return _report(r.stdout, r.stderr, r.returncode)


def dot_config(base, upstream, flow="code", expect=None, client_id="webapp"):
    """The client for DOT, told `base` is the server; its registered redirect_uri is the upstream's /cb."""
    return {"base": base, "discoveryPath": DOT_DISCOVERY, "flow": flow, "expectOrigin": expect,
            "clientId": client_id, "clientSecret": WEBAPP_SECRET if client_id == "webapp" else "",
            "authMethod": "post" if client_id == "webapp" else "none", "redirectUri": f"{upstream}/cb",
            "scope": "openid profile", "username": USERNAME, "password": PASSWORD, "oidc": True}


def authlib_config(base, upstream, flow="code", expect=None):
    return {"base": base, "discoveryPath": AUTHLIB_DISCOVERY, "flow": flow, "expectOrigin": expect,
            "clientId": "webapp", "clientSecret": WEBAPP_SECRET, "authMethod": "basic",
            "redirectUri": f"{upstream}/cb", "scope": "openid profile", "oidc": False}


def show(report):
    return json.dumps({k: report.get(k) for k in ("error", "steps", "callback", "token", "idToken", "stderr")},
                      indent=1)[:6000]


# ---------- reading the capture ----------

def origin_of(url):
    u = urlparse(url)
    return f"{u.scheme}://{u.netloc}"


def path_of(url_or_target):
    return urlparse(url_or_target).path if "://" in url_or_target else url_or_target.split("?")[0]


def at_upstream(exchanges, upstream):
    u = urlparse(upstream)
    return sorted((x for x in exchanges if x["host"] == u.hostname and x["port"] == u.port), key=lambda x: x["id"])


def assert_steps_recorded(steps, exchanges, upstream):
    """Every request the client sent to authtap is recorded, in order, as an https exchange with the upstream's
    host and port, the same method, path and status; and nothing else reached that upstream through authtap."""
    want = [(s["method"], path_of(s["url"]), s["status"]) for s in steps]
    got = [(x["method"], path_of(x["target"]), x["status"]) for x in at_upstream(exchanges, upstream)]
    assert got == want, f"client's requests: {json.dumps(want, indent=1)}\nrecorded: {json.dumps(got, indent=1)}"
    assert all(x["scheme"] == "https" for x in at_upstream(exchanges, upstream))


def note(exchange):
    return (exchange.get("responseBodyNote") or "").lower()


def discovery_exchange(exchanges, path):
    found = [x for x in exchanges if path_of(x["target"]) == path]
    assert len(found) == 1, json.dumps([(x["method"], x["target"]) for x in exchanges])
    return found[0]


def errors(analysis):
    return [f for f in analysis["findings"] if f["severity"] == "error"]


def latest_session(proxy):
    sessions = proxy.sessions()
    assert sessions, "no session recorded"
    return max(sessions, key=lambda s: s["id"])


def strings_in(value):
    """Every string inside a JSON value (for finding the upstream URLs wherever `sessions` puts them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def assert_reverse_session(proxy, *upstreams):
    """`sessions` says the session ran in reverse mode and names its upstream URL(s) outside the raw command
    line (which names them trivially)."""
    s = latest_session(proxy)
    assert s.get("mode") == "reverse", json.dumps(s, indent=1)
    named = set(strings_in({k: v for k, v in s.items() if k != "arguments"}))
    for upstream in upstreams:
        assert any(upstream in text for text in named), f"{upstream} not in {json.dumps(s, indent=1)}"


def listening_ports(pid):
    """The TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# ---------- controls: the client and the servers without authtap ----------

def test_direct_node_client_completes_dot_code_flow(dot, pki):
    """The control for every DOT test below: the Node client signs in on DOT itself (login form with CSRF,
    consent, PKCE, id_token verified against the JWKS, userinfo), trusting only the test CA."""
    report = run_node(dot_config(dot, dot, expect=dot), pki["ca"])
    assert report["ok"] and report["exit"] == 0, show(report)
    assert report["idToken"]["signatureValid"] and report["idToken"]["issMatchesDiscovery"], show(report)
    assert [s["method"] for s in report["steps"]].count("POST") == 3, show(report)  # login, consent, token


def test_direct_node_client_completes_authlib_code_flow(authlib, pki):
    """The control for the Authlib tests: the same client against Authlib's server, without authtap."""
    report = run_node(authlib_config(authlib, authlib, expect=authlib), pki["ca"])
    assert report["ok"] and report["exit"] == 0, show(report)
    assert report["userinfo"]["sub"] == "user-1", show(report)


def test_direct_node_client_refuses_to_leave_expected_origin(authlib, pki):
    """The client's own guard must be able to fail: told to stay on an origin the server's discovery does not
    point at, it stops before sending a request elsewhere (so a reverse test cannot pass by leaving authtap)."""
    other = "https://127.0.0.1:9"
    report = run_node(authlib_config(authlib, authlib, expect=other), pki["ca"])
    assert not report["ok"] and report["exit"] == 1, show(report)
    assert "sent away" in report["error"] and report["steps"] == [], show(report)


# ---------- DOT through one reverse listener, URLs rewritten ----------

@pytest.fixture(scope="module")
def dot_flow(dot, pki, tmp_path_factory):
    """One whole sign-in through `authtap proxy --reverse DOT --rewrite-urls`: the Node client knows only
    authtap's URL and trusts only authtap's CA, so any request that leaves authtap fails. The proxy is stopped
    before the capture is read (its last exchanges are flushed, its analysis stored)."""
    d = tmp_path_factory.mktemp("reverse-dot-flow")
    proxy = ReverseProxy(d / "authtap", pki, [dot], rewrite=True)
    try:
        base = proxy.origin(dot)
        listening = listening_ports(proxy.proc.pid)
        report = run_node(dot_config(base, dot, expect=base), proxy.ca)
    finally:
        code = proxy.stop()
    yield {"proxy": proxy, "base": base, "report": report, "stop": code, "listening": listening,
           "exchanges": proxy.exchanges(), "analysis": proxy.analyze()}


def test_reverse_dot_code_flow_with_rewritten_discovery(dot_flow, dot):
    """The issue's scenario: plain fetch, pointed at authtap, completes an OIDC code flow with a real login form
    and consent; every endpoint discovery gave it, and the redirect back with the code, point at authtap. The
    issuer stays the server's own: it is the identifier signed into the id_token's iss (OIDC Discovery 1.0 §4.3)."""
    report, base = dot_flow["report"], dot_flow["base"]
    assert report["ok"], show(report)
    meta = report["discovery"]
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert origin_of(meta[key]) == base, f"{key}={meta[key]}"
    assert meta["issuer"] == f"{dot}/o", meta["issuer"]
    assert dot not in json.dumps({k: v for k, v in meta.items() if k != "issuer"}), "an upstream URL survived"
    assert report["callback"]["origin"] == base and report["callback"]["status"] == 200, show(report)
    assert all(origin_of(s["url"]) == base for s in report["steps"]), show(report)
    assert report["userinfo"]["sub"] and report["idToken"]["signatureValid"], show(report)
    assert dot_flow["stop"] == 0


def test_reverse_dot_id_token_issuer_matches_discovery(dot_flow):
    """A conforming OIDC client rejects an id_token whose iss differs from the discovered issuer (OIDC Core
    3.1.3.7), and DOT signs into iss the origin it was reached by. If authtap sends DOT the upstream's Host and
    rewrites the issuer in discovery, iss (signed, so not rewritable) names the upstream and every such client
    breaks behind authtap; this fails then, whatever the analyzer says."""
    report = dot_flow["report"]
    assert report["idToken"], show(report)
    assert report["idToken"]["iss"] == report["discovery"]["issuer"], (
        "id_token iss differs from the issuer discovery gave the client through authtap: " + show(report))


def test_reverse_dot_every_request_recorded_in_order(dot_flow, dot):
    """Recording works as in forward mode: each request the client sent to the listener is one exchange, in
    order, scheme https with the upstream's host and port."""
    report = dot_flow["report"]
    assert len(report["steps"]) >= 10, show(report)  # discovery, jwks, authorize .. callback, token, userinfo
    assert_steps_recorded(report["steps"], dot_flow["exchanges"], dot)
    assert len(dot_flow["exchanges"]) == len(report["steps"])


def test_reverse_dot_discovery_record_notes_rewrite(dot_flow, dot):
    """The record tells the user when the body the client got is not the server's verbatim. DOT spells its
    origin from the Host it is sent, and its id_token's iss shows which one it was: the upstream's (then its
    discovery named the upstream and must have been rewritten, and noted) or the listener's (then there was
    nothing to rewrite, and the record must not claim a rewrite)."""
    report = dot_flow["report"]
    assert report["idToken"], show(report)
    ex = discovery_exchange(dot_flow["exchanges"], DOT_DISCOVERY)
    if origin_of(report["idToken"]["iss"]) == dot:
        assert "rewrote" in note(ex), json.dumps(ex, indent=1)[:3000]
    else:
        assert origin_of(report["idToken"]["iss"]) == dot_flow["base"], show(report)
        assert "rewrote" not in note(ex), json.dumps(ex, indent=1)[:3000]


def test_reverse_dot_analyzer_sees_one_healthy_transaction(dot_flow):
    """The analyzer reads a reverse capture as it reads a forward one: one sign-in, one transaction, ok."""
    a = dot_flow["analysis"]
    assert errors(a) == [], json.dumps(errors(a), indent=1)
    assert len(a["transactions"]) == 1, json.dumps(a["transactions"], indent=1)
    [t] = a["transactions"]
    assert t["outcome"] == "ok" and t["client_id"] == "webapp", json.dumps(t, indent=1)


def test_reverse_dot_session_mode_and_only_reverse_listener(dot_flow, dot):
    """`sessions` marks the session reverse and names its upstream; and reverse mode opened no forward
    listener: the process listened on exactly the port its stdout line announced."""
    assert_reverse_session(dot_flow["proxy"], dot)
    assert dot_flow["listening"] == {dot_flow["proxy"].listeners[dot]}, dot_flow["listening"]
    assert not any(line.startswith("authtap listening on") for line in dot_flow["proxy"].stdout_lines)


# ---------- the listener itself ----------

def test_reverse_listener_tls_leaf_and_alpn(reverse_proxy, authlib):
    """The listener's leaf verifies against authtap's CA for both localhost and 127.0.0.1 (the names a client
    is given), and it offers h2 and http/1.1 in ALPN."""
    p = reverse_proxy(authlib)
    port = p.listeners[authlib]
    seen = {}
    for name, offer in (("localhost", ["h2", "http/1.1"]), ("127.0.0.1", ["h2", "http/1.1"]),
                        ("127.0.0.1", ["http/1.1"])):
        ctx = ssl.create_default_context(cafile=p.ca)
        ctx.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                seen[(name, tuple(offer))] = tls.selected_alpn_protocol()
    assert seen == {("localhost", ("h2", "http/1.1")): "h2", ("127.0.0.1", ("h2", "http/1.1")): "h2",
                    ("127.0.0.1", ("http/1.1",)): "http/1.1"}, seen


# ---------- two upstreams at once ----------

def test_two_reverse_listeners_each_reach_their_own_upstream(reverse_proxy, authlib, dot):
    """Two --reverse with their own @127.0.0.1:0 get two ports, announced in order; two Node clients at once,
    one per listener, each reach their own server: Authlib's code flow entirely through listener A (its callback
    Location rewritten), DOT's discovery and JWKS through listener B. Nothing crosses over."""
    p = reverse_proxy(f"{authlib}@127.0.0.1:0", f"{dot}@127.0.0.1:0", rewrite=True)
    assert [LISTENER_LINE.match(line).group(2) for line in p.stdout_lines[:2]] == [authlib, dot], p.stdout_lines
    a, b = p.origin(authlib), p.origin(dot)
    assert a != b
    assert listening_ports(p.proc.pid) == {p.listeners[authlib], p.listeners[dot]}
    runs = [(authlib_config(a, authlib, expect=a)), (dot_config(b, dot, flow="discovery", expect=b))]
    procs = [subprocess.Popen(_node_cmd(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_node_env(p.ca)) for c in runs]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            reports.append(_report(out, err, proc.returncode))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    ra, rb = reports
    assert ra["ok"], show(ra)
    assert rb["ok"], show(rb)
    # Each issuer stays its server's (the iss its tokens carry); the endpoints point at that server's listener.
    assert ra["discovery"]["issuer"] == authlib and "jwks_uri" not in ra["discovery"], ra["discovery"]  # Authlib's
    assert origin_of(ra["discovery"]["token_endpoint"]) == a, ra["discovery"]
    assert rb["discovery"]["issuer"] == f"{dot}/o" and origin_of(rb["discovery"]["jwks_uri"]) == b  # DOT's
    assert ra["callback"]["origin"] == a, show(ra)
    assert p.stop() == 0
    exchanges = p.exchanges()
    assert_steps_recorded(ra["steps"], exchanges, authlib)
    assert_steps_recorded(rb["steps"], exchanges, dot)
    assert len(exchanges) == len(ra["steps"]) + len(rb["steps"])
    assert errors(p.analyze()) == []
    # Authlib names its fixed issuer whatever the Host: its discovery was rewritten, and the record says so.
    assert "rewrote" in note(discovery_exchange(at_upstream(exchanges, authlib), AUTHLIB_DISCOVERY))
    assert_reverse_session(p, authlib, dot)


# ---------- without --rewrite-urls ----------

def test_without_rewrite_discovery_sends_the_client_past_authtap(reverse_proxy, authlib, pki, tmp_path):
    """Without --rewrite-urls authtap changes nothing: discovery (fetched through authtap) names the real
    server, so a client that follows it talks to the server directly from then on and authtap records only the
    discovery request. The client trusts both CAs here, so its flow succeeds and shows where it went."""
    p = reverse_proxy(authlib)
    base = p.origin(authlib)
    report = run_node(authlib_config(base, authlib), ca_bundle(tmp_path / "both.pem", p.ca, pki["ca"]))
    assert report["ok"], show(report)
    assert origin_of(report["steps"][0]["url"]) == base
    meta = report["discovery"]
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        assert origin_of(meta[key]) == authlib, f"{key}={meta[key]}"
    assert all(origin_of(s["url"]) == authlib for s in report["steps"][1:]), show(report)
    assert p.stop() == 0
    exchanges = p.exchanges()
    assert [(x["method"], path_of(x["target"])) for x in exchanges] == [("GET", AUTHLIB_DISCOVERY)], exchanges
    [ex] = exchanges
    assert ex["status"] == 200 and ex["scheme"] == "https" and ex["port"] == urlparse(authlib).port
    assert "rewrote" not in note(ex) and authlib in (ex["responseBody"] or ""), json.dumps(ex, indent=1)[:3000]
    assert_reverse_session(p, authlib)


# ---------- spellings of the upstream's URLs ----------

@pytest.mark.parametrize("discovery", [AUTHLIB_DISCOVERY, "/gz" + AUTHLIB_DISCOVERY], ids=["plain", "gzip"])
def test_rewrite_covers_json_escaped_urls(reverse_proxy, escaped, discovery):
    """A discovery document spelling the origin JSON-escaped (`https:\\/\\/localhost:PORT`) is rewritten too,
    also when the server gzips it (Node's fetch asks for gzip): after JSON parsing, every endpoint points at
    authtap, a URL of another origin is untouched, and the record notes the rewrite."""
    p = reverse_proxy(escaped, rewrite=True)
    base = p.origin(escaped)
    config = {"base": base, "discoveryPath": discovery, "flow": "discovery", "expectOrigin": base}
    report = run_node(config, p.ca)
    assert report["ok"], show(report)
    meta = report["discovery"]
    assert meta["issuer"] == escaped and meta["jwks_uri"] == f"{base}/jwks", meta
    assert meta["service_documentation"] == "https://docs.example.test/idp", meta
    assert p.stop() == 0
    ex = discovery_exchange(p.exchanges(), discovery)
    assert "rewrote" in note(ex), json.dumps(ex, indent=1)[:3000]


def test_forward_session_mode_is_forward(make_proxy):
    """The other half of the session's mode: a forward proxy's session says "forward"."""
    p = make_proxy()
    assert p.stop() == 0
    out = subprocess.run([str(AUTHTAP), "sessions", "--db", str(p.db), "--format", "json"], capture_output=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    session = max(json.loads(out.stdout), key=lambda s: s["id"])
    assert session.get("mode") == "forward", json.dumps({k: v for k, v in session.items() if k != "arguments"})
