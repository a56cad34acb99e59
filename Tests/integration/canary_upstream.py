"""The canary table for test_canary_table.py, generated from `authtap audit --rules`, and the peers that
carry it: a TLS upstream that serves each position's response, an nginx front that gzip/brotli-compresses
it, and runners that send each position's request with curl (one process, a config file of `next` blocks)
or Python requests.

Every position has its own canary value, so a leak names its family, example name, place and client."""
import base64
import gzip
import http.server
import json
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

# The padding a canary cut at --body-limit carries after its greppable head: long enough that the part
# before the cut is at least 12 characters, distinct enough that no 12-character window of it occurs by chance.
CUT_TAIL = "QwErTyUiOpAsDfGhJkLzXcVb"
CUT_LIMIT = 300


def header_token(name):
    """An RFC 9110 token: the only names that can stand as a header or a cookie name."""
    return bool(re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name))


def xml_name(name):
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9._\-]*(:[A-Za-z_][A-Za-z0-9._\-]*)?", name))


def camel(name):
    """`client_secret` → `clientSecret`, `x-client-secret` → `xClientSecret`; None when it changes nothing."""
    parts = [p for p in re.split(r"[_\-.\[\]:]+", name) if p]
    if len(parts) < 2:
        return None
    out = parts[0][:1].lower() + parts[0][1:] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return out if out != name else None


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def compress(kind, data):
    if kind == "gzip":
        return gzip.compress(data)
    tool = {"zstd": ["zstd", "-q", "-c", "-"], "br": ["brotli", "-c", "-"]}[kind]
    return subprocess.run(tool, input=data, capture_output=True, check=True, timeout=30).stdout


@dataclass
class Position:
    pid: str
    family: str
    name: str
    place: str
    client: str
    canary: str
    needles: list
    via: str = "direct"          # direct | nginx-gzip | nginx-br | cut
    method: str = "GET"
    query: str = ""               # after `?`, already encoded
    headers: list = field(default_factory=list)
    body: bytes = None
    ctype: str = None
    form: list = None             # multipart fields (name, value)
    resp_status: int = 200
    resp_headers: list = field(default_factory=list)
    resp_body: bytes = b'{"ok":true}'
    resp_ctype: str = "application/json"
    path_token: str = None        # a token standing as a path segment

    @property
    def path(self):
        return f"/t/{self.pid}/{re.sub(r'[^a-z0-9]+', '-', self.place.lower()).strip('-')}"

    @property
    def target(self):
        return self.path + (("?" + self.query) if self.query else "")

    def describe(self):
        return f"{self.pid} [{self.client} via {self.via}] {self.family} {self.name!r} in {self.place}"


