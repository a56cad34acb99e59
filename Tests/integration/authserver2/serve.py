"""A second real authorization server for the analyzer's integration tests: django-oauth-toolkit
(an OpenID Provider on Django) over TLS on loopback, with Django's real login form (CSRF-protected),
DOT's consent page, PKCE required, refresh token rotation with reuse protection, and a short
authorization code lifetime (AUTHSERVER2_CODE_SECONDS, 3 s by default).

Run as: python3 serve.py CERT KEY PORTFILE
The SQLite database goes beside PORTFILE. Endpoints: /o/authorize/, /o/token/, /o/userinfo/,
/o/.well-known/openid-configuration, /o/.well-known/jwks.json, /accounts/login/ (the sign-in page),
/cb (the clients' redirect_uri, answering 200). Clients: webapp (confidential, secret
webapp-secret-0001), spa (public). User: alice / alice-password-0001."""
import os
import ssl
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    cert, key, portfile = sys.argv[1:4]
    os.environ.setdefault("AUTHSERVER2_DATA", str(Path(portfile).resolve().parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "idp.settings"
    sys.path.insert(0, str(HERE))
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from werkzeug.serving import make_server

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = make_server("127.0.0.1", 0, get_wsgi_application(), threaded=True, ssl_context=ctx)
    port = srv.server_port
    call_command("bootstrap", f"https://localhost:{port}")
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
