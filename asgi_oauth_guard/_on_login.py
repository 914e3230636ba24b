"""The app's say at sign-in: the ``on_login`` hook, called once per sign-in inside the one code exchange."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeAlias

import anyio
from starlette.requests import Request

from ._protocol import TokenSet

__all__ = [
    "MAX_APP_CLAIMS_BYTES",
    "MAX_REFUSAL_LENGTH",
    "MAX_USER_ID_LENGTH",
    "LoginHook",
    "OnLogin",
    "Refusal",
    "SignIn",
    "SignInAccepted",
    "SignInRefused",
]

logger = logging.getLogger("asgi_oauth_guard")

# The session record is read on every request: what the app keeps in it stays small.
MAX_USER_ID_LENGTH = 256
MAX_APP_CLAIMS_BYTES = 4096
MAX_REFUSAL_LENGTH = 500


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignIn:
    """What ``on_login`` gets: a sign-in whose code was exchanged and whose identity was checked.

    ``provider`` is the provider's name in the guard, ``claims`` the identity (ID token, plus userinfo
    where read), ``tokens`` the provider's answer (access, refresh and ID token), ``request`` the callback
    request (its headers, the client's address).
    """

    provider: str
    claims: Mapping[str, Any]
    tokens: TokenSet = dataclasses.field(repr=False)
    request: Request = dataclasses.field(repr=False)

    @property
    def sub(self) -> str:
        return str(self.claims.get("sub", ""))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignInAccepted:
    """``on_login``'s yes: ``user_id`` is the app's own id for this user (``Identity.user_id``), ``claims``
    what the app wants at hand on every request (``Identity.app_claims``): JSON values, at most
    ``MAX_APP_CLAIMS_BYTES`` as JSON, beside the provider's claims, never replacing them."""

    user_id: str | None = None
    claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignInRefused:
    """``on_login``'s no: the user sees ``message`` (a page, or JSON for API clients), and no session is
    made. Keep it a sentence for people (at most ``MAX_REFUSAL_LENGTH`` characters)."""

    message: str


Decision: TypeAlias = "SignInAccepted | SignInRefused | None"
LoginHook: TypeAlias = Callable[[SignIn], "Decision | Awaitable[Decision]"]
"""``on_login``: gets a :class:`SignIn`, returns (or awaits) a :class:`SignInAccepted`, a
:class:`SignInRefused`, or ``None`` (accepted, nothing to keep)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    """An accepted sign-in, and what the app said to keep in its session."""

    user_id: str | None = None
    claims: dict[str, Any] | None = None


class Refusal(Exception):
    """A sign-in turned away after its code exchange: ``message`` is for the user, ``detail`` for the
    event (``on_login``, ``on_login_error``, ``step_up``). Never carries a token."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(detail)
        self.message = message
        self.detail = detail


ACCEPTED = Verdict()
FAILED_MESSAGE = "This app could not complete your sign-in. Please try again later."


class OnLogin:
    """Calls the app's hook and holds it to its bounds: what it returns, raises or breaks ends in a
    :class:`Verdict` or a :class:`Refusal`, never in another error."""

    def __init__(self, hook: LoginHook | None, *, timeout: float = 10.0) -> None:
        self._hook = hook  # checked with the guard's settings (_settings.GuardSettings)
        self._timeout = timeout

    @property
    def active(self) -> bool:
        return self._hook is not None

    async def decide(self, sign_in: SignIn) -> Verdict:
        if self._hook is None:
            return ACCEPTED
        try:
            answer = self._hook(sign_in)
            if inspect.isawaitable(answer):
                # The exchange runs shielded, so that a code is never half spent: a hook that hangs would
                # hold its callback and every duplicate for ever, unless its wait is bounded here.
                with anyio.move_on_after(self._timeout) as waited:
                    answer = await answer
                if waited.cancelled_caught:
                    logger.error(
                        "on_login did not answer within %.0f s for a sign-in with %s; the sign-in is refused",
                        self._timeout,
                        sign_in.provider,
                    )
                    raise Refusal(FAILED_MESSAGE, "on_login_error")
        except Refusal:
            raise
        except Exception as exc:
            # The app's own failure: logged with its traceback, and the user is turned away, not served a 500.
            logger.error(
                "on_login raised %s for a sign-in with %s; the sign-in is refused",
                type(exc).__name__,
                sign_in.provider,
                exc_info=exc,
            )
            raise Refusal(FAILED_MESSAGE, "on_login_error") from None
        return _verdict(answer, sign_in.provider)


def _verdict(answer: object, provider: str) -> Verdict:
    if answer is None:
        return ACCEPTED
    if isinstance(answer, SignInRefused):
        message = answer.message if isinstance(answer.message, str) else ""
        message = " ".join(message.split())
        if not message:
            logger.error("on_login refused a sign-in with an empty message; showing a generic one")
            message = FAILED_MESSAGE
        elif len(message) > MAX_REFUSAL_LENGTH:
            logger.warning(
                "on_login's refusal message is %d characters; showing the first %d",
                len(message),
                MAX_REFUSAL_LENGTH,
            )
            message = message[: MAX_REFUSAL_LENGTH - 1] + "…"
        raise Refusal(message, "on_login")
    if not isinstance(answer, SignInAccepted):
        return _broken(
            f"on_login returned {type(answer).__name__}; "
            "return SignInAccepted(...), SignInRefused(...) or None",
            provider,
        )
    user_id = answer.user_id
    if user_id is not None and (
        not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_LENGTH
    ):
        return _broken(
            f"on_login's user_id must be a non-empty string of at most {MAX_USER_ID_LENGTH} characters",
            provider,
        )
    claims: dict[str, Any] | None = None
    if answer.claims:
        if not isinstance(answer.claims, Mapping):
            return _broken("on_login's claims= must be a mapping of JSON values", provider)
        try:
            encoded = json.dumps(dict(answer.claims), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return _broken(f"on_login's claims= are not JSON: {type(exc).__name__}", provider)
        if len(encoded.encode()) > MAX_APP_CLAIMS_BYTES:
            # Refused rather than trimmed: a session missing some of what the app decides on is worse
            # than a sign-in that says, at once and in the log, what to fix.
            return _broken(
                f"on_login's claims= take {len(encoded.encode())} bytes as JSON, over the "
                f"{MAX_APP_CLAIMS_BYTES}-byte bound (the session is read on every request): keep ids, not "
                "documents",
                provider,
            )
        claims = json.loads(encoded)
    return Verdict(user_id=user_id, claims=claims)


def _broken(problem: str, provider: str) -> NoReturn:
    logger.error("%s; the sign-in with %s is refused", problem, provider)
    raise Refusal(FAILED_MESSAGE, "on_login_error")
