"""OpenID Connect relying-party conformance: every RP test case, played by the embedded provider.

Each case drives the whole sign-in through the guard against `OAuthTestProvider.conformance_case(name)`:
the accepting cases sign in, the refusing ones end in the re-login response (reason ``access_denied``)
with no session, and nothing answers 500. docs/oidc-conformance.md maps each case to its test here;
scripts/mutation_conformance.py removes each check in turn and shows its case fails.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import anyio
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from asgi_oauth_guard import IDTokenError
from asgi_oauth_guard._id_token import unverified_claims
from asgi_oauth_guard.providers._client import JWKS_REFETCH_INTERVAL
from asgi_oauth_guard.testing import CONFORMANCE_CASES, Conformance, OAuthTestProvider
from asgi_oauth_guard.testing._keys import ec_key, rsa_key

from .conftest import (
    APP_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    World,
    assert_refused,
    assert_signed_in,
    query,
    sign_in,
)

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    accept: bool
    guard: dict[str, Any] = dataclasses.field(default_factory=dict)


def _client_key_settings() -> dict[str, Any]:
    return {"client_auth": "private_key_jwt", "client_key": rsa_key("client").as_pem(private=True).decode()}


HS256 = {"id_token_signed_response_alg": "HS256"}
USERINFO = {"fetch_userinfo": True}

SIGN_IN_CASES = [
    # Basic RP
    Case(name="rp-response_type-code", accept=True),
    Case(name="rp-scope-userinfo-claims", accept=True, guard=USERINFO),
    Case(name="rp-nonce-invalid", accept=False),
    Case(
        name="rp-token_endpoint-client_secret_basic",
        accept=True,
        guard={"client_auth": "client_secret_basic"},
    ),
    Case(name="rp-id_token-kid-absent-single-jwks", accept=True),
    Case(name="rp-id_token-kid-absent-multiple-jwks", accept=True),
    Case(name="rp-id_token-iat", accept=False),
    Case(name="rp-id_token-aud", accept=False),
    Case(name="rp-id_token-sub", accept=False),
    Case(name="rp-id_token-sig-none", accept=False),
    Case(name="rp-id_token-sig-rs256", accept=True),
    Case(name="rp-id_token-bad-sig-rs256", accept=False),
    Case(name="rp-id_token-issuer-mismatch", accept=False),
    Case(name="rp-userinfo-bad-sub-claim", accept=False, guard=USERINFO),
    Case(name="rp-userinfo-bearer-header", accept=True, guard=USERINFO),
    # Basic RP, optional
    Case(
        name="rp-token_endpoint-client_secret_post", accept=True, guard={"client_auth": "client_secret_post"}
    ),
    Case(name="rp-token_endpoint-private_key_jwt", accept=True, guard=_client_key_settings()),
    Case(name="rp-id_token-sig-es256", accept=True),
    Case(name="rp-id_token-bad-sig-es256", accept=False),
    Case(name="rp-id_token-sig-hs256", accept=True, guard=HS256),
    Case(name="rp-id_token-bad-sig-hs256", accept=False, guard=HS256),
    Case(name="rp-userinfo-bearer-body", accept=True, guard={"fetch_userinfo": "body"}),
    Case(name="rp-id_token-bad-at_hash", accept=False),
    # Config RP (rp-discovery-issuer-not-matching-config and rp-key-rotation-op-sign-key: own tests below)
    Case(name="rp-discovery-openid-configuration", accept=True),
    Case(name="rp-discovery-jwks_uri-keys", accept=True),
    # the ID-token checks of a certified RP that the test tool has no case for
    Case(name="x-id_token-azp-mismatch", accept=False),
    Case(name="x-id_token-nonce-list", accept=False),
    Case(name="x-id_token-typ-at+jwt", accept=False),
    Case(name="x-id_token-expired", accept=False),
]
OWN_TESTS = {"rp-discovery-issuer-not-matching-config", "rp-key-rotation-op-sign-key", "rp-init-logout"}
BACKCHANNEL = "backchannel"  # tests/conformance/test_backchannel_cases.py


def test_every_case_of_the_provider_has_a_test() -> None:
    tested = {case.name for case in SIGN_IN_CASES} | OWN_TESTS
    assert tested == {name for name in CONFORMANCE_CASES if BACKCHANNEL not in name}


@pytest.mark.parametrize("case", SIGN_IN_CASES, ids=[c.name for c in SIGN_IN_CASES])
async def test_sign_in(world: World, case: Case) -> None:
    provider = world.provider(case.name)
    assert provider.issuer == f"https://idp.example.test/{case.name}"  # the case, in the issuer path
    guard = world.guard(provider, **case.guard)
    result = await sign_in(world.browser(guard), provider)
    if case.accept:
        body = assert_signed_in(result)
        _check_accepted(case.name, provider, body)
    else:
        assert_refused(result)
    assert provider.count("token", grant_type="authorization_code") == 1


def _check_accepted(name: str, provider: OAuthTestProvider, body: dict[str, Any]) -> None:
    """What each accepting case prescribes beyond signing in."""
    token_call = next(c for c in provider.calls if c.endpoint == "token")
    userinfo = [c for c in provider.calls if c.endpoint == "userinfo"]
    if name == "rp-scope-userinfo-claims":
        # the provider put the email and profile claims only at userinfo: they reached the app
        assert body["claims"]["email"] == "alice@example.test" and body["claims"]["name"] == "Alice"
        assert len(userinfo) == 1 and userinfo[0].status == 200
    if name == "rp-userinfo-bearer-header":
        assert len(userinfo) == 1 and userinfo[0].method == "GET" and userinfo[0].status == 200
    if name == "rp-userinfo-bearer-body":
        assert len(userinfo) == 1 and userinfo[0].method == "POST" and userinfo[0].status == 200
        assert "access_token" in userinfo[0].params
    if name == "rp-token_endpoint-client_secret_post":
        assert "client_secret" in token_call.params
    if name == "rp-token_endpoint-client_secret_basic":
        assert "client_secret" not in token_call.params
    if name == "rp-token_endpoint-private_key_jwt":
        assert "client_secret" not in token_call.params and "client_assertion" in token_call.params
    if name == "rp-discovery-openid-configuration":
        authorize = next(c for c in provider.calls if c.endpoint == "authorize")
        assert authorize.params["client_id"] == CLIENT_ID
        assert provider.count("discovery") == 1
    if name == "rp-discovery-jwks_uri-keys":
        assert provider.count("jwks") == 1
    if name not in ("rp-scope-userinfo-claims", "rp-userinfo-bearer-header", "rp-userinfo-bearer-body"):
        assert not userinfo  # userinfo is called only when fetch_userinfo is on


async def test_hs256_id_tokens_are_refused_unless_the_client_registered_for_them(world: World) -> None:
    """rp-id_token-sig-hs256 without id_token_signed_response_alg: a symmetric signature is refused
    (else anyone holding the provider's public key could "HMAC-sign" tokens with it)."""
    provider = world.provider("rp-id_token-sig-hs256")
    assert_refused(await sign_in(world.browser(world.guard(provider)), provider))


async def test_rp_discovery_issuer_not_matching_config(world: World) -> None:
    """The discovery document names another issuer: the configuration is refused, no user is sent to
    the provider (the misconfigured answer, a 502 without Retry-After: waiting will not fix it; never a
    redirect), and no session exists."""
    provider = world.provider("rp-discovery-issuer-not-matching-config")
    result = await sign_in(world.browser(world.guard(provider)), provider)
    assert result.login.status_code == 502 and "retry-after" not in result.login.headers
    assert 'data-kind="misconfigured"' in result.login.text
    assert result.callback is None
    assert provider.count("authorize") == 0 and provider.count("token") == 0
    assert result.me.status_code == 303 and query(result.me.headers["location"])["reason"] == "login_required"


async def test_rp_key_rotation_op_sign_key(world: World) -> None:
    """A new signing key after the first sign-in: the second ID token names an unknown kid, the guard
    fetches the JWKS once more and accepts it."""
    provider = world.provider("rp-key-rotation-op-sign-key")
    guard = world.guard(provider)
    first = await sign_in(world.browser(guard), provider)
    assert_signed_in(first)
    assert provider.count("jwks") == 1
    second = await sign_in(world.browser(guard), provider)
    assert_signed_in(second)
    assert provider.count("jwks") == 2


async def test_sign_ins_racing_after_a_rotation_share_one_refetch(world: World) -> None:
    """Two callbacks carrying the new kid at once: the second waits for the first one's JWKS fetch and
    uses its result, rather than being refused by the refetch limit."""
    provider = world.provider("rp-key-rotation-op-sign-key")
    guard = world.guard(provider)
    assert_signed_in(await sign_in(world.browser(guard), provider))
    browsers = [world.browser(guard) for _ in range(2)]
    callbacks = []
    for browser in browsers:
        login = await browser.get("/auth/login", params={"next": "/me"})
        callbacks.append(await provider.complete_authorization(login.headers["location"]))
    answers: list[httpx.Response] = []

    async def finish(browser: httpx.AsyncClient, url: str) -> None:
        answers.append(await browser.get(url))

    with provider.hold("jwks") as hold:
        async with anyio.create_task_group() as tg:
            for browser, url in zip(browsers, callbacks, strict=True):
                tg.start_soon(finish, browser, url)
            with anyio.fail_after(10):
                await hold.wait_entered(1)
            await anyio.wait_all_tasks_blocked()
            hold.release()
    assert [a.status_code for a in answers] == [303, 303]
    assert all(a.headers["location"] == "/me" for a in answers)
    assert provider.count("jwks") == 2


def _forged(kid: str, issuer: str) -> str:
    claims = {"iss": issuer, "aud": CLIENT_ID, "sub": "mallory", "iat": 1_800_000_000, "exp": 1_800_003_600}
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, rsa_key("forger"))


