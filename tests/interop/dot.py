"""django-oauth-toolkit (pinned in pyproject.toml's test extra) run from interop/dot/ on loopback.

``running_dot_provider()`` starts ``python interop/dot/serve.py`` (a small Django project: SQLite in a temporary
folder, an RS256 key made at start, one confidential client that skips the consent page) on a free port and
stops it at the end. Its test-only admin routes answer like interop/server.mjs's, so ``InteropProvider``'s
helpers and ``guard_app.Journal`` read it as they read oidc-provider. Sign-in is django.contrib.auth's login form,
which ``sign_in`` fills in with httpx: any well-formed user name with the run's password is a user.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from .conftest import (
    INTEROP_DIR,
    POST_LOGOUT_REDIRECT_URIS,
    REPO,
    Authorization,
    InteropProvider,
    code_grant,
    pkce_pair,
    refresh_grant,
    serving,
)

DOT_VERSION = "3.4.1"
SERVE = INTEROP_DIR / "dot" / "serve.py"
ACCESS_TOKEN_TTL = 5
CODE_TTL = 10
# django-oauth-toolkit ignores the port of http://127.0.0.1 and (ALLOW_LOCALHOST_LOOPBACK) http://localhost
# redirect URIs, as RFC 8252 7.3 asks: an app on any free port can use these.
REDIRECT_URIS = (
    "http://127.0.0.1/auth/callback",
    "http://localhost/auth/callback",
    "http://127.0.0.1/callback",
)
TOKEN_PATH = "/token/"
REVOCATION_PATH = "/revoke_token/"
AUTHORIZE_PATH = "/authorize/"
LOGIN_PATH = "/accounts/login/"


@dataclass(frozen=True)
class DotProvider(InteropProvider):
    """A running django-oauth-toolkit: where it is, its client, and the password every test user has."""

    user_password: str = ""

    def url(self, path: str) -> str:
        """A URL at the server's root: the login form and the admin routes (the issuer may have a path)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def endpoint(self, path: str) -> str:
        """A URL of django-oauth-toolkit's own (``/token/``, ``/userinfo/``...): under the issuer."""
        return f"{self.issuer}{path}"

    @property
    def token_endpoint(self) -> str:
        return self.endpoint(TOKEN_PATH)

    @property
    def revocation_endpoint(self) -> str:
        return self.endpoint(REVOCATION_PATH)


def _require_dot() -> None:
    try:
        installed = importlib.metadata.version("django-oauth-toolkit")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != DOT_VERSION:
        pytest.fail(
            f"django-oauth-toolkit {DOT_VERSION} is not installed in this Python ({installed or 'none'} is): "
            'the interop tests run it from interop/dot/. Install the test extra: pip install -e ".[test]"',
            pytrace=False,
        )


_TEMPLATE_DIR: list[str] = []


def _database_template() -> str:
    """Where this test run keeps a migrated empty database for the servers it starts (serve.py)."""
    if not _TEMPLATE_DIR:
        _TEMPLATE_DIR.append(tempfile.mkdtemp(prefix="interop-dot-template-"))
        atexit.register(shutil.rmtree, _TEMPLATE_DIR[0], ignore_errors=True)
    return os.path.join(_TEMPLATE_DIR[0], "migrated.sqlite3")