class Table:
    """Positions for one run, numbered so every canary is unique across runs."""

    def __init__(self, rules, start=1, tag="p"):
        self.rules = rules
        self.tag = tag
        self.n = start
        self.positions = []

    def canary(self, family, tail=""):
        v = f"CANARY{re.sub('[^A-Za-z]', '', family)}{self.n}Zq7{tail}"
        self.n += 1
        return v

    def add(self, client, family, name, place, canary=None, needles=None, **kw):
        canary = canary or self.canary(family)
        p = Position(pid=f"{self.tag}{len(self.positions) + 1:05d}{client[0]}", family=family, name=name, place=place,
                     client=client, canary=canary, needles=needles or [canary], **kw)
        self.positions.append(p)
        return p

    # ---------- names × places ----------

    def names(self, client):
        for fam in self.rules["names"]:
            family = fam["family"]
            for name in fam["examples"]:
                self._name_places(client, family, name)

    def _name_places(self, client, family, name):
        q = quote(name, safe="")
        add = lambda place, **kw: self.add(client, family, name, place, **kw)
        # Requests.
        v = self.canary(family)
        add("query", canary=v, query=f"state=s1&{q}={v}")
        v = self.canary(family)
        add("form", canary=v, method="POST", ctype="application/x-www-form-urlencoded",
            body=f"grant_type=x&{q}={v}".encode())
        v = self.canary(family)
        add("multipart", canary=v, method="POST", form=[("note", "hello"), (name, v)])
        v = self.canary(family)
        add("JSON request", canary=v, method="POST", ctype="application/json",
            body=json.dumps({"ok": True, name: v}).encode())
        c = camel(name)
        if c:
            v = self.canary(family)
            add("JSON request camelCase " + c, canary=v, method="POST", ctype="application/json",
                body=json.dumps({"outer": {"items": [{c: v}]}}).encode())
        v = self.canary(family)
        add("JSON request labelled form", canary=v, method="POST", ctype="application/x-www-form-urlencoded",
            body=json.dumps({"grant_type": "x", name: v}).encode())
        v = self.canary(family)
        add("URL query inside a JSON string", canary=v, method="POST", ctype="application/json",
            body=json.dumps({"next": f"https://app.test/cb?state=s&{q}={v}"}).encode())
        # curl sends no fragment: fragment canaries ride in a JSON string, the Referer and a Location.
        v = self.canary(family)
        add("URL fragment inside a JSON string", canary=v, method="POST", ctype="application/json",
            body=json.dumps({"redirect": f"https://app.test/cb#{q}={v}&token_type=Bearer"}).encode())
        v = self.canary(family)
        add("Referer fragment", canary=v, headers=[("Referer", f"https://app.test/cb#{q}={v}&state=s")])
        if xml_name(name):
            v = self.canary(family)
            add("XML request element", canary=v, method="POST", ctype="application/xml",
                body=f"<login><user>alice</user><{name}>{v}</{name}></login>".encode())
        if header_token(name):
            v = self.canary(family)
            add("request header", canary=v, headers=[(name, v)])
            v = self.canary(family)
            add("request cookie", canary=v, headers=[("Cookie", f"theme=dark; {name}={v}; lang=en")])
        # Responses.
        v = self.canary(family)
        add("JSON response", canary=v, resp_body=json.dumps({"ok": True, name: v}).encode())
        v = self.canary(family)
        add("JSON nested in arrays", canary=v, resp_body=json.dumps({"a": [{"b": [{name: v}]}]}).encode())
        v = self.canary(family)
        add("JSON object under the name", canary=v, resp_body=json.dumps({name: {"value": v, "list": [v + "x"]}}).encode())
        v = self.canary(family)
        add("URL inside a JSON response string", canary=v,
            resp_body=json.dumps({"next": f"https://app.test/cb?state=s&{q}={v}"}).encode())
        v = self.canary(family)
        add("HTML input", canary=v, resp_ctype="text/html",
            resp_body=f'<html><body><form method="post"><input type="hidden" name="{name}" value="{v}">'
                      f'<input name="user" value="alice"></form></body></html>'.encode())
        v = self.canary(family)
        add("free text", canary=v, resp_ctype="text/plain", resp_body=f"debug: {name}={v} end\n".encode())
        if xml_name(name):
            v = self.canary(family)
            add("SOAP element", canary=v, resp_ctype="application/soap+xml",
                resp_body=(f'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
                           f'<soap:Body><LoginResult><{name}>{v}</{name}></LoginResult></soap:Body></soap:Envelope>').encode())
            v = self.canary(family)
            add("XML attribute", canary=v, resp_ctype="application/xml",
                resp_body=f'<Login user="alice" {name}="{v}"/>'.encode())
        if header_token(name):
            v = self.canary(family)
            add("Set-Cookie", canary=v, resp_headers=[("Set-Cookie", f"{name}={v}; Path=/; HttpOnly; Secure")])
        v = self.canary(family)
        add("Location query", canary=v, resp_status=302, resp_body=b"", resp_ctype="text/html",
            resp_headers=[("Location", f"https://app.test/cb?{q}={v}&state=s")])
        v = self.canary(family)
        add("Location fragment", canary=v, resp_status=302, resp_body=b"", resp_ctype="text/html",
            resp_headers=[("Location", f"https://app.test/cb#{q}={v}&token_type=Bearer&state=s")])
        # Wrong Content-Types.
        v = self.canary(family)
        add("form served as JSON", canary=v, resp_body=f"grant_type=x&{q}={v}&state=s".encode())
        v = self.canary(family)
        add("JSON served as text/plain", canary=v, resp_ctype="text/plain", resp_body=json.dumps({name: v}).encode())
        v = self.canary(family)
        add("JSON served as octet-stream", canary=v, resp_ctype="application/octet-stream",
            resp_body=json.dumps({name: v}).encode())
        # Charsets and encodings.
        v = self.canary(family)
        add("UTF-16LE JSON (charset)", canary=v, resp_ctype="application/json; charset=utf-16le",
            resp_body=json.dumps({"ok": True, name: v}).encode("utf-16-le"))
        v = self.canary(family)
        add("UTF-16 JSON (BOM)", canary=v, resp_ctype="application/json",
            resp_body=b"\xff\xfe" + json.dumps({"ok": True, name: v}).encode("utf-16-le"))
        v = self.canary(family)
        add("UTF-16BE JSON (BOM)", canary=v, resp_ctype="application/json",
            resp_body=b"\xfe\xff" + json.dumps({"ok": True, name: v}).encode("utf-16-be"))
        v = self.canary(family)
        add("zstd JSON", canary=v, resp_headers=[("Content-Encoding", "zstd")],
            resp_body=compress("zstd", json.dumps({"data": [{name: v}]}).encode()))
        v = self.canary(family)
        add("gzip JSON (nginx)", canary=v, via="nginx-gzip", resp_body=json.dumps({"ok": True, name: v}).encode())
        v = self.canary(family)
        add("br JSON nested (nginx)", canary=v, via="nginx-br", resp_body=json.dumps({"a": [{name: v}]}).encode())
        v = self.canary(family)
        add("br HTML input (nginx)", canary=v, via="nginx-br", resp_ctype="text/html",
            resp_body=f'<form><input type="password" name="{name}" value="{v}"></form>'.encode())

    # ---------- token formats, a JWS, a random value, under readable names ----------

    def shapes(self, client, opaque):
        header = b64url(b'{"alg":"ES256","typ":"JWT","kid":"k1"}')
        claims = b64url(b'{"sub":"alice","iss":"https://idp.test","aud":"app1"}')
        signature = "SIGcanaryJWSsignature0123456789abcdefXYZ"[: 40]
        shapes = [(f["id"], f["example"], tail_needles(f["example"])) for f in self.rules.get("tokenFormats", [])]
        shapes.append(("jws", f"{header}.{claims}.{signature}", [signature]))
        shapes.append(("opaque", opaque, [opaque]))
        for kind, token, needles in shapes:
            add = lambda place, **kw: self.add(client, "shape:" + kind, kind, place, canary=needles[0],
                                               needles=needles, **kw)
            q = quote(token, safe="")
            add("readable JSON value (request)", method="POST", ctype="application/json",
                body=json.dumps({"note": token}).encode())
            add("readable JSON value (response)", resp_body=json.dumps({"note": token, "ok": True}).encode())
            if "\n" not in token:  # a PEM block cannot be a header value
                add("readable header X-Debug (request)", headers=[("X-Debug", token)])
                add("readable header X-Debug (response)", resp_headers=[("X-Debug", token)])
            add("free text (response)", resp_ctype="text/plain", resp_body=f"the value is {token} here\n".encode())
            add("readable query value", query=f"debug={q}&lang=en")
            add("gzip readable JSON (nginx)", via="nginx-gzip", resp_body=json.dumps({"note": token}).encode())
            if re.fullmatch(r"[A-Za-z0-9._~\-]+", token):
                add("URL path segment", path_token=token)
        return shapes


