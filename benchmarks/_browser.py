"""What a browser sends with an API call from the app's own page: its headers and the app's other cookies.

The earlier benchmark sent four short headers and the session cookie alone. A browser's ``fetch("/api/me")``
sends about fifteen headers (client hints, fetch metadata, a long User-Agent and Accept-Language), and its
Cookie header carries every cookie the site set: analytics, consent, CSRF, preferences. Everything in the
guard that looks at headers walks these, so the request is measured as a browser would send it.
"""

from __future__ import annotations

import hashlib

HOST = "app.bench.test"
OTHER_COOKIES = 1024  # bytes of the app's other cookies in the default request

_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# Chrome 131's headers for a same-origin fetch() of JSON, in its order; the Cookie header goes in its place.
_BROWSER_HEADERS: tuple[tuple[str, str], ...] = (
    ("connection", "keep-alive"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("user-agent", _UA),
    ("accept", "application/json, text/plain, */*"),
    ("sec-ch-ua", '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("referer", f"http://{HOST}/dashboard"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8,fr;q=0.7"),
    ("cookie", ""),
    ("priority", "u=1, i"),
)
# The kinds of cookie a site sets besides its session, each a name and a value length.
_KINDS = (
    ("_ga", 26),
    ("_ga_7QX1B2C3D4", 40),
    ("_gid", 27),
    ("csrftoken", 32),
    ("cookie_consent", 120),
    ("theme", 4),
    ("_hjSessionUser_3123456", 150),
    ("_fbp", 30),
    ("intercom-id-abc123", 36),
    ("locale", 5),
)


def _value(seed: str, length: int) -> str:
    text = ""
    while len(text) < length:
        text += hashlib.sha256((seed + str(len(text))).encode()).hexdigest()
    return text[:length]


def other_cookies(size: int) -> list[str]:
    """``name=value`` pairs of the app's other cookies, about ``size`` bytes in all (with ``"; "``)."""
    pairs: list[str] = []
    total = 0
    i = 0
    while total < size:
        name, length = _KINDS[i % len(_KINDS)]
        if i >= len(_KINDS):
            name = f"{name}_{i // len(_KINDS)}"
        pair = f"{name}={_value(name, length)}"
        left = size - total - 2
        if len(pair) > left:  # the last one shortened to land on the size
            pair = pair[: max(len(name) + 2, left)]
        pairs.append(pair)
        total += len(pair) + 2
        i += 1
    return pairs


def cookie_header(session: str, *, others: int = OTHER_COOKIES) -> str:
    """The Cookie header: the app's other cookies with ``session`` (``name=value``, or "") among them.

    Browsers list longer paths first, then older cookies first: the session cookie, set at sign-in after
    the analytics and consent ones, comes after about half of them."""
    pairs = other_cookies(others) if others > 0 else []
    if session:
        pairs.insert((len(pairs) + 1) // 2, session)
    return "; ".join(pairs)


def header_pairs(cookie: str, *, host: str = HOST) -> list[tuple[str, str]]:
    """The request's headers as text, Host first (wrk and uvicorn add their own Host)."""
    pairs = [("host", host)]
    for name, value in _BROWSER_HEADERS:
        if name == "cookie":
            if cookie:
                pairs.append((name, cookie))
        else:
            pairs.append((name, value))
    return pairs


def headers(cookie: str, *, host: str = HOST) -> list[tuple[bytes, bytes]]:
    """The request's headers as an ASGI server passes them: lower-case names, latin-1 bytes."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in header_pairs(cookie, host=host)]


def minimal_headers(cookie: str, *, host: str = HOST) -> list[tuple[bytes, bytes]]:
    """The earlier benchmark's request: four short headers and the session cookie alone."""
    pairs = [
        (b"host", host.encode()),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, deflate"),
    ]
    if cookie:
        pairs.append((b"cookie", cookie.encode("latin-1")))
    return pairs