async def test_a_flood_of_unknown_kids_refetches_the_jwks_once_per_interval(world: World) -> None:
    """rp-key-rotation-op-sign-key's other side: tokens naming made-up kids, 50 at once, cost the
    provider one JWKS fetch per JWKS_REFETCH_INTERVAL, not one each."""
    provider = world.provider("rp-key-rotation-op-sign-key")
    guard = world.guard(provider)
    assert_signed_in(await sign_in(world.browser(guard), provider))
    assert provider.count("jwks") == 1
    refused: list[int] = []

    async def forge() -> None:
        with pytest.raises(IDTokenError):
            await guard.client.validate_id_token(_forged(secrets.token_hex(8), provider.issuer), nonce=None)
        refused.append(1)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(forge)
    assert len(refused) == 50
    assert provider.count("jwks") == 2  # one refetch for all fifty
    for _ in range(20):
        with pytest.raises(IDTokenError):
            await guard.client.validate_id_token(_forged(secrets.token_hex(8), provider.issuer), nonce=None)
    assert provider.count("jwks") == 2
    world.clock.advance(JWKS_REFETCH_INTERVAL)
    with pytest.raises(IDTokenError):
        await guard.client.validate_id_token(_forged("later", provider.issuer), nonce=None)
    assert provider.count("jwks") == 3