def tail_needles(token):
    """What must vanish of a token-format example: the whole of it and its last 16 characters."""
    out = [token]
    if len(token) > 20:
        out.append(token[-16:])
    return out


def build_cut_table(rules, start, clients):
    """A secret straddling --body-limit: in a form request, a JSON request and a JSON response."""
    t = Table(rules, start, tag="k")
    for client in clients:
        for fam in rules["names"]:
            family = fam["family"]
            for name in fam["examples"]:
                for place in ("form request cut at the limit", "JSON request cut at the limit",
                              "JSON response cut at the limit"):
                    # No family word in the value: its 12-character windows must not match the name beside it.
                    v = t.canary("", CUT_TAIL)
                    head_len = len(v) // 2
                    if place.startswith("form"):
                        pre = f"grant_type=x&pad="
                        post = f"&{quote(name, safe='')}="
                    else:
                        pre = '{"pad":"'
                        post = f'",{json.dumps(name)}:"'
                    pad = CUT_LIMIT - head_len - len(pre) - len(post)
                    assert pad > 0, name
                    body = (pre + "y" * pad + post + v + ('"}' if not place.startswith("form") else "&z=1")).encode()
                    assert body[CUT_LIMIT - head_len:CUT_LIMIT] == v[:head_len].encode()
                    kw = dict(via="cut")
                    if place.startswith("JSON response"):
                        kw.update(resp_body=body)
                    else:
                        kw.update(method="POST", body=body, ctype="application/x-www-form-urlencoded"
                                  if place.startswith("form") else "application/json")
                    t.add(client, family, name, place, canary=v, **kw)
    return t


