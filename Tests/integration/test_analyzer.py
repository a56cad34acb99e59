"""The analyzer against a real authorization server (Authlib, from PyPI) over TLS on loopback,
with Python requests as the client going through authtap. Each scenario must be classified
correctly, and nothing else may be flagged as an error."""
import json
import secrets
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from conftest import AUTHTAP, pkce, port_file_server

HERE = Path(__file__).parent

# Every scenario but the healthy one fails on purpose; the healthy one asserts it has no findings at all.
pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def authserver(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("authserver")
    cert, key = pki["good"]
    with port_file_server(HERE / "authserver.py", cert, key, d) as url:
        yield url


class Client:
    """An OAuth client (and its browser) whose traffic all goes through authtap."""

    def __init__(self, proxy, base, client_id="webapp", secret="webapp-secret-0001"):
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.proxies = {"https": proxy.url}
        self.s.verify = proxy.bundle
        self.base = base
        self.client_id = client_id
        self.secret = secret
        self.redirect_uri = f"{base}/cb"

    def authorize(self, challenge=None, state=None):
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": "openid profile offline_access", "state": state or secrets.token_urlsafe(8)}
        if challenge:
            params.update(code_challenge=challenge, code_challenge_method="S256")
        r = self.s.get(f"{self.base}/authorize", params=params, allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text
        location = r.headers["Location"]
        assert self.s.get(location, timeout=10).status_code == 200  # the browser lands on the callback
        return parse_qs(urlparse(location).query)["code"][0]

    def token(self, data, url=None, auth=True):
        body = dict(data)
        if auth and self.secret:
            body.update(client_id=self.client_id, client_secret=self.secret)
        elif not self.secret:
            body.update(client_id=self.client_id)
        return self.s.post(url or f"{self.base}/token", data=body, headers={"Accept": "application/json"}, timeout=10)

    def exchange(self, code, verifier=None, redirect_uri=None, **kw):
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or self.redirect_uri}
        if verifier:
            data["code_verifier"] = verifier
        return self.token(data, **kw)

    def refresh(self, refresh_token):
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})


def analyze(proxy):
    """Stops the proxy (its final analysis runs) and returns `authtap analyze --format json`."""
    assert proxy.stop() == 0
    return proxy.analyze()


def errors(analysis):
    return sorted({f["rule"] for f in analysis["findings"] if f["severity"] == "error"})


