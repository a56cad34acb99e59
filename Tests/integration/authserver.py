"""A real OAuth 2.0 authorization server for the analyzer's integration tests: Authlib's
AuthorizationServer (authorization code + PKCE, refresh token with rotation) in Flask, over TLS
on loopback. Run as: python3 authserver.py CERT KEY PORTFILE

It auto-approves every authorization request for one user (no login UI). Besides Authlib's own
endpoints it serves /cb (the client's redirect_uri, answering 200) and /login (an HTML sign-in
page, the classic wrong "token URL")."""
import base64
import json
import os
import secrets
import ssl
import sys
import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

LOCK = threading.Lock()


class User:
    id = 1

    def get_user_id(self):
        return self.id


USER = User()


class Client(ClientMixin):
    def __init__(self, client_id, secret, redirect_uris, auth_methods):
        self.client_id = client_id
        self.client_secret = secret
        self.redirect_uris = redirect_uris
        self.auth_methods = auth_methods

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        allowed = {"openid", "profile", "email", "offline_access"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(self.client_secret or "", client_secret or "")

    def check_endpoint_auth_method(self, method, endpoint):
        return method in self.auth_methods if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in ("authorization_code", "refresh_token")


class Code(AuthorizationCodeMixin):
    def __init__(self, code, client_id, redirect_uri, scope, challenge, method):
        self.code = code
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.code_challenge = challenge
        self.code_challenge_method = method
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_auth_time(self):
        return self.auth_time


class Token(TokenMixin):
    def __init__(self, data, client_id):
        self.access_token = data["access_token"]
        self.refresh_token = data.get("refresh_token")
        self.scope = data.get("scope", "")
        self.expires_in = data.get("expires_in", 3600)
        self.client_id = client_id
        self.issued_at = time.time()
        self.revoked = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return USER

    def get_client(self):
        return CLIENTS[self.client_id]


CLIENTS = {}
CODES = {}
TOKENS = []


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, req):
        with LOCK:
            CODES[code] = Code(code, req.client.client_id, req.payload.redirect_uri, req.scope,
                               req.payload.data.get("code_challenge"), req.payload.data.get("code_challenge_method"))

    def query_authorization_code(self, code, client):
        with LOCK:
            item = CODES.get(code)
        if item and item.client_id == client.client_id:
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return USER


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token):
        with LOCK:
            for t in TOKENS:
                if t.refresh_token == refresh_token and not t.revoked:
                    return t
        return None

    def authenticate_user(self, credential):
        return USER

    def revoke_old_credential(self, credential):
        credential.revoked = True


def save_token(data, req):
    with LOCK:
        TOKENS.append(Token(data, req.client.client_id))


def query_client(client_id):
    return CLIENTS.get(client_id)


class Validator(BearerTokenValidator):
    def authenticate_token(self, token_string):
        with LOCK:
            for t in TOKENS:
                if t.access_token == token_string:
                    return t
        return None


def create_app(base):
    app = Flask(__name__)
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
    CLIENTS["webapp"] = Client("webapp", "webapp-secret-0001", [f"{base}/cb"], ["client_secret_basic", "client_secret_post"])
    CLIENTS["spa"] = Client("spa", None, [f"{base}/cb"], ["none"])
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(CodeGrant, [CodeChallenge(required=False)])
    server.register_grant(RefreshGrant)
    require = ResourceProtector()
    require.register_token_validator(Validator())

    @app.route("/authorize")
    def authorize():
        return server.create_authorization_response(grant_user=USER)

    @app.route("/token", methods=["POST"])
    def token():
        return server.create_token_response()

    @app.route("/userinfo")
    @require_oauth_wrapper(require)
    def userinfo():
        return jsonify(sub="user-1", name="Test User")

    @app.route("/cb")
    def callback():
        return "<html><title>Signed in</title>ok</html>"

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return ("<html><head><title>Sign in to Example</title></head><body><form method=post>"
                "<input name=username><input type=password name=password></form></body></html>", 200,
                {"Content-Type": "text/html; charset=utf-8"})

    # An ES256 signing key published as a JWKS, and a token endpoint issuing id_tokens signed with it
    # (?tamper=1 alters the claims after signing), for the capture-time signature check.
    signing_key = ec.generate_private_key(ec.SECP256R1())
    numbers = signing_key.public_key().public_numbers()

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    @app.route("/jwks")
    def jwks():
        return jsonify(keys=[{"kty": "EC", "crv": "P-256", "kid": "es-1", "use": "sig", "alg": "ES256",
                              "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}])

    @app.route("/signed-token", methods=["POST"])
    def signed_token():
        header = b64(json.dumps({"alg": "ES256", "kid": "es-1", "typ": "JWT"}).encode())
        now = int(time.time())
        claims = {"iss": base, "aud": request.form.get("client_id", "webapp"), "sub": "user-1", "iat": now, "exp": now + 300,
                  "jti": secrets.token_hex(8)}
        payload = b64(json.dumps(claims).encode())
        r, s_ = decode_dss_signature(signing_key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
        signature = b64(r.to_bytes(32, "big") + s_.to_bytes(32, "big"))
        if request.args.get("tamper"):
            claims["sub"] = "admin"
            payload = b64(json.dumps(claims).encode())
        return jsonify(access_token=secrets.token_urlsafe(16), token_type="Bearer", expires_in=300,
                       id_token=f"{header}.{payload}.{signature}")

    @app.route("/.well-known/openid-configuration")
    def discovery():
        return jsonify(issuer=base, authorization_endpoint=f"{base}/authorize", token_endpoint=f"{base}/token",
                       userinfo_endpoint=f"{base}/userinfo")

    return app


def require_oauth_wrapper(require):
    def wrap(f):
        return require()(f)
    return wrap


def main():
    cert, key, portfile = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = make_server("127.0.0.1", 0, None, threaded=True, ssl_context=ctx)
    port = srv.server_port
    srv.app = create_app(f"https://localhost:{port}")
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
