"""What the guard does when the server starts: check the provider, and warn about settings that half-work.

At lifespan startup (or :meth:`OAuthGuard.check`) the guard fetches discovery and the key set. A mistake that
cannot heal (a wrong issuer, a 404, an answer that is not JSON) fails startup with a ConfigurationError naming
the fix, so the server exits with it instead of serving an app where nobody can sign in. A provider that does
not answer (yet) is logged and retried in the background; startup goes on, and requests that need the
provider get a 503 until it answers.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio
import httpx
from anyio.abc import TaskGroup
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ConfigurationError, ProviderUnavailable
from ._logs import log_under_uvicorn
from .providers._client import ProviderClient
from .providers._registry import Providers

logger = logging.getLogger("asgi_oauth_guard")

__all__ = ["Startup", "setting_warnings"]

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def setting_warnings(*, redirect_uri: str | None, same_site: str, secure: bool | None) -> list[str]:
    """Settings that work, but not as people expect: each a sentence for a WARNING line at startup."""
    warnings = []
    url = httpx.URL(redirect_uri) if redirect_uri is not None else None
    if url is not None and url.scheme == "http" and not is_loopback(url.host):
        warnings.append(
            f"the public URL {redirect_uri!r} is http:// on {url.host!r}: session cookies travel unencrypted "
            "and most providers refuse http redirect URIs except on localhost; serve the app over https "
            "and set public_url='https://...'"
        )
    if same_site == "none" and secure is not True:
        warnings.append(
            "cookie_same_site='none' without https: browsers drop SameSite=None cookies that are not "
            "Secure, so sign-ins fail; serve over https (public_url='https://...') or use 'lax'"
            if url is None or url.scheme == "http"
            else "cookie_same_site='none' works only for requests that come over https"
        )
    return warnings


class Startup:
    """The guard's part of the lifespan: checks at startup, closing its HTTP client at shutdown."""

    def __init__(
        self,
        *,
        providers: Providers,
        warnings: Sequence[str],
        aclose: Callable[[], Awaitable[None]] | None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self._providers = providers
        self._warnings = tuple(warnings)
        self._aclose = aclose
        self._retry_delays = tuple(retry_delays)
        self._announced = False
        self._retrying: anyio.CancelScope | None = None

    def announce(self) -> None:
        """Once per guard, at startup (or the first request when the server has no lifespan)."""
        if self._announced:
            return
        self._announced = True
        log_under_uvicorn()
        for warning in self._warnings:
            logger.warning("%s", warning)

    async def check(self) -> None:
        """Check every provider; a mistake in any raises ``ConfigurationError``, and one that does not
        answer ``ProviderUnavailable`` (after the others are checked)."""
        self.announce()
        silent = await self._check(list(self._providers))
        if silent:
            raise silent[0][1]

    async def _check(
        self, clients: Sequence[ProviderClient]
    ) -> list[tuple[ProviderClient, ProviderUnavailable]]:
        """Check these providers; those that did not answer, with why."""
        silent: list[tuple[ProviderClient, ProviderUnavailable]] = []
        named = len(self._providers) > 1
        for client in clients:
            try:
                await client.check()
            except ConfigurationError as exc:
                if named:
                    raise ConfigurationError(f"provider {client.name!r}: {exc}") from None
                raise
            except ProviderUnavailable as exc:
                silent.append(
                    (client, ProviderUnavailable(f"provider {client.name!r}: {exc}") if named else exc)
                )
        return silent

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app's lifespan with the guard's startup check before its ``startup.complete``.

        When the check fails, the server gets ``startup.failed`` and exits; the app, whose startup went
        well, is shut down by the guard, so it closes what it opened instead of being cancelled."""
        received = False
        failed = False
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:

            async def receive_and_close() -> Message:
                nonlocal received
                message: Message = {"type": "lifespan.shutdown"} if failed else await receive()
                received = True
                if message["type"] == "lifespan.shutdown":
                    await self._shutdown()
                return message

            async def send_after_check(message: Message) -> None:
                nonlocal failed
                if failed:
                    return  # the app's shutdown after a failed check: the server is not listening
                if message["type"] == "lifespan.startup.complete":
                    problem = await self._startup(tasks)
                    if problem is not None:
                        failed = True
                        message = {"type": "lifespan.startup.failed", "message": problem}
                await send(message)

            try:
                await app(scope, receive_and_close, send_after_check)
            except Exception as exc:
                if received:
                    failure = exc
                else:
                    # The app does not speak lifespan (a WSGI app through asgiref, a bare ASGI app): the
                    # guard answers it, so its startup check still runs and its client is still closed.
                    logger.debug("the app does not support lifespan (%s); the guard answers it", exc)
                    await self._own_lifespan(receive, send, tasks)
            tasks.cancel_scope.cancel()
        if failure is not None and not failed:
            raise failure

    async def _own_lifespan(self, receive: Receive, send: Send, tasks: TaskGroup) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                problem = await self._startup(tasks)
                if problem is not None:
                    await send({"type": "lifespan.startup.failed", "message": problem})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _startup(self, tasks: TaskGroup) -> str | None:
        """The check; the message to fail startup with, or None (an unreachable provider is retried)."""
        self.announce()
        try:
            silent = await self._check(list(self._providers))
        except ConfigurationError as exc:
            return f"asgi-oauth-guard: {exc}"
        for _, why in silent:
            logger.warning(
                "the provider did not answer at startup (%s): sign-ins get a 503 until it does; "
                "retrying in the background",
                why,
            )
        if silent:
            tasks.start_soon(self._retry, [client for client, _ in silent])
        return None

    async def _retry(self, clients: list[ProviderClient]) -> None:
        with anyio.CancelScope() as self._retrying:
            attempt = 0
            while clients:
                await anyio.sleep(self._retry_delays[min(attempt, len(self._retry_delays) - 1)])
                attempt += 1
                try:
                    silent = await self._check(clients)
                except ConfigurationError as exc:
                    logger.error("the provider answers, but sign-in cannot work: %s", exc)
                    return
                except Exception:
                    logger.exception("checking the provider failed; retrying")
                    continue
                for _, why in silent:
                    logger.warning("the provider still does not answer (%s); retrying", why)
                answered = [client for client in clients if client not in {c for c, _ in silent}]
                clients = [client for client, _ in silent]
                for client in answered:
                    named = f" {client.name!r}" if len(self._providers) > 1 else ""
                    logger.info("the provider%s answers: sign-in is available", named)

    async def _shutdown(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
        if self._aclose is not None:
            await self._aclose()