def test_healthy_code_pkce_flow_with_refresh(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert c.s.get(f"{authserver}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10).json()["sub"] == "user-1"
    r2 = c.refresh(tokens["refresh_token"])
    assert r2.status_code == 200, r2.text
    r3 = c.refresh(r2.json()["refresh_token"])  # the rotated token, used once: healthy
    assert r3.status_code == 200, r3.text
    a = analyze(proxy)
    assert a["findings"] == [], json.dumps(a["findings"], indent=1)
    [t] = a["transactions"]
    assert t["outcome"] == "ok" and t["client_id"] == "webapp"
    assert [m["leg"] for m in t["exchanges"]] == ["authorize", "callback", "token", "userinfo", "refresh", "refresh"]
    # Stored: the TUI and HAR export read the same rows.
    con = sqlite3.connect(proxy.db)
    counts = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("oauth_transaction", "transaction_member")]
    con.close()
    assert counts == [1, 6]


def test_code_reuse(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    assert c.exchange(code, verifier).status_code == 200
    time.sleep(2.5)  # a replay, not a double render
    second = c.exchange(code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    a = analyze(proxy)
    assert errors(a) == ["code-reuse"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "code-reuse"]
    assert "double render" not in f["title"]
    token_ids = [m["id"] for m in a["transactions"][0]["exchanges"] if m["leg"] == "token"]
    assert f["exchanges"] == token_ids and f["evidence"]["succeeded"] == f"#{token_ids[0]}"
    assert code not in json.dumps(a)  # the evidence carries the masked code only
    assert f["evidence"]["code"].startswith("[masked code len=")
    # Live: printed while the proxy ran.
    assert "FINDING [error] code-reuse" in proxy.stdout_path.read_text()


def test_parallel_double_exchange(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    results = []
    barrier = threading.Barrier(2)

    def go():
        s = Client(proxy, authserver)
        barrier.wait()
        results.append(s.exchange(code, verifier).status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [200, 400]
    a = analyze(proxy)
    assert errors(a) == ["code-reuse"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "code-reuse"]
    assert "double render" in f["title"] and "StrictMode" in f["fix"]


def test_redirect_uri_mismatch(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier, redirect_uri=f"{authserver}/cb/")
    assert r.status_code == 400, r.text
    a = analyze(proxy)
    assert errors(a) == ["redirect-uri-mismatch"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "redirect-uri-mismatch"]
    assert f["evidence"]["difference"] == "a trailing slash (/cb vs /cb/)"


def test_unregistered_redirect_uri_at_authorize(proxy, authserver):
    c = Client(proxy, authserver)
    _, challenge = pkce()
    r = c.s.get(f"{authserver}/authorize", params={"response_type": "code", "client_id": "webapp", "state": "s1",
                                                   "redirect_uri": "https://localhost:1/elsewhere", "code_challenge": challenge,
                                                   "code_challenge_method": "S256"}, allow_redirects=False, timeout=10)
    assert r.status_code == 400, r.text
    a = analyze(proxy)
    assert errors(a) == ["redirect-uri-mismatch"], json.dumps(a["findings"], indent=1)
    [f] = a["findings"]
    assert f["evidence"]["redirect_uri"] == "https://localhost:1/elsewhere"


def test_pkce_mismatch(proxy, authserver):
    c = Client(proxy, authserver)
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, other_verifier)
    assert r.status_code == 400, r.text
    a = analyze(proxy)
    assert errors(a) == ["pkce-mismatch"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "pkce-mismatch"]
    assert f["evidence"]["code_challenge"] == challenge
    assert f["evidence"]["S256(code_verifier)"] != challenge
    assert other_verifier not in json.dumps(a)


def test_refresh_token_reuse_after_rotation(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    tokens = c.exchange(c.authorize(challenge), verifier).json()
    assert c.refresh(tokens["refresh_token"]).status_code == 200
    again = c.refresh(tokens["refresh_token"])
    assert again.status_code == 400, again.text
    a = analyze(proxy)
    assert errors(a) == ["refresh-token-reuse"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "refresh-token-reuse"]
    assert "after it was rotated" in f["title"]


def test_invalid_client_secret(proxy, authserver):
    c = Client(proxy, authserver, secret="not-the-secret")
    verifier, challenge = pkce()
    r = c.exchange(c.authorize(challenge), verifier)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    a = analyze(proxy)
    assert errors(a) == ["invalid-client"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "invalid-client"]
    assert f["evidence"]["method"] == "client_secret_post" and "not-the-secret" not in json.dumps(a)


def test_unsupported_grant_type(proxy, authserver):
    c = Client(proxy, authserver)
    r = c.token({"grant_type": "password", "username": "u", "password": "pw-canary-77"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    a = analyze(proxy)
    assert errors(a) == ["unsupported-grant-type"], json.dumps(a["findings"], indent=1)
    assert "pw-canary-77" not in json.dumps(a)


def test_html_response_at_the_token_url(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier, url=f"{authserver}/login")  # a misconfigured token URL
    assert r.headers["Content-Type"].startswith("text/html")
    a = analyze(proxy)
    assert errors(a) == ["non-json-response"], json.dumps(a["findings"], indent=1)
    [f] = [f for f in a["findings"] if f["rule"] == "non-json-response"]
    assert "login page" in f["title"] and f["evidence"]["title"] == "Sign in to Example"


def test_jwt_signature_checked_at_capture_time(proxy, authserver):
    c = Client(proxy, authserver)
    grant = {"grant_type": "client_credentials"}
    good = c.token(grant, url=f"{authserver}/signed-token").json()["id_token"]
    assert c.s.get(f"{authserver}/jwks", timeout=10).status_code == 200  # the key arrives after the first token
    bad = c.token(grant, url=f"{authserver}/signed-token?tamper=1").json()["id_token"]
    a = analyze(proxy)
    assert errors(a) == ["jwt-invalid"], json.dumps(a["findings"], indent=1)
    [f] = a["findings"]
    assert "signature does not verify" in f["title"] and f["evidence"]["kid"] == "es-1"
    token_exchanges = [x for x in proxy.exchanges() if x["target"].startswith("/signed-token")]
    assert f["exchanges"] == [token_exchanges[1]["id"]]
    # The signatures themselves never reach the store.
    dump = json.dumps(proxy.exchanges())
    assert good.rsplit(".", 1)[1] not in dump and bad.rsplit(".", 1)[1] not in dump


@pytest.mark.faults
def test_untrusted_upstream_certificate(proxy, upstreams, authserver):
    c = Client(proxy, authserver)
    r = c.s.post(f"https://localhost:{upstreams['selfsigned'].port}/token",
                 data={"grant_type": "client_credentials", "client_id": "svc", "client_secret": "s"}, timeout=10)
    assert r.status_code == 502 and r.headers["X-Authtap-TLS-Failure"] == "untrusted-issuer"
    a = analyze(proxy)
    assert errors(a) == ["tls-fault"], json.dumps(a["findings"], indent=1)
    [f] = a["findings"]
    assert f["evidence"]["reason"] == "untrusted-issuer" and "--upstream-ca" in f["fix"]


def test_analyze_cli_text_exit_codes_and_idempotence(proxy, authserver):
    c = Client(proxy, authserver)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    c.exchange(code, verifier)
    c.exchange(code, verifier)
    assert proxy.stop() == 0
    base = [str(AUTHTAP), "analyze", "--db", str(proxy.db), "--certs", str(proxy.certs)]
    text = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert text.returncode == 1  # an error finding, --fail-on error by default
    assert "Transaction 1" in text.stdout and "[ERROR] code-reuse" in text.stdout and "Fix:" in text.stdout
    assert subprocess.run(base + ["--fail-on", "never"], capture_output=True, timeout=60).returncode == 0
    first = proxy.analyze()
    second = proxy.analyze()
    assert first == second
    con = sqlite3.connect(proxy.db)
    counts = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("finding", "oauth_transaction")]
    con.close()
    assert counts == [len(first["findings"]), len(first["transactions"])]
    rules = subprocess.run([str(AUTHTAP), "rules"], capture_output=True, text=True, timeout=30)
    for rule in ["code-reuse", "code-expired", "state-mismatch", "non-json-response", "tls-fault", "redirect-uri-mismatch",
                 "pkce-mismatch", "refresh-token-reuse", "invalid-client", "unsupported-grant-type", "invalid-scope",
                 "invalid-request", "clock-skew", "jwt-invalid", "missing-leg", "upstream-error"]:
        assert rule in rules.stdout
    bad = subprocess.run(base + ["--session", "99"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "no session 99" in bad.stderr
