"""Django settings for the second real authorization server of the analyzer's integration tests:
django-oauth-toolkit (DOT) as an OpenID Provider, with Django's own login form and DOT's consent page.
The SQLite database lives in the directory named by AUTHSERVER2_DATA (a test's temp dir)."""
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DATA = Path(os.environ["AUTHSERVER2_DATA"])

SECRET_KEY = "authserver2-test-only-" + os.urandom(16).hex()
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "idp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "idp.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA / "db.sqlite3"),
                         "OPTIONS": {"timeout": 20}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
LOGIN_URL = "/accounts/login/"

LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "loggers": {"oauth2_provider": {"handlers": ["stderr"], "level": "INFO"}}}

# An RSA key for signing id_tokens, made at start-up.
_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OIDC_KEY_PEM = _key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": OIDC_KEY_PEM,
    "SCOPES": {"openid": "OpenID Connect", "profile": "Your profile", "email": "Your email address",
               "read": "Read access"},
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    # Short, so the expired-code scenario runs fast.
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": int(os.environ.get("AUTHSERVER2_CODE_SECONDS", "3")),
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REQUEST_APPROVAL_PROMPT": "force",  # the consent page every time
}
