from __future__ import annotations

from collections.abc import Iterable
from html import escape

__all__ = ["message_page", "sign_in_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1f2328;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem}
h1{font-size:1.3rem;margin:0 0 .5rem}
p{color:#57606a;line-height:1.4}
code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem;border-radius:6px;cursor:pointer;
border:1px solid #1f6feb;background:#1f6feb;color:#fff}
button.secondary{background:#fff;color:#57606a;border-color:#d0d7de}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def sign_in_page(*, issuer: str, client_id: str, scope: str, interaction: str, users: Iterable[str]) -> str:
    # The form carries its own interaction id, so the page works without cookies and may be posted twice.
    buttons = "".join(
        f'<button type="submit" name="sub" value="{escape(sub)}">Sign in as {escape(sub)}</button>'
        for sub in users
    )
    scope_line = f" for <code>{escape(scope)}</code>" if scope else ""
    return _page(
        "Sign in",
        "<h1>Sign in</h1>"
        f"<p>Test provider <code>{escape(issuer)}</code>. The application <code>{escape(client_id)}</code> "
        f"asks you to sign in{scope_line}.</p>"
        '<form method="post" action="authorize">'
        f'<input type="hidden" name="interaction" value="{escape(interaction)}">'
        f"{buttons}"
        '<button type="submit" name="deny" value="1" class="secondary">Cancel</button>'
        "</form>",
    )


def message_page(title: str, message: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
