"""The analyzer against a second real authorization server: django-oauth-toolkit (from PyPI), an
OpenID Provider on Django, over TLS on loopback (authserver2/serve.py). Unlike the Authlib server of
test_analyzer.py, the user signs in through Django's real login form (CSRF token) and approves on
DOT's consent page; PKCE is required, refresh tokens rotate, codes live AUTHSERVER2_CODE_SECONDS.

Python requests plays both halves of the client, each through authtap: the browser (cookies,
follows redirects, submits the login and consent forms, lands on /cb) and the client's back end
(discovery, JWKS, token and userinfo requests, no cookies). Each fault scenario must be classified
as exactly one error, its root cause, with no generic duplicate beside it."""
import json
import os
import secrets
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from conftest import pkce, port_file_server

HERE = Path(__file__).parent
CODE_SECONDS = 5  # the authorization code lifetime the server is started with (DOT's default: 60)
USERNAME, PASSWORD = "alice", "alice-password-0001"
WEBAPP_SECRET = "webapp-secret-0001"

FAULTS = pytest.mark.faults  # every scenario but the healthy ones fails on purpose


@pytest.fixture(scope="module")
def dot(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("authserver2")
    cert, key = pki["good"]
    env = dict(os.environ, AUTHSERVER2_DATA=str(d), AUTHSERVER2_CODE_SECONDS=str(CODE_SECONDS))
    with port_file_server(HERE / "authserver2" / "serve.py", cert, key, d, env=env, start_timeout=60) as url:
        yield url


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"attrs": attrs, "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attrs)


def forms(html):
    p = _Forms()
    p.feed(html)
    return p.forms


def _session(proxy):
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy.url}
    s.verify = proxy.bundle
    return s


class Client:
    """An OIDC relying party whose browser and back end both go through authtap."""

    def __init__(self, proxy, base, client_id="webapp", secret=WEBAPP_SECRET):
        self.browser = _session(proxy)
        self.backend = _session(proxy)
        self.base = base
        self.client_id = client_id
        self.secret = secret
        self.redirect_uri = f"{base}/cb"
        self.meta = self.backend.get(f"{base}/o/.well-known/openid-configuration", timeout=10).json()
        assert self.backend.get(self.meta["jwks_uri"], timeout=10).status_code == 200

    # ---- the browser ----

    def _submit(self, page, form, fields):
        data = {i["name"]: i.get("value") or "" for i in form["inputs"] if i.get("name") and i.get("type") != "submit"}
        data.update(fields)
        origin = "{0.scheme}://{0.netloc}".format(urlparse(page.url))
        return self.browser.post(urljoin(page.url, form["attrs"].get("action") or page.url), data=data,
                                 headers={"Origin": origin, "Referer": page.url}, allow_redirects=False, timeout=10)

    def _browse(self, r):
        """Follows redirects and signs in on the login form; stops at any other page (the consent
        page, the callback, an error page)."""
        for _ in range(10):
            if r.is_redirect:
                r = self.browser.get(urljoin(r.url, r.headers["Location"]), allow_redirects=False, timeout=10)
                continue
            login = [f for f in forms(r.text) if any(i.get("name") == "password" for i in f["inputs"])]
            if r.status_code == 200 and login:
                r = self._submit(r, login[0], {"username": USERNAME, "password": PASSWORD})
                assert r.is_redirect, f"sign-in failed: {r.status_code} {r.text[:500]}"
                continue
            return r
        raise AssertionError("too many redirects")

    def start(self, challenge=None, state=None, scope="openid profile", redirect_uri=None):
        """GET /authorize, signing in if asked; returns the page the browser stops at."""
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": redirect_uri or self.redirect_uri, "scope": scope,
                  "state": state or secrets.token_urlsafe(8)}
        if challenge:
            params.update(code_challenge=challenge, code_challenge_method="S256")
        r = self.browser.get(self.meta["authorization_endpoint"], params=params, allow_redirects=False, timeout=10)
        return self._browse(r)

    def consent(self, page, allow=True):
        """Approves (or cancels) on the consent page; returns the callback page the browser lands on."""
        [form] = [f for f in forms(page.text) if f["attrs"].get("id") == "authorizationForm"]
        r = self._submit(page, form, {"allow": "Authorize"} if allow else {})
        assert r.is_redirect, f"{r.status_code} {r.text[:500]}"
        cb = self._browse(r)
        assert urlparse(cb.url).path == "/cb" and cb.status_code == 200, cb.url
        return cb

    def callback(self, cb):
        return {k: v[0] for k, v in parse_qs(urlparse(cb.url).query).items()}

    def authorize(self, challenge=None, state=None):
        page = self.start(challenge, state)
        assert page.status_code == 200 and "authorizationForm" in page.text, f"{page.status_code} {page.text[:500]}"
        return self.callback(self.consent(page))["code"]

    def close(self):
        self.browser.close()
        self.backend.close()

    # ---- the back end ----

    def token(self, data, url=None, client_id=None, secret=None, method="post"):
        client_id = client_id or self.client_id
        secret = secret if secret is not None else self.secret
        body = dict(data)
        auth = None
        if secret and method == "basic":
            auth = (client_id, secret)
        elif secret:
            body.update(client_id=client_id, client_secret=secret)
        else:
            body.update(client_id=client_id)
        return self.backend.post(url or self.meta["token_endpoint"], data=body, auth=auth,
                                 headers={"Accept": "application/json"}, timeout=10)

    def exchange(self, code, verifier=None, redirect_uri=None, **kw):
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or self.redirect_uri}
        if verifier:
            data["code_verifier"] = verifier
        return self.token(data, **kw)

    def refresh(self, refresh_token):
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})