# ---------- the upstream ----------

class CanaryHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms to each answer.
    disable_nagle_algorithm = True
    table = {}
    diag_codes = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            for _ in range(100000):
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype, headers=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        body = self._read_body()
        path = self.path.split("?")[0]
        parts = path.split("/")
        if path == "/oauth/authorize":
            code = self.server.diag_tokens["code"]
            return self._send(302, b"", "text/html", [("Location", f"https://app.test/cb?code={code}&state=st1")])
        if path == "/oauth/token":
            form = dict(kv.split("=", 1) for kv in body.decode().split("&") if "=" in kv)
            code = form.get("code", "")
            with self.lock:
                seen = self.diag_codes.get(code, 0)
                self.diag_codes[code] = seen + 1
            if seen == 0:
                tok = self.server.diag_tokens
                resp = {"access_token": tok["access"], "token_type": "Bearer", "expires_in": 3600,
                        "refresh_token": tok["refresh"], "scope": "openid"}
                return self._send(200, json.dumps(resp).encode(), "application/json", [("Cache-Control", "no-store")])
            # nginx's gzip and brotli filters only compress 200, 403 and 404 answers: the 400 comes
            # gzip-compressed from here, and nginx passes it on as it is.
            err = gzip.compress(json.dumps({"error": "invalid_grant",
                                            "error_description": "Authorization code already redeemed."}).encode())
            return self._send(400, err, "application/json", [("Cache-Control", "no-store"), ("Content-Encoding", "gzip"),
                                                             ("Vary", "Accept-Encoding")])
        if len(parts) >= 3 and parts[1] == "t" and parts[2] in self.table:
            p = self.table[parts[2]]
            return self._send(p.resp_status, p.resp_body, p.resp_ctype, p.resp_headers)
        return self._send(404, b'{"error":"not_found"}', "application/json")

    do_GET = do_POST = do_PUT = do_HEAD = _handle


class CanaryUpstream:
    def __init__(self, cert, key, positions, diag_tokens):
        handler = type("H", (CanaryHandler,), {"table": {p.pid: p for p in positions}, "diag_codes": {},
                                                 "lock": threading.Lock()})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.diag_tokens = diag_tokens
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------- nginx, compressing in front of the upstream ----------

