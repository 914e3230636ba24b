"""One httpx transport for several embedded providers: each request goes to the provider of its origin."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from ._provider import OAuthTestProvider

__all__ = ["providers_transport"]


class _ByOrigin(httpx.AsyncBaseTransport):
    def __init__(self, providers: Iterable[OAuthTestProvider]) -> None:
        self._routes: dict[str, httpx.AsyncBaseTransport] = {}
        for provider in providers:
            transport = provider.transport()
            urls = [provider.issuer]
            if provider.mimic is not None:
                urls += provider.mimic.routes()  # a mimic's endpoints may live on other hosts (GitHub's API)
            for origin in dict.fromkeys(_origin(httpx.URL(url)) for url in urls):
                if origin in self._routes:
                    raise ValueError(f"two providers answer at {origin}: give each its own issuer host")
                self._routes[origin] = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self._routes.get(_origin(request.url))
        if route is None:
            raise httpx.ConnectError(
                f"no embedded provider answers at {_origin(request.url)}", request=request
            )
        return await route.handle_async_request(request)


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def providers_transport(*providers: OAuthTestProvider) -> httpx.AsyncBaseTransport:
    """An httpx transport that sends each request to the embedded provider whose issuer (or, for a
    mimic, one of whose endpoints) has its origin (scheme, host and port), for a guard with several
    providers; any other origin fails to connect."""
    return _ByOrigin(providers)
