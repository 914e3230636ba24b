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
section.demo{box-sizing:border-box;max-width:52rem;margin:0 auto 3rem;background:#fff;
border:1px solid #d0d7de;border-radius:8px;padding:1.5rem 2rem}
h2{font-size:1.1rem;margin:1.4rem 0 .6rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.25rem 1rem .25rem 0;border-bottom:1px solid #eaeef2}
td.n{text-align:right}
ul.try{list-style:none;padding:0;margin:0;display:grid;gap:.5rem}
ul.try li{display:flex;gap:.8rem;align-items:baseline}
ul.try button{min-width:17rem;text-align:left}
#result{border:1px solid #d0d7de;border-radius:6px;padding:.8rem 1rem;margin-top:1rem;background:#f6f8fa}
#result .naive strong{color:#cf222e}
#result .did strong{color:#1a7f37}
#result svg{max-width:100%;height:auto;background:#fff;border:1px solid #eaeef2}
ol#timeline{max-height:16rem;overflow:auto;font:.85rem ui-monospace,monospace;padding-left:0;list-style:none}
ol#timeline li{padding:.1rem 0;border-bottom:1px solid #f0f2f4}
#provider-state{font-weight:600}
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


def _page(title: str, body: str, script: str = "", *, after: str = "") -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main>{after}{f'<script>{script}</script>' if script else ''}</body></html>\n"
    )


# The demo's panel (the embedded provider only): what the guard did beside what the provider saw, one-click
# experiments (examples/_demo.py runs them) and the live timeline of the guard's events.
_COUNTS = (
    ("exchanges", "code exchanges", "exchanges"),
    ("duplicates", "duplicate callbacks absorbed", None),
    ("sign_ins", "sign-ins", None),
    ("refreshes", "refreshes", "refreshes"),
    ("shared", "requests that shared a refresh", None),
    ("refresh_failures", "failed refreshes", "invalid_grant"),
    ("relogins", "re-login answers", None),
    ("sign_outs", "sign-outs", "revocations"),
)
_PROVIDER_LABELS = {
    "exchanges": "code exchanges",
    "refreshes": "refresh requests",
    "invalid_grant": "invalid_grant answers",
    "revocations": "revocations",
}
_EXPERIMENTS = (
    (
        "duplicate-callbacks",
        "Replay the callback in 5 tabs at once",
        "a new sign-in whose callback 5 tabs load",
    ),
    ("stampede", "Fire 50 requests at an expired token", "the clock jumps past the token's expiry"),
    ("revoke", "Revoke the grant", "as a password change does, then one request"),
    ("sign-out-elsewhere", "Sign out in another tab", "this tab keeps its cookie"),
    ("provider-down", "Take the provider down for 10 s", "then a request due for a refresh, and one expired"),
)


def _demo_panel() -> str:
    rows = "".join(
        f'<tr><td>{escape(label)}</td><td class="n" id="guard-{key}">0</td>'
        + (
            f'<td class="n" id="provider-{other}">0</td>'
            f"<td><small>{escape(_PROVIDER_LABELS[other])}</small></td>"
            if other
            else "<td></td><td></td>"
        )
        + "</tr>"
        for key, label, other in _COUNTS
    )
    buttons = "".join(
        f'<li><button class="secondary" id="try-{name}" data-experiment="{name}"'
        + (' data-seconds="10"' if name == "provider-down" else "")
        + f">{escape(label)}</button><small>{escape(hint)}</small></li>"
        for name, label, hint in _EXPERIMENTS
    )
    return (
        '<section class="demo" id="demo">'
        "<h2>What the guard did</h2>"
        '<table><thead><tr><th></th><th>the guard</th><th colspan="2">the provider saw</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        '<p><small>Provider: <span id="provider-state">?</span></small></p>'  # the first poll says
        "<h2>Try this</h2>"
        f'<ul class="try">{buttons}</ul>'
        '<div id="result" hidden><h3 id="result-title"></h3>'
        '<p class="naive"><strong>A naive client:</strong> <span id="result-naive"></span></p>'
        '<p class="did"><strong>The guard:</strong> <span id="result-did"></span></p>'
        '<p id="result-counts"></p><div id="result-timeline"></div></div>'
        "<h2>Timeline of the guard's events</h2>"
        '<ol id="timeline"></ol>'
        "</section>"
    )


_DEMO_SCRIPT = """
let after = 0;  // the last event shown: polls may overlap (the interval, an experiment's end)
const say = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = value; };
async function events() {
  const response = await fetch("demo/events?after=" + after, {headers: {accept: "application/json"}});
  if (!response.ok) return;
  const body = await response.json();
  for (const [key, value] of Object.entries(body.guard)) say("guard-" + key, value);
  for (const [key, value] of Object.entries(body.provider)) say("provider-" + key, value);
  say("provider-state", body.provider_down ? "down" : "up");
  const list = document.getElementById("timeline");
  for (const event of body.events) {
    if (event.n <= after) continue;
    after = event.n;
    const item = document.createElement("li");
    const when = new Date(event.at * 1000).toISOString().slice(11, 23);
    const why = [event.reason, event.detail].filter(Boolean).join(", ");
    const lane = event.lane ? "  " + event.lane : "";
    item.textContent = `${when}  ${event.kind}${why ? " (" + why + ")" : ""}${lane}`;
    item.dataset.kind = event.kind;
    list.prepend(item);
  }
}
const PROVIDER = {exchanges: "code exchanges", refreshes: "refresh requests",
                  invalid_grant: "invalid_grant answers", revocations: "revocations"};
const GUARD = {exchanges: "code exchanges", duplicates: "duplicates absorbed", refreshes: "refreshes",
               shared: "shared refreshes", refresh_failures: "failed refreshes", relogins: "re-logins",
               sign_outs: "sign-outs"};
function show(result) {
  document.getElementById("result").hidden = false;
  document.getElementById("result").dataset.experiment = result.experiment;
  say("result-title", result.title);
  say("result-naive", result.naive || "");
  say("result-did", result.did || "");
  const counts = document.getElementById("result-counts");
  counts.textContent = "";
  const add = (id, text) => {
    const span = document.createElement("span");
    span.id = id; span.textContent = text; counts.append(span, document.createTextNode(" · "));
  };
  for (const [key, label] of Object.entries(GUARD)) {
    add("result-guard-" + key, `${label}: ${(result.guard_delta || {})[key] ?? 0}`);
  }
  for (const [key, label] of Object.entries(PROVIDER)) {
    add("result-provider-" + key, `provider ${label}: ${(result.provider_delta || {})[key] ?? 0}`);
  }
  document.getElementById("result-timeline").innerHTML = result.timeline || "";
}
const kept = sessionStorage.getItem("demo-result");
if (kept) show(JSON.parse(kept));
for (const button of document.querySelectorAll("button[data-experiment]")) {
  button.addEventListener("click", async () => {
    const buttons = document.querySelectorAll("button[data-experiment]");
    buttons.forEach(b => b.disabled = true);
    const options = button.dataset.seconds ? {seconds: Number(button.dataset.seconds)} : {};
    try {
      const response = await fetch("demo/try/" + button.dataset.experiment, {
        method: "POST", headers: {"content-type": "application/json", accept: "application/json"},
        body: JSON.stringify(options),
      });
      const result = await response.json();
      sessionStorage.setItem("demo-result", JSON.stringify(result));
      show(result);
      say("provider-state", result.provider_down ? "down" : "up");  // before any poll that began earlier
      await events();
    } finally {
      buttons.forEach(b => b.disabled = false);
    }
  });
}
events();
setInterval(events, 1000);
"""


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
            _DEMO_SCRIPT if demo else "",
            after=_demo_panel() if demo else "",
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
    script = (_SCRIPT if seconds is not None else "") + (_DEMO_SCRIPT if demo else "")
    return _page(title, body, script, after=_demo_panel() if demo else "")


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
