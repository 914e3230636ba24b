"""The hot path's shortcuts (issue 21) keep every check: each one is tested against the slow way it stands for."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer

from asgi_oauth_guard import TokenSet
from asgi_oauth_guard._crypto import Keyring, hmac_sha256_states
from asgi_oauth_guard._http import find_cookie
from asgi_oauth_guard._lifetime import TOUCH_INTERVAL, Lifetime
from asgi_oauth_guard._protocol import refresh_due, refresh_due_from
from asgi_oauth_guard._session import SESSION_LAYOUT, TOKEN_LAYOUT, Session
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import SECRET_KEY, BrowserFactory, CountingStore, GuardFactory, login

pytestmark = pytest.mark.anyio

OTHER_KEY = "another-secret-key-that-is-long-enough-42"

# -- the cookie, found in bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"cookie", b"guard_session=abc")], b"abc"),
        ([(b"cookie", b"a=1; guard_session=abc; b=2")], b"abc"),
        ([(b"cookie", b"a=1;guard_session=abc")], b"abc"),
        ([(b"cookie", b'guard_session=" abc "')], b" abc "),  # quotes off, what they held kept
        ([(b"cookie", b"guard_session=  abc  ; b=2")], b"abc"),
        ([(b"cookie", b"xguard_session=no; guard_session=yes")], b"yes"),  # a longer name is not it
        ([(b"cookie", b"guard_session_tx=no")], None),
        ([(b"cookie", b"guard_session=first; guard_session=second")], b"first"),
        ([(b"cookie", b"a=1"), (b"cookie", b"guard_session=later")], b"later"),  # HTTP/2: split headers
        (
            [(b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"guard_session=on; guard_session=no")],
            b"on",
        ),
        ([(b"cookie", b"guard_session=first"), (b"cookie", b"guard_session=second")], b"first"),
        ([(b"cookie", b"a=1"), (b"cookie", b"b=2")], None),
        ([[b"accept", b"*/*"], [b"cookie", b"guard_session=abc"]], b"abc"),  # lists, as some servers send
        ([(b"cookie", b"guard_session=\tabc")], b"abc"),
        ([(b"cookie", "guard_session=\u00a0abc\u00a0".encode("latin-1"))], b"abc"),  # str.strip's spaces
        ([(b"cookie", b'guard_session="abc"')], b"abc"),
        ([(b"x-cookie", b"guard_session=no")], None),
        ([(b"cookie", "caf\u00e9=cr\u00e8me; guard_session=abc".encode("latin-1"))], b"abc"),
        ([(b"cookie", b"guard_session=")], b""),
        ([], None),
    ],
)
def test_find_cookie_reads_the_value_as_the_text_search_did(
    headers: list[tuple[bytes, bytes]], expected: bytes | None
) -> None:
    assert find_cookie(headers, b"guard_session=") == expected
    assert find_cookie(iter(headers), b"guard_session=") == expected  # any iterable, read once
    assert find_cookie(tuple(headers), b"guard_session=") == expected


# -- the session cookie, verified with the derived keys ---------------------------------------------------


def itsdangerous_signer(*keys: str) -> Signer:
    return Signer(list(keys), salt="asgi-oauth-guard.session", digest_method=hashlib.sha256)


def test_session_cookies_itsdangerous_signs_open_with_every_key_of_a_rotation() -> None:
    old = Keyring([OTHER_KEY])
    sid, key, value = old.new_session_cookie()
    rotated = Keyring([OTHER_KEY, SECRET_KEY])
    assert rotated.open_session_cookie(value) == (sid, key)  # signed with the old key, still valid
    fresh = rotated.new_session_cookie()
    assert itsdangerous_signer(OTHER_KEY, SECRET_KEY).unsign(fresh[2].encode())  # the format is unchanged
    assert Keyring([SECRET_KEY]).open_session_cookie(fresh[2]) == fresh[:2]
    assert Keyring([OTHER_KEY]).open_session_cookie(fresh[2]) is None  # the key it was signed with is gone


def test_a_tampered_or_foreign_session_cookie_is_refused() -> None:
    keyring = Keyring([SECRET_KEY])
    sid, key, value = keyring.new_session_cookie()
    payload, _, signature = value.rpartition(".")
    other_payload = base64.urlsafe_b64encode(bytes(48)).rstrip(b"=").decode()
    binding = keyring.binding_cookie("browser-id")
    # The same MAC, another base64 spelling (the padding bits of the last character flipped): refused.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(signature[-1])
    spelling = signature[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    assert base64.urlsafe_b64decode(spelling + "=") == base64.urlsafe_b64decode(signature + "=")
    for forged in (
        f"{other_payload}.{signature}",
        f"{payload}.{signature[:-2]}",
        f"{payload}.{spelling}",
        f"{payload}{signature}",
        payload,
        binding,  # signed by the same keys for another purpose (salt)
        f"{payload}.{signature}\u00e9",
        "",
    ):
        assert Keyring([SECRET_KEY]).open_session_cookie(forged) is None
        # as the bytes the server read (the hot path's), latin-1 as a server decodes them: refused too
        assert Keyring([SECRET_KEY]).open_session_cookie(forged.encode("latin-1", "replace")) is None
    assert keyring.open_session_cookie(value) == (sid, key)
    assert keyring.open_session_cookie(value.encode()) == (sid, key)
    assert keyring.open_session_cookie(f"{payload}\u00e9.{signature}".encode("latin-1")) is None
    assert keyring.open_session_cookie(value.encode() + b" " * 512) is None  # too long, as text is
    fake = hmac.new(b"not-the-derived-key", payload.encode(), hashlib.sha256).digest()
    unsigned = f"{payload}.{base64.urlsafe_b64encode(fake).rstrip(b'=').decode()}"
    assert Keyring([SECRET_KEY]).open_session_cookie(unsigned) is None


@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_the_hmac_states_give_the_hmac_module_s_mac(key: bytes, message: bytes) -> None:
    inner, outer = hmac_sha256_states(key)  # keys longer than a block are hashed first (RFC 2104)
    for _ in range(2):  # the states are copied, never consumed: a second MAC is as right as the first
        digest = inner.copy()
        digest.update(message)
        mac = outer.copy()
        mac.update(digest.digest())
        assert mac.digest() == hmac.new(key, message, hashlib.sha256).digest()


# -- one deadline for the lifetime checks and the refresh ------------------------------------------------

times = st.floats(min_value=1.6e9, max_value=2.0e9, allow_nan=False)
spans = st.floats(min_value=1.0, max_value=1e7, allow_nan=False)


@given(
    created=times,
    seen_after=st.none() | st.floats(min_value=0, max_value=1e6),
    max_age=spans,
    idle=st.none() | st.floats(min_value=2 * TOUCH_INTERVAL, max_value=1e6),
    offset=st.floats(min_value=-1e6, max_value=1e7),
)
def test_before_quiet_until_neither_end_nor_touch_is_due(
    created: float, seen_after: float | None, max_age: float, idle: float | None, offset: float
) -> None:
    lifetime = Lifetime(max_age=max_age, idle_timeout=idle)
    last_seen = None if seen_after is None else created + seen_after
    session = Session(sid="s", tokens=None, claims={}, created_at=created, last_seen=last_seen)
    until = lifetime.quiet_until(session)
    now = until + offset
    quiet = lifetime.ended(session, now) is None and not lifetime.touch_due(session, now)
    if now < until - 0.001:  # the margin the hot path keeps
        assert quiet
    if now >= until + 0.001:
        assert not quiet


@given(
    issued=times,
    lifetime=st.none() | st.floats(min_value=-10, max_value=1e6),
    leeway=st.floats(min_value=0, max_value=1e4),
    offset=st.floats(min_value=-1e6, max_value=1e6),
)
def test_refresh_due_from_is_when_refresh_due_turns_true(
    issued: float, lifetime: float | None, leeway: float, offset: float
) -> None:
    tokens = TokenSet(
        access_token="at", issued_at=issued, expires_at=None if lifetime is None else issued + lifetime
    )
    since = refresh_due_from(tokens, leeway)
    if since == float("inf"):
        assert tokens.expires_at is None and not refresh_due(tokens, issued + abs(offset), leeway)
        return
    now = since + offset
    if now < since - 0.001:
        assert not refresh_due(tokens, now, leeway)
    if now >= since + 0.001:
        assert refresh_due(tokens, now, leeway)


async def test_the_fast_path_gives_way_at_each_deadline(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """Refresh due, use to write down, absolute age: each happens on the first request at or after its
    time, as when every request asked each check, and no request before it does any of them."""
    store = CountingStore(clock)
    guard = guard_factory(store=store, session_max_age=3 * 3600, session_idle_timeout=3600, refresh_leeway=60)
    browser = browser_factory(guard)
    await login(browser, provider, "/me")
    assert (await browser.get("/me")).json()["refreshes"] == 0

    def writes() -> int:
        return sum(key.startswith("s:") for key in store.keys.get("replace", []))

    clock.advance(TOUCH_INTERVAL - 1)
    assert (await browser.get("/me")).status_code == 200 and writes() == 0
    clock.advance(1)
    assert (await browser.get("/me")).status_code == 200 and writes() == 1  # its use written down
    assert (await browser.get("/me")).status_code == 200 and writes() == 1  # once a minute

    refreshes = provider.count(endpoint="token", grant_type="refresh_token")
    clock.advance(3600 - 60 - TOUCH_INTERVAL - 1)  # a second before the refresh is due
    before = await browser.get("/me")
    assert before.json()["refreshes"] == 0
    assert provider.count(endpoint="token", grant_type="refresh_token") == refreshes
    clock.advance(1)
    assert (await browser.get("/me")).json()["refreshes"] == 1
    assert provider.count(endpoint="token", grant_type="refresh_token") == refreshes + 1
    assert (await browser.get("/me")).json()["refreshes"] == 1  # and not again

    # Idle: nothing for an hour ends it, at that second and not before.
    clock.advance(3600 - 1)
    assert (await browser.get("/me")).status_code == 200
    clock.advance(3600)
    ended = await browser.get("/me")
    assert ended.status_code == 303 and "reason=" in ended.headers["location"]


async def test_the_fast_path_ends_a_session_at_its_absolute_age(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    guard = guard_factory(session_max_age=1800, session_idle_timeout=None)
    browser = browser_factory(guard)
    await login(browser, provider, "/me")
    clock.advance(1800 - 1)
    assert (await browser.get("/me")).status_code == 200
    clock.advance(1)
    ended = await browser.get("/me")
    assert ended.status_code == 303 and "reason=" in ended.headers["location"]


# -- the published states: remembered at a second sight, served only for the same store bytes ------------


class Decrypts:
    """Counts the sessions the guard decrypts and the cookies it verifies (the work the hot path skips)."""

    def __init__(self, guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sessions = 0
        self.cookies = 0
        record, verify = guard._sessions.record, guard._keyring.open_session_cookie

        def counted_record(*args: Any) -> Any:
            self.sessions += 1
            return record(*args)

        def counted_verify(value: str) -> Any:
            self.cookies += 1
            return verify(value)

        monkeypatch.setattr(guard._sessions, "record", counted_record)
        monkeypatch.setattr(guard._keyring, "open_session_cookie", counted_verify)

    def take(self) -> tuple[int, int]:
        counts = (self.cookies, self.sessions)
        self.cookies = self.sessions = 0
        return counts


async def test_a_cookie_is_served_from_memory_from_its_second_sight_on(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    await login(browser, provider, "/me")
    guard._published.by_cookie.clear()
    guard._published._seen.clear()
    work = Decrypts(guard, monkeypatch)
    value = browser.cookies["guard_session"].encode()  # remembered by the bytes the server read
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert work.take() == (1, 1) and value not in guard._published.by_cookie  # a first sight
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert work.take() == (1, 1) and value in guard._published.by_cookie  # the second: remembered
    assert not guard._published.by_cookie[value].used
    for _ in range(3):
        assert (await browser.get("/me")).json()["user"] == "alice"
        assert work.take() == (0, 0)
    assert guard._published.by_cookie[value].used  # served: kept when the cache next makes room


async def remembered(guard: Any, browser_factory: BrowserFactory, provider: OAuthTestProvider) -> Any:
    """A browser signed in to ``guard`` whose session cookie the guard remembers (its second sight)."""
    browser = browser_factory(guard)
    await login(browser, provider, "/me")
    for _ in range(2):
        await browser.get("/me")
    assert browser.cookies["guard_session"].encode() in guard._published.by_cookie
    return browser


async def test_a_remembered_state_is_served_only_while_the_store_holds_its_bytes(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = guard_factory()
    browser = await remembered(guard, browser_factory, provider)
    value = browser.cookies["guard_session"].encode()
    served = guard._published.by_cookie[value]
    # Another worker wrote a new version (here: new tokens): the next request reads that one.
    session = await guard._sessions.load(served.sid, served.key)
    assert session is not None and session.tokens is not None
    newer = dataclasses.replace(session, tokens=dataclasses.replace(session.tokens, access_token="at-newer"))
    assert await guard._sessions.replace(newer, served.key)
    work = Decrypts(guard, monkeypatch)
    guard._published.by_cookie[value].used = False  # the cache made room since its last hit
    assert (await browser.get("/me")).json()["access_token"] == "at-newer"
    assert work.take() == (0, 1)  # no HMAC: the cookie was verified when it was remembered
    assert guard._published.by_cookie[value].used  # rebuilt in its old place, and served: kept
    assert (await browser.get("/me")).json()["access_token"] == "at-newer"
    assert work.take() == (0, 0)
    # The session ended elsewhere (signed out in another worker): never served again.
    await guard.store.delete("s:" + served.sid)
    ended = await browser.get("/me")
    assert ended.status_code == 303 and "reason=session_expired" in ended.headers["location"]
    assert value not in guard._published.by_cookie
    work.take()
    # Put back the very bytes it was built from, after the guard forgot them: served only after checks.
    await guard.store.set("s:" + served.sid, served.blob, ttl=60)
    assert (await browser.get("/me")).json()["access_token"] != "at-newer"
    assert work.take() == (1, 1)


async def test_a_full_cache_keeps_the_users_it_serves(guard_factory: GuardFactory, clock: FakeClock) -> None:
    from asgi_oauth_guard._published import Published

    guard = guard_factory()
    published = Published(
        guard=guard,
        lifetime=guard._sessions.lifetime,
        refresher=guard._refresher,
        default_provider="d",
        limit=10,
    )
    tokens = TokenSet(access_token="at", issued_at=clock(), expires_at=clock() + 60)

    def sighted_twice(cookie: str) -> None:
        made = Session(sid=cookie, tokens=tokens, claims={"sub": cookie}, created_at=clock())
        state = published.state_of(made, (made.sid, b"k" * 32))
        for _ in range(2):
            published.remember(cookie.encode(), b"blob", state, published.until(made))

    sighted_twice("hot")
    sighted_twice("idle")
    for i in range(100):  # passers-by, while "hot" is served between them and "idle" is not
        published.by_cookie[b"hot"].used = True  # what the hot path does when it serves an entry
        sighted_twice(f"other-{i}")
        assert len(published.by_cookie) <= 10
    assert b"hot" in published.by_cookie and b"idle" not in published.by_cookie
    for cookie in list(published.by_cookie):  # every entry served: the cache stays bounded all the same
        published.by_cookie[cookie].used = True
    sighted_twice("new")
    assert len(published.by_cookie) <= 10 and b"new" in published.by_cookie


async def test_the_version_a_refresh_writes_is_remembered_at_once(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = guard_factory()
    browser = await remembered(guard, browser_factory, provider)
    work = Decrypts(guard, monkeypatch)
    clock.advance(3600)
    assert (await browser.get("/me")).json()["refreshes"] == 1
    work.take()
    assert (await browser.get("/me")).json()["refreshes"] == 1
    assert work.take() == (1, 1)  # the refreshed version, read once (no second sight needed)
    assert (await browser.get("/me")).json()["refreshes"] == 1
    assert work.take() == (0, 0)


async def test_a_remembered_session_keeps_six_objects_alive(
    guard_factory: GuardFactory, clock: FakeClock
) -> None:
    """The garbage collector walks every object the cache holds, on every full collection: a cold request
    pays for each (three caches held 12 per session; a dict or a cached property per record adds one)."""
    import gc

    published = guard_factory()._published
    tokens = TokenSet(access_token="at", issued_at=clock(), expires_at=clock() + 60, scope="openid email")
    blobs = [bytes([i % 256]) * 64 for i in range(500)]
    gc.collect()
    before = len(gc.get_objects())
    for i, blob in enumerate(blobs):
        session = Session(sid=f"sid-{i}", tokens=tokens, claims={"sub": f"u{i}"}, created_at=clock())
        state = published.state_of(session, (session.sid, b"k" * 32))
        published.remember(f"cookie-{i}".encode(), blob, state, published.until(session))
        published.remember(f"cookie-{i}".encode(), blob, state, published.until(session))
        del session, state
    gc.collect()
    assert len(published.by_cookie) == 500
    assert len(gc.get_objects()) - before <= 6 * 500 + 20  # and a few of the first call's own


# -- records read back without their __init__ -------------------------------------------------------------


def session(**changes: Any) -> Session:
    tokens = TokenSet(access_token="at", refresh_token="rt", id_token="id", issued_at=1.7e9, expires_at=1.7e9)
    fields: dict[str, Any] = dict(sid="s", tokens=tokens, claims={"sub": "alice"}, created_at=1.7e9)
    fields.update(changes)
    return Session(**fields)


def test_a_session_read_back_equals_the_one_written() -> None:
    for original in (session(), session(tokens=None), session(last_seen=1.8e9, refreshes=3, issuer="i")):
        loaded = Session.loads(original.dumps())
        assert loaded == original and repr(loaded) == repr(original)
        assert hash(loaded.tokens) == hash(original.tokens)
        with pytest.raises(dataclasses.FrozenInstanceError):
            loaded.sid = "other"  # type: ignore[misc]
        assert dataclasses.replace(loaded, refreshes=9).refreshes == 9


def test_an_old_record_gets_the_defaults_and_a_strange_one_is_refused() -> None:
    record = json.loads(session().dumps(1))  # format 1: an object
    del record["last_seen"], record["issuer"]
    assert Session.loads(json.dumps(record).encode()) == session()
    for strange in (
        {**record, "unknown": 1},
        {**{key: value for key, value in record.items() if key != "last_seen"}, "seen": None},  # renamed
        {key: value for key, value in record.items() if key != "created_at"},
        {**record, "tokens": {"access_token": "at"}},  # issued_at is required
        {**record, "tokens": ["at"]},
    ):
        with pytest.raises(TypeError):
            Session.loads(json.dumps(strange).encode())


def test_an_older_array_gets_the_defaults_and_a_strange_one_is_refused() -> None:
    full = json.loads(session(app_claims={"a": 1}).dumps())  # format 2: an array, SESSION_LAYOUT's order
    assert len(full) == 1 + len(SESSION_LAYOUT) and full[0] == 2
    older = full[: 1 + SESSION_LAYOUT.index("last_seen")]  # written before last_seen and what follows
    assert Session.loads(json.dumps(older).encode()) == session()
    older_tokens = [*full[:2], full[2][: 1 + TOKEN_LAYOUT.index("issued_at")], *full[3:]]
    tokens = session().tokens
    assert tokens is not None
    without_expiry = dataclasses.replace(tokens, expires_at=None)  # and what follows it: their defaults
    assert Session.loads(json.dumps(older_tokens).encode()) == session(
        tokens=without_expiry, app_claims={"a": 1}
    )
    for strange in (
        [*full, 1],  # a field this version does not know (a later one wrote it)
        full[: 1 + SESSION_LAYOUT.index("created_at")],  # created_at is required
        [1, *full[1:]],  # another format
        [3, *full[1:]],
        ["2", *full[1:]],
        [True, *full[1:]],
        [],
        [*full[:2], full[2][:1], *full[3:]],  # issued_at is required
        [*full[:2], [*full[2], 1], *full[3:]],
        [*full[:2], {"access_token": "at", "issued_at": 1.7e9}, *full[3:]],  # an object in an array
        "a string",
        7,
    ):
        with pytest.raises(TypeError):
            Session.loads(json.dumps(strange).encode())


async def test_the_published_state_is_built_as_its_init_builds_it(guard_factory: GuardFactory) -> None:
    from asgi_oauth_guard._context import GuardState, Identity

    guard = guard_factory()
    tokens = TokenSet(
        access_token="at", id_token="id", scope="openid email", issued_at=1.7e9, expires_at=1.8e9
    )
    made = session(tokens=tokens, refreshes=2, provider="idp", user_id="u-1", app_claims={"role": "admin"})
    state = guard._published.state_of(made, ("s", b"k" * 32))
    identity = Identity(
        claims=made.claims,
        access_token="at",
        token_type="Bearer",
        expires_at=1.8e9,
        scope="openid email",
        refreshes=2,
        provider="idp",
        user_id="u-1",
        app_claims={"role": "admin"},
        id_token="id",
    )
    assert state.identity == identity
    assert state == GuardState(guard=guard, identity=identity, handle=("s", b"k" * 32))
    assert state.user.identity == "alice" and state.user.is_authenticated
    assert state.auth.scopes == ["authenticated", "openid", "email"]
    assert type(state) is GuardState and type(state.identity) is Identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.identity.access_token = "other"  # type: ignore[misc, union-attr]


# -- the path of a session not served lately: published straight from its record --------------------------


def shapes() -> list[Session]:
    """Sessions of every shape the guard writes: with and without each optional field."""
    made = []
    for tokens in (
        TokenSet(access_token="at", issued_at=1.7e9, expires_at=1.7e9 + 3600, scope="openid email"),
        TokenSet(access_token="at", refresh_token="rt", id_token="id", issued_at=1.7e9, expires_at=1.7e9 + 1),
        TokenSet(access_token="at", token_type="DPoP", issued_at=1.7e9, refresh_expires_at=1.8e9),
        TokenSet(access_token="at", issued_at=1.7e9, expires_at=1.7e9),  # no lifetime: the whole leeway
        None,
    ):
        for last_seen in (None, 1.7e9 + 30):
            for extra in (
                {},
                {"provider": "idp", "user_id": "u-1", "app_claims": {"role": "admin"}, "refreshes": 4},
                {"issuer": "https://idp.example", "offline": True, "app_claims": {}},
            ):
                made.append(session(tokens=tokens, last_seen=last_seen, created_at=1.7e9, **extra))
    return made


@pytest.mark.parametrize("idle", [None, 3600])
async def test_a_record_is_published_as_its_session_would_be(
    guard_factory: GuardFactory, idle: int | None
) -> None:
    guard = guard_factory(session_max_age=8 * 3600, session_idle_timeout=idle, refresh_leeway=60)
    published, handle = guard._published, ("s", b"k" * 32)
    checked = 0
    for made in shapes():
        until = published.until(made)
        for now in (1.7e9, until - 0.01, until, until + 1):
            quiet = published.quiet(json.loads(made.dumps()), handle, now)
            # A record of format 1 (an object, written before format 2) goes the careful way, and gets there.
            assert published.quiet(json.loads(made.dumps(1)), handle, now) is None
            assert Session.loads(made.dumps(1)) == Session.loads(made.dumps()) == made
            if made.tokens is None or now >= until:
                assert quiet is None  # the careful way: no tokens, or a check is due
                continue
            assert quiet is not None
            state, quiet_until = quiet
            expected = published.state_of(made, handle)
            assert quiet_until == until and state == expected and state.identity == expected.identity
            assert type(state.identity) is type(expected.identity) and type(state) is type(expected)
            assert state.user.identity == expected.user.identity == "alice"
            assert state.auth.scopes == expected.auth.scopes
            checked += 1
    assert checked >= 30  # every shape with tokens, at least once before its deadline


@pytest.mark.parametrize("idle", [None, 3600])
async def test_a_record_of_another_shape_goes_the_careful_way(
    guard_factory: GuardFactory, idle: int | None
) -> None:
    published = guard_factory(session_idle_timeout=idle)._published
    record = json.loads(session().dumps())
    tokens = record[2]
    at = {name: 1 + i for i, name in enumerate(SESSION_LAYOUT)}
    strange: list[Any] = [
        record[: at["last_seen"]],  # an older record: its defaults
        [*record, 1],  # a field added
        [1, *record[1:]],  # another format
        [3, *record[1:]],
        json.loads(session().dumps(1)),  # format 1
        [*record[:2], tokens[:-1], *record[3:]],  # an older TokenSet
        [*record[:2], [*tokens, 1], *record[3:]],
        [*record[:2], "at", *record[3:]],
        [*record[:2], {"access_token": "at", "issued_at": 1.7e9}, *record[3:]],
        [*record[: at["created_at"]], "yesterday", *record[at["created_at"] + 1 :]],
        [*record[:2], [*tokens[:5], None, *tokens[6:]], *record[3:]],  # no issued_at
        [*record[:2], [*tokens[:6], "later", *tokens[7:]], *record[3:]],
        tuple(record),
    ]
    for raw in strange:
        assert published.quiet(raw, ("s", b"k" * 32), 1.0) is None, raw
    assert published.quiet(record, ("s", b"k" * 32), 1.0) is not None  # the one the guard writes
