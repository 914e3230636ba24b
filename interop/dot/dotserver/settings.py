"""The interop project's settings, from the environment that serve.py completes (interop/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    value = int(raw) if raw else default
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {raw!r}")
    return value


ISSUER = os.environ["ISSUER"]
ACCESS_TOKEN_TTL = _int("ACCESS_TOKEN_TTL", 5)
CODE_TTL = _int("CODE_TTL", 10)
ID_TOKEN_TTL = _int("ID_TOKEN_TTL", 300)
# a fresh signing key per run: nothing to keep, nothing to leak
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PRIVATE_KEY = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode("ascii")

SECRET_KEY = os.urandom(32).hex()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "dotserver.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "dotserver",
]
MIDDLEWARE = [
    "dotserver.harness.JournalMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DOT_DB"],
        # the ASGI handler runs every view in one thread; a lock wait longer than this is a bug
        "OPTIONS": {"timeout": 20},
    }
}
AUTHENTICATION_BACKENDS = ["dotserver.harness.AnyTestUserBackend"]
# django-oauth-toolkit stores client secrets hashed with the first of these. Django's default (PBKDF2,
# 1,000,000 rounds) costs about half a second of CPU per token request on a CI runner; a harness on a
# shared 2-core machine cannot pay that. Still a real PBKDF2 check, with fewer rounds.
PASSWORD_HASHERS = ["dotserver.harness.FastPBKDF2Hasher"]
LOGIN_URL = "/accounts/login/"
SESSION_COOKIE_NAME = "dot_sessionid"  # the test browser shares one cookie jar with the app under test
CSRF_COOKIE_NAME = "dot_csrftoken"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"err": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["err"], "level": "WARNING"},
}

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": RSA_PRIVATE_KEY,
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OAUTH2_VALIDATOR_CLASS": "dotserver.harness.ClaimsValidator",
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Name and user name",
        "email": "Email address",
        "offline_access": "Stay signed in",
    },
    "DEFAULT_SCOPES": ["openid"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_TTL,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": CODE_TTL,
    "ID_TOKEN_EXPIRE_SECONDS": ID_TOKEN_TTL,
    # a new refresh token on every refresh; presenting a rotated-out one revokes its whole family
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    # http://localhost/... redirect URIs match on any port, as http://127.0.0.1/... do (RFC 8252 7.3)
    "ALLOW_LOCALHOST_LOOPBACK": True,
    # RFC 9700 behaviour that django-oauth-toolkit 4.0 will make the default; on, so no legacy path warns
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
}
