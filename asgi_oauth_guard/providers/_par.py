"""Pushed Authorization Requests (RFC 9126), without I/O.

With PAR the authorization parameters never travel through the browser: the guard POSTs them, with its
client authentication, to the provider's ``pushed_authorization_request_endpoint``, gets a one-time
``request_uri`` back, and sends the browser to the authorization endpoint with only ``client_id`` and that
``request_uri``. Nothing the browser (or an extension, or a proxy log) sees can be altered or replayed into
another request, and the provider has checked the request before the user ever sees a page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from .._errors import ConfigurationError, ProviderUnavailable
from .._protocol import misconfiguration_fix
from ._metadata import Endpoints

__all__ = ["pushed_body", "pushed_redirect", "request_uri_of", "uses_par"]


def uses_par(use_par: bool | None, endpoints: Endpoints, *, provider: str) -> bool:
    """Whether this provider's sign-ins push their request: when asked (``use_par=True``), or when the
    provider requires it (``require_pushed_authorization_requests``) and ``use_par`` is not ``False``.
    ``ConfigurationError`` when that cannot work, naming the fix."""
    required = endpoints.require_pushed_authorization_requests
    if use_par is False and required:
        raise ConfigurationError(
            f"provider {provider!r} requires pushed authorization requests (its metadata says "
            "require_pushed_authorization_requests): remove use_par=False"
        )
    wanted = use_par is True or required
    if wanted and endpoints.pushed_authorization_request_endpoint is None:
        raise ConfigurationError(
            f"provider {provider!r}: pushed authorization requests need its "
            "pushed_authorization_request_endpoint, which its metadata does not name: give "
            "Provider(pushed_authorization_request_endpoint=...), or use_par=None"
        )
    return wanted


def pushed_body(authorize_url: str) -> str:
    """The form body to push: exactly the parameters the authorization URL would have carried."""
    return urlsplit(authorize_url).query


def pushed_redirect(authorization_endpoint: str, *, client_id: str, request_uri: str) -> str:
    """Where the browser goes instead: ``client_id`` and the ``request_uri`` only (RFC 9126 section 4)."""
    query = urlencode({"client_id": client_id, "request_uri": request_uri})
    return f"{authorization_endpoint}{'&' if '?' in authorization_endpoint else '?'}{query}"


def request_uri_of(status: int, body: Any, *, redirect_uri: str | None = None) -> str:
    """The ``request_uri`` from the PAR endpoint's answer (RFC 9126 section 2.2), or the error it means.

    No answer worth reading (5xx, 429, an answer that is not a JSON object, no ``request_uri``):
    ``ProviderUnavailable``, a 503 with Retry-After. A refusal (section 2.3: ``invalid_client``, a
    refused ``redirect_uri`` or scope, a 404 from a wrong endpoint URL): ``ConfigurationError``, which
    no retry and no new sign-in can heal, logged with the fix and shown as the misconfigured page.
    """
    if status >= 500 or status in (408, 429):
        raise ProviderUnavailable(f"the pushed authorization request answered {status}")
    error = body.get("error") if isinstance(body, dict) else None
    if status >= 400:
        if not isinstance(error, str) or not error or len(error) > 100 or not error.isprintable():
            raise ConfigurationError(
                f"the pushed authorization request answered {status} without an OAuth error: check "
                "the provider's pushed_authorization_request_endpoint"
            )
        if error == "temporarily_unavailable":
            raise ProviderUnavailable("the pushed authorization request said temporarily_unavailable")
        raise ConfigurationError(
            f"the pushed authorization request was refused ({error}): "
            f"{misconfiguration_fix(error, redirect_uri=redirect_uri)}"
        )
    request_uri = body.get("request_uri") if isinstance(body, dict) else None
    if status not in (200, 201) or not isinstance(request_uri, str) or not request_uri:
        raise ProviderUnavailable(f"the pushed authorization request answered {status} without a request_uri")
    return request_uri
