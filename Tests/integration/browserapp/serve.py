"""A small OAuth client web application (a relying party) for the browser integration test
(test_browser.py): a real app on loopback TLS that a real browser signs in to, through authtap, at
the django-oauth-toolkit server of authserver2/.

It keeps its sign-in state the way a common Node stack does, because that way breaks under two tabs:
Express with cookie-session (`{name: 'session', keys, secure: true, sameSite: 'lax'}`) and Passport's
passport-oauth2 strategy (`state: true, pkce: 'S256'`). passport-oauth2's PKCE session store keeps ONE
pending authorization request per session key, `req.session['oauth2:' + host].state = {handle, verifier}`,
and cookie-session keeps the whole session in ONE cookie per browser (with its `.sig`), so a second sign-in
(another tab) overwrites the first one's state:
  https://github.com/jaredhanson/passport-oauth2/blob/master/lib/state/pkcesession.js
  https://github.com/expressjs/cookie-session/blob/master/index.js
  (and the failure it causes: https://github.com/panva/openid-client/issues/639,
  https://github.com/auth0/express-openid-connect/issues/43)
On a state that does not match, the store fails with 'Invalid authorization request state.' and the
strategy with HTTP 403 (lib/state/pkcesession.js, lib/strategy.js); passport.authenticate with
`failureMessage: true, failWithError: true` records the message in req.session.messages and hands the
403 AuthenticationError('Forbidden') to the app's error handler (passport lib/middleware/authenticate.js,
https://github.com/jaredhanson/passport/blob/master/lib/middleware/authenticate.js), which renders it
as express-generator's error page does (message, status), with the recorded messages.

Routes: /login (starts a sign-in: state + PKCE S256, stored in the session cookie, 302 to /o/authorize/),
/callback (checks the state, then exchanges the code at /o/token/ through authtap, the back channel),
/ (who is signed in). Run as: python3 serve.py CERT KEY PORTFILE, with the environment:
BROWSERAPP_AUTHORIZE_URL, BROWSERAPP_TOKEN_URL, BROWSERAPP_CLIENT_ID, BROWSERAPP_CLIENT_SECRET,
BROWSERAPP_PROXY (authtap's URL: the back channel goes through it), BROWSERAPP_CA_BUNDLE (authtap's
trust bundle), BROWSERAPP_HOST (the host name the app calls itself in its redirect_uri)."""
import base64
import hashlib
import hmac
import html
import json
import os
import secrets
import ssl
import string
import sys
from urllib.parse import urlencode, urlparse

import requests
from flask import Flask, Response, make_response, redirect, request
from werkzeug.serving import make_server

AUTHORIZE_URL = os.environ["BROWSERAPP_AUTHORIZE_URL"]
TOKEN_URL = os.environ["BROWSERAPP_TOKEN_URL"]
CLIENT_ID = os.environ["BROWSERAPP_CLIENT_ID"]
CLIENT_SECRET = os.environ["BROWSERAPP_CLIENT_SECRET"]
PROXY = os.environ["BROWSERAPP_PROXY"]
CA_BUNDLE = os.environ["BROWSERAPP_CA_BUNDLE"]
HOST = os.environ.get("BROWSERAPP_HOST", "127.0.0.1")
SESSION_KEY = secrets.token_bytes(32)  # cookie-session's `keys`
# passport-oauth2: `this._key = options.sessionKey || ('oauth2:' + url.parse(options.authorizationURL).hostname)`
PASSPORT_KEY = "oauth2:" + urlparse(AUTHORIZE_URL).hostname
STATE_MISMATCH = "Invalid authorization request state."  # passport-oauth2 lib/state/pkcesession.js
STATE_MISSING = "Unable to verify authorization request state."  # the same store, no pending request
CALLBACK_URL = None  # https://HOST:PORT/callback, set once the port is known

app = Flask(__name__)
backend = requests.Session()  # the app's back end: its own connections, no browser cookies
backend.trust_env = False
backend.proxies = {"https": PROXY}
backend.verify = CA_BUNDLE


# ---------- cookie-session: the whole session in one signed cookie per browser ----------

