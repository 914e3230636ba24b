"""The pages the three examples show: the same HTML and JSON whatever the framework."""

from __future__ import annotations

from html import escape
from typing import Any

from asgi_oauth_guard import Identity, Reason

__all__ = ["home_page", "me_json", "public_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1f2328;margin:0}
main{max-width:34rem;margin:3rem auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem}
h1{font-size:1.35rem;margin:0 0 1rem}
p,dd{line-height:1.45}
dl{display:grid;grid-template-columns:auto 1fr;gap:.4rem 1rem}
dt{color:#57606a}
dd{margin:0;font-variant-numeric:tabular-nums}
code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
.notice{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.6rem .8rem}
.row{display:flex;flex-wrap:wrap;gap:.5rem;margin:1.2rem 0}
form{margin:0}
button,a.button{display:inline-block;padding:.55rem 1rem;font-size:.95rem;border-radius:6px;cursor:pointer;
border:1px solid #1f6feb;background:#1f6feb;color:#fff;text-decoration:none}
button.secondary,a.button.secondary{background:#fff;color:#1f2328;border-color:#d0d7de}
small{color:#57606a}
"""

# Counts the token's lifetime down, and calls /api/me every few seconds: the guard refreshes the token when
# it is due, and when the provider has revoked the grant the call gets 401 and the page reloads to say so.
_SCRIPT = """
const remaining = document.getElementById("remaining");
const refreshes = document.getElementById("refreshes");
let expiresAt = Date.now() / 1000 + Number(remaining.dataset.seconds);
function tick() {
  remaining.textContent = Math.max(0, Math.round(expiresAt - Date.now() / 1000)) + " s";
}
async function poll() {
  const response = await fetch("api/me", {headers: {accept: "application/json"}});
  if (response.status === 401) { location.reload(); return; }
  if (!response.ok) return;
  const me = await response.json();
  expiresAt = Date.now() / 1000 + me.expires_in;
  refreshes.textContent = me.refreshes;
  tick();
}
setInterval(tick, 1000);
setInterval(poll, 5000);
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main>{f'<script>{script}</script>' if script else ''}</body></html>\n"
    )


def _remaining(identity: Identity, now: float) -> int | None:
    return None if identity.expires_at is None else max(0, round(identity.expires_at - now))


def home_page(
    framework: str,
    identity: Identity | None,
    reason: Reason | None,
    *,
    now: float,
    demo: bool,
    root: str = "",
) -> str:
    """``/``: who is signed in, the access token's remaining lifetime and refreshes; or a sign-in link.

    ``root``: the root path the app is mounted at (``/app``), which every link starts with."""
    root = escape(root.rstrip("/"))
    title = f"asgi-oauth-guard: {framework} example"
    heading = f"<h1>{escape(title)}</h1>"
    if identity is None:
        notice = (
            f'<p class="notice" id="reason" data-reason="{reason.value}">{escape(reason.message)}</p>'
            if reason is not None
            else ""
        )
        return _page(
            title,
            f'{heading}{notice}<p id="status">You are not signed in.</p>'
            '<div class="row"><a class="button" id="sign-in" '
            f'href="{root}/auth/login?next={root}/">Sign in</a>'
            f'<a class="button secondary" href="{root}/public">A public page</a></div>',
        )
    claims = identity.claims
    name = escape(str(claims.get("name") or identity.sub))
    email = escape(str(claims.get("email") or ""))
    seconds = _remaining(identity, now)
    lifetime = "no expiry" if seconds is None else f"{seconds} s"
    buttons = ""
    if demo:
        buttons = (
            f'<form method="post" action="{root}/demo/expire"><button id="expire" class="secondary">'
            "Expire the access token</button></form>"
            f'<form method="post" action="{root}/demo/revoke"><button id="revoke" class="secondary">'
            "Revoke the grant</button></form>"
        )
    body = (
        f"{heading}"
        f'<p id="status">Signed in as <strong id="user">{name}</strong>'
        f"{f' &lt;{email}&gt;' if email else ''}.</p>"
        "<dl>"
        f"<dt>Subject</dt><dd><code>{escape(identity.sub)}</code></dd>"
        f'<dt>Access token expires in</dt><dd id="remaining" data-seconds="{seconds or 0}">{lifetime}</dd>'
        f'<dt>Refreshes</dt><dd id="refreshes">{identity.refreshes}</dd>'
        "</dl>"
        f'<div class="row">{buttons}'
        f'<form method="post" action="{root}/auth/logout">'
        '<button id="sign-out">Sign out</button></form></div>'
        f'<p><small><a href="{root}/api/me">/api/me</a> · <a href="{root}/public">/public</a>'
        + (
            " · The test provider issues short-lived tokens: the guard refreshes them before they expire."
            " Expire one and the next API call refreshes it; revoke the grant and the refresh is refused."
            if demo
            else ""
        )
        + "</small></p>"
    )
    return _page(title, body, _SCRIPT if seconds is not None else "")


def me_json(identity: Identity, *, now: float, show_token: bool) -> dict[str, Any]:
    """``/api/me``. ``show_token`` only for the embedded provider, whose tokens are worthless elsewhere."""
    claims = identity.claims
    body: dict[str, Any] = {
        "sub": identity.sub,
        "name": claims.get("name"),
        "email": claims.get("email"),
        "expires_at": identity.expires_at,
        "expires_in": _remaining(identity, now),
        "refreshes": identity.refreshes,
        "scope": identity.scope,
    }
    if show_token:
        body["access_token"] = identity.access_token
    return body


def public_page(framework: str, *, root: str = "") -> str:
    """``/public``: served to everyone, signed in or not."""
    return _page(
        "Public",
        "<h1>A public page</h1><p>No sign-in needed here.</p>"
        f'<p><a href="{escape(root.rstrip("/"))}/">Back to the {escape(framework)} example</a></p>',
    )