NGINX_BROTLI = "/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, workdir, cert, key, upstream_port):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in ("logs", "tmp"):
            (self.dir / d).mkdir(exist_ok=True)
        template = (Path(__file__).parent / "nginx-compress.conf.template").read_text()
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            conf = template
            for k, v in {"PREFIX": str(self.dir), "PORT": str(self.port), "CERT": cert, "KEY": key,
                         "UPSTREAM": str(upstream_port), "BROTLI_MODULE": NGINX_BROTLI}.items():
                conf = conf.replace("@" + k + "@", v)
            self.conf = self.dir / "nginx.conf"
            self.conf.write_text(conf)
            self.proc = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.dir) + "/"],
                                         stdout=open(self.dir / "nginx.stdout", "wb"),
                                         stderr=open(self.dir / "nginx.stderr", "wb"))
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.05)
            last_error = (self.dir / "nginx.stderr").read_text() + (self.dir / "logs" / "error.log").read_text() \
                if (self.dir / "logs" / "error.log").exists() else (self.dir / "nginx.stderr").read_text()
            self.stop()
        raise RuntimeError("nginx did not start: " + last_error)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------- clients ----------

def run_requests(positions, proxy, hosts, timeout=30):
    """Sends every position with Python requests; returns {pid: (status, headers, raw content)}."""
    import requests
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy.url, "http": proxy.url}
    s.verify = proxy.bundle
    out = {}
    for p in positions:
        url = f"https://localhost:{hosts[p.via]}{target_of(p)}"
        headers = dict(p.headers)
        if p.via == "nginx-gzip":
            headers["Accept-Encoding"] = "gzip"
        elif p.via == "nginx-br":
            headers["Accept-Encoding"] = "br"
        else:
            headers["Accept-Encoding"] = "identity"
        kw = {}
        if p.form is not None:
            kw["files"] = [(k, (None, v)) for k, v in p.form]
        elif p.body is not None:
            kw["data"] = p.body
            headers["Content-Type"] = p.ctype
        r = s.request(p.method, url, headers=headers, allow_redirects=False, timeout=timeout, stream=True, **kw)
        raw = r.raw.read(decode_content=False)
        out[p.pid] = (r.status_code, dict(r.headers), raw)
        r.close()
    s.close()
    return out


def target_of(p):
    if p.path_token:
        return f"/t/{p.pid}/u/{p.path_token}/profile"
    return p.target


def _cfg(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def run_curl(positions, proxy, hosts, workdir, batch=400):
    """Sends every position with curl: one process per batch, one `next` block per position.
    Returns {pid: http status} from --write-out."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    statuses = {}
    for start in range(0, len(positions), batch):
        chunk = positions[start:start + batch]
        lines = []
        for i, p in enumerate(chunk):
            if i:
                lines.append("next")
            lines += [f"url = {_cfg(f'https://localhost:{hosts[p.via]}{target_of(p)}')}",
                      f"proxy = {_cfg(proxy.url)}", f"cacert = {_cfg(proxy.bundle)}", "silent", "show-error",
                      "suppress-connect-headers", "max-time = 20", f"request = {_cfg(p.method)}",
                      f"output = {_cfg(str(workdir / 'body' / p.pid))}", "create-dirs",
                      f"write-out = {_cfg(p.pid + ' %{http_code}' + chr(10))}"]
            if p.via == "nginx-gzip":
                lines += ["compressed", f"header = {_cfg('Accept-Encoding: gzip')}"]
            elif p.via == "nginx-br":
                lines += [f"header = {_cfg('Accept-Encoding: br')}"]
            for k, v in p.headers:
                lines.append(f"header = {_cfg(f'{k}: {v}')}")
            if p.form is not None:
                for k, v in p.form:
                    lines.append(f"form-string = {_cfg(f'{k}={v}')}")
            elif p.body is not None:
                lines.append(f"header = {_cfg('Content-Type: ' + p.ctype)}")
                lines.append(f"data-binary = {_cfg(p.body.decode())}")
        cfg = workdir / f"curl-{start}.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        r = subprocess.run(["curl", "-K", str(cfg)], capture_output=True, timeout=300)
        for line in r.stdout.decode().splitlines():
            pid, _, code = line.partition(" ")
            statuses[pid] = int(code) if code.isdigit() else 0
        if r.stderr:
            (workdir / f"curl-{start}.stderr").write_bytes(r.stderr)
    return statuses
