"""The routes the guard owns: login, callback (exactly-once code exchange), logout."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope

from ._crypto import Keyring, b64e, seal, unseal
from ._ending import SessionEnder
from ._errors import ConfigurationError, IDTokenError, ProviderUnavailable, TokenEndpointError
from ._events import EventHook, GuardEvent, emit
from ._http import BadRequest, ForwardedTrust, cookie, headers_map, query_params, request_origin, root_path
from ._login_params import LoginParams, check_step_up, read_requested
from ._offline import OfflineGrants
from ._on_login import OnLogin, Refusal, SignIn
from ._pages import NO_STORE, Pages, bad_request
from ._paths import Prefixes
from ._protocol import (
    TokenSet,
    authorize_url,
    classify_code_error,
    is_authorization_misconfiguration,
    is_client_misconfiguration,
    is_prefetch,
    misconfiguration_fix,
    new_pkce,
    new_state,
    safe_next,
    stored_next,
)
from ._reasons import Reason
from ._refresh import Refresher, revoke
from ._relogin import STOP_REASONS, Relogin, login_url
from ._session import Outcome, Session, Transaction
from ._sessions import Sessions
from ._store import Store
from ._telemetry import NO_TELEMETRY, Telemetry
from ._worker_advice import WorkerAdvice
from .providers._client import ProviderClient
from .providers._quirks import error_reason, wants_consent
from .providers._registry import Providers

if TYPE_CHECKING:
    from ._cookies import CookieJar
    from ._signout import SignOutGate

logger = logging.getLogger("asgi_oauth_guard")

TX_PREFIX = "tx:"
CLAIM_PREFIX = "claim:"
OUTCOME_PREFIX = "out:"
CODE_PREFIX = "code:"
BROWSER_PREFIX = "b:"
MAX_STATE_LENGTH = 256
MAX_CODE_LENGTH = 2048
# Duplicate callbacks parked at once in this process, waiting for a winner; more get a 503 at once.
MAX_WAITING_DUPLICATES = 1000
# What an outcome that this browser's keys cannot open reads as.
_NOT_OURS = Outcome(ok=False, next="/", reason="state_expired")


class Flows:
    def __init__(
        self,
        *,
        providers: Providers,
        store: Store,
        sessions: Sessions,
        refresher: Refresher,
        keyring: Keyring,
        cookies: CookieJar,
        relogin: Relogin,
        sign_out: SignOutGate,
        pages: Pages,
        redirect_uri: str | None,
        public_base: str | None = None,
        callback_path: str,
        login_path: str,
        trust: ForwardedTrust,
        transaction_ttl: float,
        max_transactions: int,
        code_lifetime: float,
        duplicate_wait: float,
        duplicate_window: float,
        max_waiting_duplicates: int = MAX_WAITING_DUPLICATES,
        post_logout_redirect: str,
        rp_initiated_logout: bool,
        api_prefixes: Prefixes,
        clock: Callable[[], float],
        on_event: EventHook | None,
        ender: SessionEnder | None = None,
        advice: WorkerAdvice | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
        offline: Mapping[str, OfflineGrants] | None = None,
        on_login: OnLogin | None = None,
        login_params: LoginParams | None = None,
    ) -> None:
        self._on_login = on_login if on_login is not None else OnLogin(None)
        self._allowed = login_params if login_params is not None else LoginParams()
        self._telemetry = telemetry
        self._offline: Mapping[str, OfflineGrants] = offline or {}
        self._ender = ender
        self._advice = advice
        self._providers = providers
        self._store = store
        self._sessions = sessions
        self._refresher = refresher
        self._keys = keyring
        self._cookies = cookies
        self._relogin = relogin
        self._sign_out = sign_out
        self._pages = pages
        self._redirect_uri = redirect_uri
        self._public_base = public_base
        self._callback_path = callback_path
        self._canonical = cookie_host(redirect_uri) if redirect_uri is not None else None
        self._canonical_base = redirect_uri[: -len(callback_path)] if redirect_uri is not None else ""
        self._warned_origin = False
        self._login_path = login_path
        self._trust = trust
        self._tx_ttl = transaction_ttl
        self._max_tx = max_transactions
        self._code_lifetime = code_lifetime
        self._duplicate_wait = duplicate_wait
        self._duplicate_window = duplicate_window
        self._max_waiting = max_waiting_duplicates
        self._duplicates_waiting = 0
        self._post_logout = post_logout_redirect
        self._rp_logout = rp_initiated_logout
        self._api_prefixes = api_prefixes
        self._clock = clock
        self._on_event = on_event
        self._waiting: dict[str, anyio.Event] = {}

    # -- login ---------------------------------------------------------------------------------------

    async def login(self, scope: Scope) -> ASGIApp:
        if scope["method"] not in ("GET", "HEAD"):
            return _method_not_allowed("GET")
        params = query_params(scope)
        moved = self._to_canonical_origin(scope, params)
        if moved is not None:
            return moved
        next_path = stored_next(
            safe_next(params.get("next"), default=root_path(scope) + "/"), default=root_path(scope) + "/"
        )
        reason = _reason(params.get("reason"))
        if reason in STOP_REASONS:
            return await self._pages.for_reason(
                Request(scope),
                reason,
                sign_in_url=login_url(root_path(scope), self._login_path, next_path=next_path),
            )
        client = self._providers.get(params.get("provider"))
        if client is None or ("provider" not in params and len(self._providers) > 1):
            return await self._choose(scope, next_path, unknown="provider" in params)
        requested = read_requested(params, client.provider.login_params or self._allowed)
        if scope["method"] == "HEAD" or is_prefetch(headers_map(scope)):
            return Response(status_code=204, headers={**NO_STORE, "Vary": "Sec-Purpose"})
        provider = await client.endpoints()
        browser_id, binding_cookie = self._browser(scope)
        redirect_uri = self._redirect_uri or self._absolute(scope, self._callback_path)
        state = new_state()
        verifier, challenge = new_pkce()
        nonce = new_state() if client.openid else None
        extra, consent = await self._login_params(scope, client)
        extra = requested.merged(extra)
        # A link that asked for consent itself counts: a sign-in without a refresh token is not asked again.
        consent = consent or "consent" in extra.get("prompt", "").split()
        url = authorize_url(
            provider.authorization_endpoint,
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=requested.scope(client.scopes),
            state=state,
            code_challenge=challenge,
            nonce=nonce,
            extra=extra,
            resources=grants.settings.resources if (grants := self._offline.get(client.name)) else (),
        )
        # Pushed first (PAR): a push the provider refuses or does not answer leaves no sign-in in flight
        # here, so retries cannot crowd out this browser's other tabs.
        url = await client.authorization_redirect(provider, url)
        tx = Transaction(
            verifier=verifier,
            nonce=nonce,
            redirect_uri=redirect_uri,
            next=next_path,
            created_at=self._clock(),
            provider=client.name,
            consent=consent,
            max_age=requested.max_age,
            acr_values=requested.acr_values,
        )
        await self._store.set(
            TX_PREFIX + state,
            seal(self._keys.derive("tx", browser_id), state.encode(), tx.dumps()),
            ttl=self._tx_ttl,
        )
        await self._cap_transactions(browser_id, state)
        response = RedirectResponse(url, status_code=303, headers=NO_STORE)
        self._cookies.set_binding(response, scope, binding_cookie)
        return response

    async def _login_params(self, scope: Scope, client: ProviderClient) -> tuple[Mapping[str, str], bool]:
        """The authorization request's extra parameters, and whether they ask for consent. With offline
        access, its own, and its consent parameters when this browser's user lost their grant; without,
        the provider's consent parameters (``Quirks.consent_params``) when this browser's session of it
        holds no refresh token. Only then, so users are not asked to consent at every sign-in (Google:
        ``prompt=consent`` is what makes it issue a new refresh token, and each one counts against its
        limit of 100 per user)."""
        grants = self._offline.get(client.name)
        value = cookie(scope, self._cookies.session_name)
        opened = self._keys.open_session_cookie(value) if value else None
        wanted = client.provider.quirks.consent_params
        if opened is None or (grants is None and not wanted):
            params = dict(client.provider.authorize_params)
            if grants is not None:
                params.update(grants.settings.authorize_params)
            return params, False
        # The browser's last session, even one whose tokens were dropped when the provider refused them.
        session = await self._sessions.load(*opened)
        ours = session is not None and (session.provider or self._providers.default.name) == client.name
        if grants is None:
            held = (
                session is None or not ours or (session.tokens is not None and session.tokens.refresh_token)
            )
            consent = wants_consent(client.provider.quirks, holds_refresh_token=bool(held))
            return {**client.provider.authorize_params, **consent}, bool(consent)
        params = {**client.provider.authorize_params, **grants.settings.authorize_params}
        sub = session.sub if session is not None and ours else None
        if sub is not None and await grants.consent_needed(sub):
            params.update(grants.settings.consent_params)
            return params, True
        return params, False

    async def _choose(self, scope: Scope, next_path: str, *, unknown: bool) -> ASGIApp:
        """The chooser: several providers and none named (or one this guard does not have: 400)."""
        request = Request(scope)
        choices = [
            (
                client.provider.label,
                login_url(root_path(scope), self._login_path, next_path=next_path, provider=client.name),
            )
            for client in self._providers
        ]
        if unknown:
            logger.info("a sign-in named a provider this app does not have")
            if not self._pages.wants_page(request):
                return bad_request(
                    f"unknown provider; this app signs in with: {', '.join(self._providers.names)}"
                )
            status = 400
        elif not self._pages.wants_page(request):
            return bad_request(f"name a provider: ?provider= one of {', '.join(self._providers.names)}")
        else:
            status = 200
        return await self._pages.page(
            request,
            "chooser",
            message=self._pages.text("chooser.message"),
            status=status,
            choices=choices,
            headers=NO_STORE,
        )

    def _to_canonical_origin(self, scope: Scope, params: Mapping[str, str]) -> Response | None:
        """A sign-in started on another origin of this app (``127.0.0.1`` for ``localhost``, a bare IP)
        moves to the public one first: the sign-in cookie must be set where the callback will read it.

        Once only (``moved=1``): behind a proxy the guard does not trust, every request shows the proxy's
        address, and moving again would loop; then the sign-in goes on where it is, as before."""
        if self._canonical is None:
            return None
        if not self._trust.trusts(scope) and any(name in _FORWARDED for name, _ in scope["headers"]):
            return None  # behind a proxy the guard does not trust: the browser's origin is unknown
        try:
            here = cookie_host(request_origin(scope, self._trust))
        except BadRequest:
            return None  # no usable Host: the pinned redirect_uri does not need one
        if here == self._canonical:
            return None
        if MOVED_PARAM in params:
            if not self._warned_origin:
                self._warned_origin = True
                logger.warning(
                    "a sign-in moved to the public URL still arrives at %s, not %s: if a reverse proxy "
                    "serves the app, list it in trusted_proxies= so the guard sees the public address",
                    here,
                    self._canonical,
                )
            return None
        raw: bytes = scope.get("query_string", b"")
        query = raw.decode("latin-1")
        target = f"{self._canonical_base}{self._login_path}?{query + '&' if query else ''}{MOVED_PARAM}=1"
        return RedirectResponse(target, status_code=303, headers=NO_STORE)

    def _sign_in_url(self, scope: Scope, next_path: str | None = None) -> str:
        return login_url(root_path(scope), self._login_path, next_path=next_path or _home(scope))

    def _browser(self, scope: Scope) -> tuple[str, str]:
        value = cookie(scope, self._cookies.binding_name)
        if value:
            binding = self._keys.open_binding_cookie(value)
            if binding is not None:
                if binding.previous is not None and len(binding.ids(self._clock())) == 1:
                    # The id it replaced has served its time: stop carrying it.
                    return binding.current, self._keys.binding_cookie(binding.current)
                return binding.current, value
        return self._keys.new_binding_cookie()

    async def _cap_transactions(self, browser_id: str, state: str) -> None:
        """Keep at most ``max_transactions`` logins in flight per browser; the oldest give way."""
        key = BROWSER_PREFIX + b64e(self._keys.derive("browser", browser_id)[:16])
        raw = await self._store.get(key)
        states = raw.decode().split() if raw else []
        states.append(state)
        while len(states) > self._max_tx:
            await self._store.delete(TX_PREFIX + states.pop(0))
        await self._store.set(key, " ".join(states).encode(), ttl=self._tx_ttl)

    # -- callback ------------------------------------------------------------------------------------

    async def callback(self, scope: Scope) -> ASGIApp:
        with self._telemetry.span("callback", {}):
            return await self._callback(scope)

    async def _callback(self, scope: Scope) -> ASGIApp:
        if scope["method"] not in ("GET", "HEAD"):
            return _method_not_allowed("GET")
        request = Request(scope)
        params = query_params(scope)
        state = params.get("state", "")
        if not params:
            return await self._pages.bad_request(
                request,
                "This is the sign-in callback; it needs the provider's 'code' and 'state'.",
                page_message_id="failed.callback_empty",
                sign_in_url=self._sign_in_url(scope),
            )
        if not state or len(state) > MAX_STATE_LENGTH:
            return await self._pages.bad_request(
                request,
                "The sign-in response has no valid 'state' parameter. Start the sign-in again.",
                sign_in_url=self._sign_in_url(scope),
            )
        if "error" in params:
            error = params["error"] if params["error"] in _PROVIDER_ERRORS else "other"
            if error in ("temporarily_unavailable", "server_error"):
                return await self._pages.unavailable(
                    request,
                    "unavailable.provider_trouble",
                    retry_after=5,
                    sign_in_url=self._sign_in_url(scope),
                )
            if is_authorization_misconfiguration(error):
                logger.error(
                    "sign-in is misconfigured: the provider refused the authorization request: %s",
                    misconfiguration_fix(error, redirect_uri=self._redirect_uri),
                )
                return await self._pages.misconfigured(request)
            await emit(self._on_event, GuardEvent(kind="relogin", reason=Reason.access_denied, detail=error))
            return await self._relogin.response(request, Reason.access_denied, next_path=_home(scope))
        code = params.get("code", "")
        if not code or len(code) > MAX_CODE_LENGTH:
            return await self._pages.bad_request(
                request,
                "The sign-in response has no valid 'code' parameter. Start the sign-in again.",
                sign_in_url=self._sign_in_url(scope),
            )
        if scope["method"] == "HEAD" or is_prefetch(headers_map(scope)):
            # A speculative load must not spend the code: refuse it so the browser loads it for real later.
            return Response(status_code=503, headers={**NO_STORE, "Vary": "Sec-Purpose", "Retry-After": "0"})

        value = cookie(scope, self._cookies.binding_name)
        binding = self._keys.open_binding_cookie(value) if value else None
        if binding is None:
            return await self._refuse(request, state, "no_binding_cookie")
        keys = [(bid, self._keys.derive("tx", bid)) for bid in binding.ids(self._clock())]  # current first
        code_hash = hashlib.sha256(code.encode()).hexdigest()

        found = await self._outcome(state, keys)
        if found is not None:
            return await self._absorbed(request, found, code_hash, "late", None)
        sealed = await self._store.get(TX_PREFIX + state)
        if sealed is None:
            # The winner records its outcome before it drops the transaction: it may have done both
            # since the outcome was read above (another task, process or host).
            found = await self._outcome(state, keys)
            if found is not None:
                return await self._absorbed(request, found, code_hash, "late", None)
            return await self._unknown_state(request)
        opened = next(
            ((bid, key, plain) for bid, key in keys if (plain := unseal(key, state.encode(), sealed))),
            None,
        )
        if opened is None:
            return await self._refuse(request, state, "binding_mismatch")
        tx_id, tx_key, plain = opened
        tx = Transaction.loads(plain)
        client = self._providers.for_record(tx.provider)
        if client is None:  # the provider was taken out of the app while this sign-in was under way
            return await self._refuse(request, state, "provider_removed")

        provider = await client.endpoints()
        iss = params.get("iss")
        if (iss is not None and iss != provider.issuer) or (iss is None and provider.iss_parameter_supported):
            # RFC 9207: a response from another issuer (mix-up attack), or one that lost its iss.
            await emit(
                self._on_event,
                GuardEvent(
                    kind="relogin", reason=Reason.login_required, detail="iss_mismatch", provider=client.name
                ),
            )
            return await self._pages.bad_request(
                request,
                "The sign-in response came from an unexpected issuer. Start the sign-in again.",
                page_message_id="failed.wrong_issuer",
                sign_in_url=self._sign_in_url(scope),
            )

        if not await self._store.add(CLAIM_PREFIX + state, b"1", ttl=self._tx_ttl):
            return await self._wait_for_outcome(request, state, keys, code_hash, client.name)
        done = anyio.Event()
        self._waiting[state] = done
        try:
            with anyio.CancelScope(shield=True):
                result = await self._exchange(client, request, state, code, code_hash, tx, tx_key)
        finally:
            del self._waiting[state]
            done.set()
        if result.ok:
            previous = await self._current_session(scope)
            if previous is not None:
                await self._sessions.delete(previous.sid)  # a new login replaces the old session
        return await self._answer(
            request, result, code_hash=code_hash, renew=tx_id if tx_id == binding.current else None
        )

    async def _exchange(
        self,
        client: ProviderClient,
        request: Request,
        state: str,
        code: str,
        code_hash: str,
        tx: Transaction,
        tx_key: bytes,
    ) -> Outcome:
        """The one exchange of this code: record the outcome for every duplicate, whatever happens."""
        code_mark = CODE_PREFIX + code_hash
        outcome: Outcome
        if not await self._store.add(code_mark, b"1", ttl=self._tx_ttl):
            outcome = Outcome(ok=False, next=tx.next, reason=Reason.code_reused.value)
        else:
            try:
                tokens = await self._exchange_code(client, code, tx)
                claims = await client.identity(tokens, nonce=tx.nonce)
                self._check_step_up(client, claims, tx)
                verdict = await self._on_login.decide(
                    SignIn(provider=client.name, claims=claims, tokens=tokens, request=request)
                )
                sid, key, cookie_value = self._keys.new_session_cookie()
                provider = await client.endpoints()
                offline = False
                sub = claims.get("sub")
                grants = self._offline.get(client.name)
                then = tx.next
                if grants is not None and isinstance(sub, str) and sub:
                    # The grant's refresh token moves to the user's offline record; the session draws on it.
                    brought = tokens.refresh_token is not None
                    tokens, offline = await grants.adopt(sub, tokens)
                    if not brought and not tx.consent and await grants.consent_needed(sub):
                        # A user whose grant is lost, signed in without being asked for consent (their
                        # browser had no session to tell): once more, asking, to restore it. Google
                        # issues a new refresh token only then.
                        then = login_url(
                            root_path(request.scope),
                            self._login_path,
                            next_path=tx.next,
                            provider=client.name,
                        )
                session = Session(
                    sid=sid,
                    tokens=tokens,
                    claims=claims,
                    created_at=self._clock(),
                    issuer=provider.issuer,
                    offline=offline,
                    provider=client.name,
                    user_id=verdict.user_id,
                    app_claims=verdict.claims,
                )
                await self._sessions.save(session, key)
                outcome = Outcome(
                    ok=True,
                    next=then if grants is not None else self._after_sign_in(request, client, tx, tokens),
                    cookie=cookie_value,
                    sid=sid,
                )
                await emit(self._on_event, GuardEvent(kind="login", sub=session.sub, provider=client.name))
                if self._ender is not None:
                    await self._ender.after_sign_in(session.sub, issuer=provider.issuer)
            except TokenEndpointError as exc:
                logger.warning("the provider refused a code: %s", exc.describe(code, tx.verifier))
                try:
                    callback_url = (
                        request_origin(request.scope, self._trust)
                        + root_path(request.scope)
                        + self._callback_path
                    )
                except BadRequest:
                    # No usable Host header: no evidence of another address, and the outcome must be
                    # recorded all the same, or every reload of this callback would wait for it.
                    callback_url = tx.redirect_uri
                # The provider's own code, where its quirks say what it means (Entra's AADSTS54005), else
                # what the guard knows (the provider's texts are mostly generic).
                reason = error_reason(client.provider.quirks, exc, during="code") or classify_code_error(
                    exc,
                    age=self._clock() - tx.created_at,
                    code_lifetime=self._code_lifetime,
                    callback_url=callback_url,
                    redirect_uri=tx.redirect_uri,
                )
                if is_client_misconfiguration(exc):
                    logger.error(
                        "sign-in is misconfigured: the provider refused the code exchange (%s): %s",
                        exc.error,
                        misconfiguration_fix(exc.error, redirect_uri=tx.redirect_uri),
                    )
                    outcome = Outcome(ok=False, next=tx.next, misconfigured=True)
                else:
                    outcome = Outcome(ok=False, next=tx.next, reason=reason.value)
                relogin = GuardEvent(kind="relogin", reason=reason, detail=exc.error, provider=client.name)
                await emit(self._on_event, relogin)
            except Refusal as exc:
                outcome = await self._refused(client, tokens, tx, exc)
            except IDTokenError as exc:
                logger.warning("login refused: %s", exc)
                outcome = Outcome(ok=False, next=tx.next, reason=Reason.access_denied.value)
                await emit(
                    self._on_event,
                    GuardEvent(
                        kind="relogin", reason=Reason.access_denied, detail="id_token", provider=client.name
                    ),
                )
            except ProviderUnavailable as exc:
                # The code may have been spent at the provider: never send it again, start a new login.
                logger.warning("code exchange failed: %s", exc)
                outcome = Outcome(ok=False, next=tx.next, unavailable=True)
            except ConfigurationError as exc:
                logger.error("sign-in is misconfigured: %s", exc)
                outcome = Outcome(ok=False, next=tx.next, misconfigured=True)
        outcome = dataclasses.replace(outcome, code_hash=code_hash, at=self._clock())
        await self._store.set(
            OUTCOME_PREFIX + state,
            seal(tx_key, b"outcome:" + state.encode(), outcome.dumps()),
            ttl=self._tx_ttl,
        )
        await self._store.delete(TX_PREFIX + state)
        return outcome

    def _check_step_up(self, client: ProviderClient, claims: Mapping[str, Any], tx: Transaction) -> None:
        problem = check_step_up(
            claims, max_age=tx.max_age, acr_values=tx.acr_values, started_at=tx.created_at
        )
        if problem is not None:
            logger.warning("a step-up sign-in with %s is refused: %s", client.name, problem)
            raise Refusal(self._pages.text("refused.step_up"), "step_up")

    async def _refused(
        self, client: ProviderClient, tokens: TokenSet, tx: Transaction, refusal: Refusal
    ) -> Outcome:
        """A sign-in turned away after its exchange (the app's ``on_login``, a step-up check): no session,
        and the grant just made is revoked, unless it may be the user's offline grant too."""
        logger.info("a sign-in with %s was refused (%s)", client.name, refusal.detail)
        if client.name not in self._offline:
            await revoke(client, tokens)
        await emit(
            self._on_event,
            GuardEvent(
                kind="relogin", reason=Reason.access_denied, detail=refusal.detail, provider=client.name
            ),
        )
        return Outcome(ok=False, next=tx.next, refused=refusal.message)

    async def _exchange_code(self, client: ProviderClient, code: str, tx: Transaction) -> TokenSet:
        """The token request for the code, the only one: its span, and its event whatever it answers."""
        detail = "error"
        try:
            with self._telemetry.span(
                "token_request", {"grant_type": "authorization_code", "provider": client.name}
            ):
                tokens = await client.exchange_code(
                    code=code, redirect_uri=tx.redirect_uri, verifier=tx.verifier
                )
            detail = "ok"
            return tokens
        except TokenEndpointError as exc:
            detail = exc.error
            raise
        except ProviderUnavailable:
            detail = "provider_unavailable"
            raise
        finally:
            await emit(self._on_event, GuardEvent(kind="code_exchange", detail=detail, provider=client.name))

    def _after_sign_in(
        self, request: Request, client: ProviderClient, tx: Transaction, tokens: TokenSet
    ) -> str:
        """Where a sign-in without offline access goes: its ``next``; or, when the provider sent no refresh
        token although one comes with its consent (``Quirks.consent_params``: Google, for a user who
        consented before), the login route once more, which then asks for consent (this browser's session
        holds no refresh token). Once: a sign-in that asked for consent goes to ``next`` whatever it
        brought. (With offline access, the user's grant decides: ``OfflineGrants.consent_needed``.)"""
        if tx.consent or tokens.refresh_token is not None or not client.provider.quirks.consent_params:
            return tx.next
        logger.info("the provider sent no refresh token: asking the user's consent once, for one")
        return login_url(root_path(request.scope), self._login_path, next_path=tx.next, provider=client.name)

    async def _outcome(
        self, state: str, keys: Sequence[tuple[str, bytes]]
    ) -> tuple[Outcome, str | None] | None:
        """The recorded outcome of ``state``, and this browser's current id if its key opened it (``keys``:
        the browser's ids and keys, the current one first). An outcome sealed for another browser reads as
        a refusal."""
        sealed = await self._store.get(OUTCOME_PREFIX + state)
        if sealed is None:
            return None
        for bid, key in keys:
            plain = unseal(key, b"outcome:" + state.encode(), sealed)
            if plain is not None:
                return Outcome.loads(plain), bid if bid == keys[0][0] else None
        return _NOT_OURS, None

    async def _wait_for_outcome(
        self, request: Request, state: str, keys: Sequence[tuple[str, bytes]], code_hash: str, provider: str
    ) -> ASGIApp:
        """A duplicate of a callback being exchanged: wait (bounded) and answer what the winner answers.

        At most ``max_waiting_duplicates`` wait at once in this process; more are answered 503 at once."""
        if self._duplicates_waiting >= self._max_waiting:
            return await self._pages.unavailable(request, "unavailable.busy", retry_after=1)
        self._duplicates_waiting += 1
        try:
            with anyio.move_on_after(self._duplicate_wait):
                local = self._waiting.get(state)
                if local is not None:
                    await local.wait()
                pause = 0.01
                while True:
                    found = await self._outcome(state, keys)
                    if found is not None:
                        return await self._absorbed(request, found, code_hash, "concurrent", provider)
                    await anyio.sleep(pause)  # the winner is in another process
                    pause = min(pause * 2, 0.2)
        finally:
            self._duplicates_waiting -= 1
        return await self._pages.unavailable(request, "unavailable.completing", retry_after=1)

    async def _absorbed(
        self,
        request: Request,
        found: tuple[Outcome, str | None],
        code_hash: str,
        when: str,
        provider: str | None,
    ) -> ASGIApp:
        """The answer to a duplicate callback: the recorded outcome of the one exchange of its code.
        ``provider``: its name, when known (a late duplicate is answered before its sign-in is read)."""
        if found[0] is not _NOT_OURS:
            duplicate = GuardEvent(kind="duplicate_absorbed", detail=when, provider=provider)
            await emit(self._on_event, duplicate)
        return await self._answer(request, found[0], code_hash=code_hash, renew=found[1])

    async def _answer(
        self, request: Request, outcome: Outcome, *, code_hash: str, renew: str | None = None
    ) -> ASGIApp:
        """The answer to a callback whose outcome is recorded. ``renew``: the browser's current binding id,
        when the sign-in was bound to it: a session handed out here retires it."""
        if outcome is _NOT_OURS:
            # Sealed for another browser, or for an id this browser had two sign-ins ago.
            return await self._unknown_state(request)
        if not outcome.ok:
            if outcome.refused is not None:
                return await self._pages.refused(
                    request, outcome.refused, sign_in_url=self._sign_in_url(request.scope, outcome.next)
                )
            if outcome.misconfigured:
                return await self._pages.misconfigured(request)
            if outcome.unavailable:
                return await self._pages.unavailable(
                    request,
                    "unavailable.no_answer",
                    retry_after=5,
                    sign_in_url=self._sign_in_url(request.scope, outcome.next),
                )
            return await self._relogin.response(
                request, _reason(outcome.reason) or Reason.login_required, next_path=outcome.next
            )
        current = await self._current_session(request.scope)
        if current is not None and current.sid == outcome.sid:
            return RedirectResponse(outcome.next, status_code=303, headers=NO_STORE)
        # This login's session, only for a true duplicate (same code, within the window), and unless it has
        # ended since: a replay never hands the browser a dead session over a working one, and a callback
        # URL replayed later (from history, logs, a copied binding cookie) never hands out a live one.
        if (
            outcome.cookie is not None
            and self._is_duplicate(outcome, code_hash)
            and await self._working_session(outcome.cookie) is not None
        ):
            response = RedirectResponse(outcome.next, status_code=303, headers=NO_STORE)
            self._cookies.set_session(response, request.scope, outcome.cookie)
            if renew is not None:
                # A browser id serves one sign-in: the next ones get a new id. The old one stays readable
                # for a transaction's lifetime, so sign-ins other tabs started can still finish.
                value = self._keys.new_binding_cookie(
                    previous=renew, previous_until=self._clock() + self._tx_ttl
                )[1]
                self._cookies.set_binding(response, request.scope, value)
            return response
        if current is not None:  # a late replay of an older login: keep the session the browser has now
            return RedirectResponse(outcome.next, status_code=303, headers=NO_STORE)
        return await self._relogin.response(request, Reason.state_expired, next_path=outcome.next)

    def _is_duplicate(self, outcome: Outcome, code_hash: str) -> bool:
        if outcome.code_hash is None or not hmac.compare_digest(outcome.code_hash, code_hash):
            return False
        return 0 <= self._clock() - outcome.at <= self._duplicate_window

    async def _unknown_state(self, request: Request) -> ASGIApp:
        """Unknown or expired state: a late replay (back button) when the browser is signed in."""
        if await self._current_session(request.scope) is not None:
            return RedirectResponse(_home(request.scope), status_code=303, headers=NO_STORE)
        if self._advice is not None:
            self._advice.unknown("sign-in")
        return await self._relogin.response(request, Reason.state_expired, next_path=_home(request.scope))

    async def _refuse(self, request: Request, state: str, detail: str) -> ASGIApp:
        """A callback for a login this browser did not start (login CSRF, a link opened in another
        browser, cookies blocked). Nothing is claimed, so the rightful browser can still finish."""
        if await self._current_session(request.scope) is not None:
            return RedirectResponse(_home(request.scope), status_code=303, headers=NO_STORE)
        await emit(self._on_event, GuardEvent(kind="relogin", reason=Reason.state_expired, detail=detail))
        return await self._relogin.response(request, Reason.state_expired, next_path=_home(request.scope))

    async def _current_session(self, scope: Scope) -> Session | None:
        return await self._working_session(cookie(scope, self._cookies.session_name))

    async def _working_session(self, value: str | None) -> Session | None:
        """The session a cookie value opens, if it still holds tokens."""
        opened = self._keys.open_session_cookie(value) if value else None
        if opened is None:
            return None
        session = await self._sessions.load(*opened)
        return session if session is not None and session.tokens is not None else None

    # -- logout --------------------------------------------------------------------------------------

    async def logout(self, scope: Scope, receive: Receive) -> ASGIApp:
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return _method_not_allowed("GET, POST")
        value = cookie(scope, self._cookies.session_name)
        opened = self._keys.open_session_cookie(value) if value else None
        refusal = await self._sign_out.refusal(scope, receive, opened[0] if opened is not None else None)
        if refusal is not None:
            return refusal  # a GET, or a POST not proven to come from this app: nothing changes
        # Read from the request before any side effect: a bad Host is a 400 with the session intact.
        post_logout = self._absolute(scope, self._post_logout)
        target = root_path(scope) + self._post_logout
        # Ended under the session's refresh lock: a refresh in flight finishes first, so the refresh token
        # revoked below is the newest; one that finishes later finds the session gone and revokes its own.
        session = await self._refresher.end(*opened) if opened is not None else None
        if session is not None:
            tokens = session.tokens
            client = self._providers.for_record(session.provider)
            grants = self._offline.get(client.name) if client is not None else None
            if session.offline and grants is not None:
                # The session's tokens are its user's offline grant's: revoked only with the grant.
                if grants.settings.end_with_sessions and session.sub is not None:
                    await grants.end(session.sub)
            elif tokens is not None and client is not None:
                await revoke(client, tokens)
            if tokens is not None and client is not None:
                provider = await client.endpoints()
                if self._rp_logout and provider.end_session_endpoint and tokens.id_token:
                    query = urlencode(
                        {
                            "id_token_hint": tokens.id_token,
                            "post_logout_redirect_uri": post_logout,
                            "client_id": client.client_id,
                        }
                    )
                    target = f"{provider.end_session_endpoint}?{query}"
            sub = str(session.claims.get("sub") or "") or None
            name = client.name if client is not None else session.provider
            await emit(self._on_event, GuardEvent(kind="logout", sub=sub, provider=name))
        response = RedirectResponse(target, status_code=303, headers=NO_STORE)
        self._cookies.clear_session(response, scope)
        return response

    def _absolute(self, scope: Scope, path: str) -> str:
        """The absolute URL of ``path`` on this app: under ``public_url`` when set (never the ``Host``),
        else the request's origin (forwarded headers from trusted proxies only) and root path."""
        if self._public_base is not None:
            return self._public_base + path
        return request_origin(scope, self._trust) + root_path(scope) + path


# RFC 6749 section 4.1.2.1 and OIDC Core 3.1.2.6; anything else is reported as "other".
_PROVIDER_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
    }
)


def _home(scope: Scope) -> str:
    """The app's own root, under the root path it is mounted at."""
    return root_path(scope) + "/"


MOVED_PARAM = "moved"
_FORWARDED = frozenset({b"x-forwarded-host", b"x-forwarded-proto", b"forwarded"})


def cookie_host(url: str) -> str:
    """The host of an absolute URL, as cookies see it: a cookie is shared by every port and scheme of a
    host, and by no other host (``localhost`` and ``127.0.0.1`` are two)."""
    return httpx.URL(url).host.lower()


def _reason(value: str | None) -> Reason | None:
    try:
        return Reason(value) if value else None
    except ValueError:
        return None


def _method_not_allowed(allow: str) -> Response:
    return Response("Method not allowed.", status_code=405, headers={**NO_STORE, "Allow": allow})


__all__ = ["Flows"]