@contextmanager
def running_dot_provider(
    *,
    access_token_ttl: int = ACCESS_TOKEN_TTL,
    code_ttl: int = CODE_TTL,
    redirect_uris: tuple[str, ...] = REDIRECT_URIS,
    mount: str = "",
) -> Iterator[DotProvider]:
    """Start ``interop/dot/serve.py`` on a free loopback port with a fresh database; stop it on exit.

    ``mount="o/"``: django-oauth-toolkit's URLs under ``/o/`` (its documentation's set-up), the issuer with them."""
    _require_dot()
    client_id = f"dot-{secrets.token_hex(4)}"
    client_secret = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(12)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("ISSUER", "PORT", "DOT_DB")},
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "USER_PASSWORD": password,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "POST_LOGOUT_REDIRECT_URIS": ",".join(POST_LOGOUT_REDIRECT_URIS),
        "ACCESS_TOKEN_TTL": str(access_token_ttl),
        "CODE_TTL": str(code_ttl),
        "MOUNT": mount,
        "DOT_DB_TEMPLATE": _database_template(),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    server = serving(
        [sys.executable, str(SERVE)],
        cwd=SERVE.parent,
        env=env,
        what="django-oauth-toolkit",
        command=f"python {SERVE.relative_to(REPO)}",
    )
    with server as (issuer, output):
        yield DotProvider(
            issuer=issuer,
            client_id=client_id,
            client_secret=client_secret,
            port=int(urlsplit(issuer).port or 80),
            redirect_uris=tuple(redirect_uris),
            access_token_ttl=access_token_ttl,
            code_ttl=code_ttl,
            output=output,
            user_password=password,
        )
    assert "Traceback" not in "".join(output), "django-oauth-toolkit logged a traceback:\n" + "".join(output)


# --------------------------------------------------------------------------------------------------------
# signing in through django.contrib.auth's login form


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


async def sign_in(
    client: httpx.AsyncClient,
    provider: DotProvider,
    url: str,
    *,
    user: str,
    redirect_uri: str,
    max_hops: int = 8,
) -> str:
    """From an authorization request URL to the Location that points at ``redirect_uri`` (not loaded).

    ``client`` is the browser (it keeps the provider's session cookie). Without a provider session, the
    authorization endpoint sends it to the login form, which is filled in as ``user``; then the client skips
    consent and redirects with a code (or an error)."""
    target = httpx.URL(url)
    for _ in range(max_hops):
        response = await client.get(target, follow_redirects=False)
        if response.status_code == 200 and urlsplit(str(target)).path == LOGIN_PATH:
            fields = {name: unescape(value) for name, value in _HIDDEN.findall(response.text)}
            assert "csrfmiddlewaretoken" in fields, response.text[:500]
            response = await client.post(
                target,
                data={**fields, "username": user, "password": provider.user_password},
                headers={"referer": str(target)},
                follow_redirects=False,
            )
        assert response.is_redirect, f"{response.status_code} from {target}: {response.text[:500]}"
        location = urljoin(str(target), response.headers["location"])
        if location.split("?", 1)[0] == redirect_uri:
            return location
        target = httpx.URL(location)
    raise AssertionError(f"no redirect to {redirect_uri} after {max_hops} hops (last: {target})")


async def authorize(
    client: httpx.AsyncClient,
    provider: DotProvider,
    *,
    redirect_uri: str,
    user: str,
    scope: str = "openid profile email",
    **extra: str,
) -> Authorization:
    """An authorization request of a client of our own (PKCE S256, state, nonce), signed in as ``user``."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "client_id": provider.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    url = str(httpx.URL(provider.endpoint(AUTHORIZE_PATH), params=params))
    location = await sign_in(client, provider, url, user=user, redirect_uri=redirect_uri)
    return Authorization(redirect_uri, verifier, state, nonce, location)


async def token_request(
    client: httpx.AsyncClient, provider: DotProvider, data: dict[str, str], *, secret: str | None = None
) -> httpx.Response:
    """POST to the token endpoint, the client authenticated with client_secret_basic."""
    return await client.post(
        provider.token_endpoint, data=data, auth=(provider.client_id, secret or provider.client_secret)
    )


async def exchange_code(
    client: httpx.AsyncClient, provider: DotProvider, authorization: Authorization, **overrides: str
) -> httpx.Response:
    return await token_request(client, provider, code_grant(authorization, **overrides))


async def refresh(client: httpx.AsyncClient, provider: DotProvider, refresh_token: str) -> httpx.Response:
    return await token_request(client, provider, refresh_grant(refresh_token))