async def test_a_bad_signature_under_a_known_kid_does_not_refetch(world: World) -> None:
    provider = world.provider("rp-id_token-bad-sig-rs256")
    guard = world.guard(provider)
    for _ in range(3):
        assert_refused(await sign_in(world.browser(guard), provider))
    assert provider.count("jwks") == 1


async def test_rp_init_logout(world: World) -> None:
    """RP-initiated logout: the session ends here, then the browser goes to the provider's
    end_session_endpoint with id_token_hint and a registered post_logout_redirect_uri, which the
    provider accepts (and redirects back to)."""
    provider = world.provider("rp-init-logout", post_logout_redirect_uris=[APP_URL + "/"])
    guard = world.guard(provider, rp_initiated_logout=True)
    browser = world.browser(guard)
    assert_signed_in(await sign_in(browser, provider))
    logout = await browser.post("/auth/logout", headers={"origin": APP_URL})
    assert logout.status_code == 303
    target = logout.headers["location"]
    assert target.startswith(provider.metadata["end_session_endpoint"] + "?")
    params = query(target)
    assert params["post_logout_redirect_uri"] == APP_URL + "/"
    assert params["client_id"] == CLIENT_ID
    assert params["id_token_hint"].count(".") == 2
    async with httpx.AsyncClient(transport=provider.transport()) as idp:
        answer = await idp.get(target)
    assert answer.status_code == 302 and answer.headers["location"] == APP_URL + "/"
    me = await browser.get("/me")
    assert me.status_code == 303 and query(me.headers["location"])["reason"] == "login_required"


@pytest.mark.parametrize("form", ["rsa-pem", "rsa-jwk", "ec-jwk"])
async def test_private_key_jwt_assertions_follow_rfc_7523(world: World, form: str) -> None:
    """kid sent, iss = sub = client_id, aud = the token endpoint, a short exp, a new jti each time
    (the provider refuses a replayed jti: two sign-ins passing shows the jtis differ); the key given as
    PEM or as a JWK, RSA (RS256) or EC (ES256)."""
    key = ec_key("client") if form.startswith("ec") else rsa_key("client")
    client_key: Any = key.as_pem(private=True).decode() if form == "rsa-pem" else key.as_dict(private=True)
    provider = world.provider(
        "rp-token_endpoint-private_key_jwt", client_jwks={"keys": [key.as_dict(private=False)]}
    )
    guard = world.guard(provider, client_auth="private_key_jwt", client_key=client_key)
    for _ in range(2):
        assert_signed_in(await sign_in(world.browser(guard), provider))
    calls = [c for c in provider.calls if c.endpoint == "token"]
    public = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    tokens = [jwt.decode(c.params["client_assertion"], public) for c in calls]
    for token in tokens:
        assert token.header["kid"] == key.kid
        assert token.header["alg"] == ("ES256" if form.startswith("ec") else "RS256")
        assert token.claims["iss"] == token.claims["sub"] == CLIENT_ID
        assert token.claims["aud"] == provider.metadata["token_endpoint"]
        assert 0 < token.claims["exp"] - token.claims["iat"] <= 60
    assert len({t.claims["jti"] for t in tokens}) == 2