def analyze(proxy, *clients):
    """Ends the clients (closing their connections), stops the proxy (its final analysis runs) and
    returns `authtap analyze --format json`."""
    for c in clients:
        c.close()
    assert proxy.stop() == 0
    return proxy.analyze()


def errors(analysis):
    """The rules of the error findings; every one of them must be its failure's root cause."""
    found = [f for f in analysis["findings"] if f["severity"] == "error"]
    roots = {f["rule"] for f in found if f.get("root_cause")}
    assert roots == {f["rule"] for f in found}, "an error finding that is not a root cause: " + show(analysis)
    return sorted(roots)


def show(analysis):
    return json.dumps(analysis["findings"], indent=1)


# ---------- healthy ----------

def test_healthy_code_pkce_flow_with_refresh(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["id_token"].count(".") == 2
    userinfo = c.backend.get(c.meta["userinfo_endpoint"], timeout=10,
                             headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.json()["sub"], userinfo.text
    r2 = c.refresh(tokens["refresh_token"])
    assert r2.status_code == 200, r2.text
    r3 = c.refresh(r2.json()["refresh_token"])  # the rotated token, used once: healthy
    assert r3.status_code == 200, r3.text
    a = analyze(proxy, c)
    assert errors(a) == [], show(a)
    # One sign-in (authorize, login, consent, callback, token, userinfo, refreshes) is one transaction.
    assert len(a["transactions"]) == 1, json.dumps(a["transactions"], indent=1)
    [t] = a["transactions"]
    assert t["outcome"] == "ok" and t["client_id"] == "webapp", json.dumps(t, indent=1)


def test_healthy_public_client_flow(proxy, dot):
    c = Client(proxy, dot, client_id="spa", secret="")
    verifier, challenge = pkce()
    r = c.exchange(c.authorize(challenge), verifier)
    assert r.status_code == 200, r.text
    r2 = c.refresh(r.json()["refresh_token"])
    assert r2.status_code == 200, r2.text
    a = analyze(proxy, c)
    assert errors(a) == [], show(a)
    assert len(a["transactions"]) == 1, json.dumps(a["transactions"], indent=1)
    [t] = a["transactions"]
    assert t["outcome"] == "ok" and t["client_id"] == "spa", json.dumps(t, indent=1)


# ---------- faults: one root cause each ----------

@FAULTS
def test_code_reuse(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    assert c.exchange(code, verifier).status_code == 200
    time.sleep(2.5)  # a replay, not a double render (and still within the code's lifetime)
    second = c.exchange(code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant", second.text
    a = analyze(proxy, c)
    assert errors(a) == ["code-reuse"], show(a)


@FAULTS
def test_code_expired(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    time.sleep(CODE_SECONDS + 1.5)  # the code's lifetime runs out before the back end exchanges it
    r = c.exchange(code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    a = analyze(proxy, c)
    assert errors(a) == ["code-expired"], show(a)
    # The server says only invalid_grant: the verdict comes from ruling out every other cause.
    verdict = next(f for f in a["findings"] if f["rule"] == "code-expired")
    status = {c["cause"]: c["status"] for c in verdict["candidates"]}
    assert status["code-expired"] != "ruled-out", show(a)
    for cause in ("code-reuse", "redirect-uri-mismatch", "pkce-mismatch", "invalid-client"):
        assert status[cause] == "ruled-out", show(a)


@FAULTS
def test_redirect_uri_mismatch_at_token(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier, redirect_uri=f"{dot}/cb/")
    assert r.status_code == 400, r.text
    a = analyze(proxy, c)
    assert errors(a) == ["redirect-uri-mismatch"], show(a)


@FAULTS
def test_unregistered_redirect_uri_at_authorize(proxy, dot):
    c = Client(proxy, dot)
    _, challenge = pkce()
    page = c.start(challenge, redirect_uri="https://localhost:1/elsewhere")
    assert page.status_code == 400, f"{page.status_code} {page.text[:500]}"
    a = analyze(proxy, c)
    assert errors(a) == ["redirect-uri-mismatch"], show(a)


@FAULTS
def test_pkce_wrong_verifier(proxy, dot):
    c = Client(proxy, dot)
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, other_verifier)
    assert r.status_code == 400, r.text
    a = analyze(proxy, c)
    assert errors(a) == ["pkce-mismatch"], show(a)
    assert other_verifier not in json.dumps(a)


@FAULTS
def test_pkce_missing_verifier(proxy, dot):
    c = Client(proxy, dot, client_id="spa", secret="")
    _, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code)  # the challenge was sent at /authorize, the verifier is forgotten at /token
    assert r.status_code == 400, r.text
    a = analyze(proxy, c)
    assert errors(a) == ["pkce-mismatch"], show(a)


@FAULTS
def test_wrong_client_secret(proxy, dot):
    c = Client(proxy, dot, secret="not-the-secret")
    verifier, challenge = pkce()
    r = c.exchange(c.authorize(challenge), verifier)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    a = analyze(proxy, c)
    assert errors(a) == ["invalid-client"], show(a)
    assert "not-the-secret" not in json.dumps(a)


@FAULTS
def test_unknown_client_id_at_token(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier, client_id="webapp-staging", method="basic")  # a client_id from another environment
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    a = analyze(proxy, c)
    assert errors(a) == ["invalid-client"], show(a)


@FAULTS
def test_refresh_token_reuse_after_rotation(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    tokens = c.exchange(c.authorize(challenge), verifier).json()
    assert c.refresh(tokens["refresh_token"]).status_code == 200
    again = c.refresh(tokens["refresh_token"])
    assert again.status_code == 400, again.text
    a = analyze(proxy, c)
    assert errors(a) == ["refresh-token-reuse"], show(a)


@FAULTS
def test_unsupported_grant_type(proxy, dot):
    c = Client(proxy, dot)
    r = c.token({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
    a = analyze(proxy, c)
    assert errors(a) == ["unsupported-grant-type"], show(a)


@FAULTS
def test_invalid_scope_at_authorize(proxy, dot):
    c = Client(proxy, dot)
    _, challenge = pkce()
    cb = c.start(challenge, scope="openid admin")
    assert urlparse(cb.url).path == "/cb" and c.callback(cb)["error"] == "invalid_scope", f"{cb.url} {cb.text[:500]}"
    a = analyze(proxy, c)
    assert errors(a) == ["invalid-scope"], show(a)


@FAULTS
def test_user_denies_consent(proxy, dot):
    c = Client(proxy, dot)
    _, challenge = pkce()
    page = c.start(challenge)
    cb = c.consent(page, allow=False)
    assert c.callback(cb)["error"] == "access_denied", cb.url
    a = analyze(proxy, c)
    assert errors(a) == ["authorization-error"], show(a)


@FAULTS
def test_state_mismatch_two_sign_ins(proxy, dot):
    c = Client(proxy, dot)
    _, challenge1 = pkce()
    _, challenge2 = pkce()
    first = c.start(challenge1, state="state-first-0001")
    second = c.start(challenge2, state="state-second-0002")  # the client now holds only this state
    assert "authorizationForm" in first.text and "authorizationForm" in second.text
    cb = c.consent(first)  # the first tab's consent is approved: its callback arrives
    assert c.callback(cb)["state"] == "state-first-0001"  # != the stored state: the client stops here
    a = analyze(proxy, c)
    assert errors(a) == ["state-mismatch"], show(a)
    finding = next(f for f in a["findings"] if f["rule"] == "state-mismatch")
    assert "second sign-in" in finding["title"] and finding["evidence"].get("later_sign_in"), show(a)


@FAULTS
def test_html_response_at_the_token_url(proxy, dot):
    c = Client(proxy, dot)
    verifier, challenge = pkce()
    code = c.authorize(challenge)
    r = c.exchange(code, verifier, url=f"{dot}/accounts/login/")  # the sign-in page configured as the token URL
    assert r.headers["Content-Type"].startswith("text/html"), r.headers
    a = analyze(proxy, c)
    assert errors(a) == ["non-json-response"], show(a)