def _sign(data):
    """Keygrip's signature (HMAC-SHA1, URL-safe base64 without padding) of `name=value`."""
    digest = hmac.new(SESSION_KEY, data.encode(), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_session():
    value, sig = request.cookies.get("session"), request.cookies.get("session.sig")
    if not value or not sig or not hmac.compare_digest(_sign(f"session={value}"), sig):
        return {}
    try:
        return json.loads(base64.b64decode(value))
    except ValueError:
        return {}


def save_session(resp, session):
    """Sets both cookies as cookie-session does (the `cookies` module's attribute order), with the app's
    options; httpOnly is cookie-session's default."""
    value = base64.b64encode(json.dumps(session, separators=(",", ":")).encode()).decode()
    for name, v in (("session", value), ("session.sig", _sign(f"session={value}"))):
        resp.headers.add("Set-Cookie", f"{name}={v}; path=/; samesite=lax; secure; httponly")
    return resp


def uid(n):
    """uid2: n characters of [A-Za-z0-9]."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def page(title, body, status=200):
    return Response(f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>{body}</body></html>",
                    status=status, content_type="text/html; charset=utf-8")


def error_page(session, status, reason):
    """The app's error handler (express-generator's views/error: message, then status), with the
    messages passport recorded (`failureMessage: true` pushes the strategy's message to
    req.session.messages), which it shows once."""
    items = "".join(f"<li class=message>{html.escape(m)}</li>" for m in session.pop("messages", []))
    body = f"<h1 id=error>{html.escape(reason)}</h1><h2 id=status>{status}</h2><ul>{items}</ul>"
    return save_session(page("Error", body, status), session)


# ---------- routes ----------

@app.get("/")
def home():
    session = load_session()
    user = session.get("passport", {}).get("user")
    if user:
        return page("Signed in", f"<p id=user>Signed in as sub={html.escape(str(user['sub']))}</p>"
                                 f"<p id=scope>scope: {html.escape(user.get('scope', ''))}</p>")
    return page("Example app", '<p id=anonymous>Not signed in. <a href="/login">Sign in</a></p>')


@app.get("/favicon.ico")
def favicon():
    return Response(status=204)


@app.get("/login")
def login():
    """passport.authenticate('oauth2') without a code: stores {handle, verifier} (replacing any
    pending one) and redirects to the authorization endpoint."""
    session = load_session()
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    handle = uid(24)
    session.setdefault(PASSPORT_KEY, {})["state"] = {"handle": handle, "verifier": verifier}
    params = {"response_type": "code", "redirect_uri": CALLBACK_URL, "scope": "openid", "state": handle,
              "code_challenge": challenge, "code_challenge_method": "S256", "client_id": CLIENT_ID}
    return save_session(redirect(f"{AUTHORIZE_URL}?{urlencode(params)}", 302), session)


@app.get("/callback")
def callback():
    """passport.authenticate('oauth2', {failureMessage: true, failWithError: true}) with a code:
    verify the state against the one pending request, then redeem the code on the back channel."""
    session = load_session()
    if "error" in request.args:
        # passport-oauth2: access_denied fails (401, its description as the message); any other error is an
        # AuthorizationError, which reaches the error handler as a 500.
        said = request.args.get("error_description") or request.args["error"]
        session.setdefault("messages", []).append(said)
        if request.args["error"] == "access_denied":
            return error_page(session, 401, "Unauthorized")
        return error_page(session, 500, "AuthorizationError")
    pending = session.get(PASSPORT_KEY, {}).pop("state", None)
    if not session.get(PASSPORT_KEY):
        session.pop(PASSPORT_KEY, None)
    if not pending or pending.get("handle") != request.args.get("state"):
        print(f"callback state {request.args.get('state')!r} != pending {pending and pending.get('handle')!r}",
              file=sys.stderr, flush=True)
        session.setdefault("messages", []).append(STATE_MISMATCH if pending else STATE_MISSING)
        return error_page(session, 403, "Forbidden")
    # node-oauth's getOAuthAccessToken: client_secret_post, form-encoded.
    r = backend.post(TOKEN_URL, data={"grant_type": "authorization_code", "redirect_uri": CALLBACK_URL,
                                      "code_verifier": pending["verifier"], "client_id": CLIENT_ID,
                                      "client_secret": CLIENT_SECRET, "code": request.args.get("code", "")},
                     timeout=10)
    if r.status_code != 200:
        # passport-oauth2 _createOAuthError: TokenError(error_description, error), status 500.
        try:
            said = r.json().get("error_description") or r.json().get("error")
        except ValueError:
            said = "Failed to obtain access token"
        session.setdefault("messages", []).append(str(said))
        return error_page(session, 500, "TokenError")
    tokens = r.json()
    # The verify callback: who signed in, read from the id_token's payload (display only, not verified).
    claims = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[1] + "=="))
    session["passport"] = {"user": {"sub": claims["sub"], "scope": tokens.get("scope", "")}}
    resp = make_response("Found. Redirecting to /", 302)
    resp.headers["Location"] = "/"
    resp.content_type = "text/plain; charset=utf-8"
    return save_session(resp, session)


def main():
    global CALLBACK_URL
    cert, key, portfile = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ctx)
    CALLBACK_URL = f"https://{HOST}:{srv.server_port}/callback"
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_port))
    os.replace(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