async def test_a_replayed_client_assertion_is_refused_by_the_provider(world: World) -> None:
    """The provider side of private_key_jwt, which the test above relies on: a jti seen before is refused."""
    provider = world.provider("rp-token_endpoint-private_key_jwt")
    guard = world.guard(provider, **_client_key_settings())
    assert_signed_in(await sign_in(world.browser(guard), provider))
    used = next(c for c in provider.calls if c.endpoint == "token").params
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        again = await http.post(
            provider.metadata["token_endpoint"],
            data={k: used[k] for k in ("client_id", "client_assertion_type", "client_assertion")}
            | {"grant_type": "refresh_token", "refresh_token": "x"},
        )
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


# -- refreshed ID tokens (OIDC Core 12.2) ---------------------------------------------------------------


async def _signed_in_then_refreshed(world: World, conformance: Conformance) -> httpx.AsyncClient:
    provider = OAuthTestProvider(
        issuer="https://idp.example.test/refresh",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=world.clock,
        conformance=conformance,
        post_logout_redirect_uris=[APP_URL + "/"],
    )
    browser = world.browser(world.guard(provider, rp_initiated_logout=True))
    assert_signed_in(await sign_in(browser, provider))
    world.clock.advance(3600)  # the access token is due
    me = await browser.get("/me")
    assert me.status_code == 200 and me.json()["user"] == "alice"
    assert provider.count("token", grant_type="refresh_token") == 1
    return browser


async def _id_token_hint(browser: httpx.AsyncClient) -> dict[str, Any]:
    logout = await browser.post("/auth/logout", headers={"origin": APP_URL})
    assert logout.status_code == 303
    return unverified_claims(query(logout.headers["location"])["id_token_hint"])


async def test_a_valid_refreshed_id_token_replaces_the_logins(world: World) -> None:
    browser = await _signed_in_then_refreshed(world, Conformance())
    hint = await _id_token_hint(browser)
    assert hint["iat"] == int(world.clock())  # the refreshed one
    assert "nonce" not in hint


async def test_a_refresh_without_an_id_token_keeps_the_logins_for_logout(world: World) -> None:
    """RP-initiated logout after a refresh still sends an id_token_hint."""
    browser = await _signed_in_then_refreshed(world, Conformance(refresh_id_token=False))
    hint = await _id_token_hint(browser)
    assert hint["iat"] == int(world.clock()) - 3600 and hint["sub"] == "alice"  # the login's


@pytest.mark.parametrize(
    "refreshed_claims",
    [{"sub": "mallory"}, {"iss": "https://other-idp.example.test"}, {"aud": "another-client"}, {"exp": 1}],
    ids=["another-sub", "another-iss", "another-aud", "expired"],
)
async def test_a_refreshed_id_token_about_someone_else_is_not_used(
    world: World, refreshed_claims: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """12.2: the refreshed ID token must have the login's iss, sub and aud (and pass the usual checks).
    One that does not is dropped: the session keeps its user and the login's ID token, never a 500."""
    browser = await _signed_in_then_refreshed(world, Conformance(refreshed_claims=refreshed_claims))
    assert "refresh: the new ID token is not used" in caplog.text
    assert (await browser.get("/me")).json()["user"] == "alice"
    hint = await _id_token_hint(browser)
    assert hint["sub"] == "alice" and hint["iat"] == int(world.clock()) - 3600


async def test_userinfo_gives_the_identity_without_openid(world: World) -> None:
    """A plain OAuth 2.0 sign-in (no ID token) with fetch_userinfo: the user is userinfo's sub."""
    provider = world.provider("rp-userinfo-bearer-header")
    guard = world.guard(provider, scopes=["email"], fetch_userinfo=True)
    body = assert_signed_in(await sign_in(world.browser(guard), provider))
    assert body["claims"] == {"sub": "alice", "email": "alice@example.test", "email_verified": True}


async def test_a_userinfo_failure_at_sign_in_is_a_503_or_a_refusal_never_a_500(world: World) -> None:
    provider = world.provider("rp-userinfo-bearer-header")
    guard = world.guard(provider, fetch_userinfo=True)
    provider.fail_next(1, 503, endpoint="userinfo")
    result = await sign_in(world.browser(guard), provider)
    assert result.callback is not None and result.callback.status_code == 503
    assert "retry-after" in result.callback.headers
    provider.fail_next(1, 401, endpoint="userinfo")
    assert_refused(await sign_in(world.browser(guard), provider))
