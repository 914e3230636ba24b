"""A timeline picture (SVG) of one demo experiment, drawn from its real event log.

One row per lane (a tab, a request) with its request as a bar from arrival to answer, the guard's events
as marks on it, and a row for the provider's token and revocation calls, as the provider recorded them.
Pure: the same log always draws the same picture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from html import escape

__all__ = ["Mark", "Span", "timeline_svg"]


@dataclasses.dataclass(frozen=True)
class Span:
    lane: str
    start: float
    end: float
    status: int


@dataclasses.dataclass(frozen=True)
class Mark:
    at: float
    lane: str | None
    kind: str
    label: str | None = None


COLORS = {
    "code_exchange": "#1f6feb",
    "refresh": "#1f6feb",
    "login": "#1a7f37",
    "duplicate_absorbed": "#bf8700",
    "refresh_shared": "#bf8700",
    "refresh_failed": "#cf222e",
    "relogin": "#cf222e",
    "logout": "#57606a",
    "session_ended": "#57606a",
    "authorization_code": "#8250df",
    "refresh_token": "#8250df",
    "revoke": "#8250df",
}
NAMES = {
    "authorization_code": "provider: code exchange",
    "refresh_token": "provider: refresh",
    "revoke": "provider: revocation",
    "code_exchange": "guard: exchange answered",
    "login": "guard: signed in",
    "duplicate_absorbed": "guard: duplicate absorbed",
    "refresh": "guard: refreshed",
    "refresh_shared": "guard: refresh shared",
    "refresh_failed": "guard: refresh failed",
    "relogin": "guard: re-login answer",
    "logout": "guard: signed out",
    "session_ended": "guard: session ended",
}
WIDTH = 860
GUTTER = 118
RIGHT = 24
TOP = 40


def timeline_svg(
    title: str,
    *,
    spans: Sequence[Span],
    marks: Sequence[Mark],
    provider: Sequence[Mark],
    started: float,
) -> str:
    lanes: list[str] = ["provider"]
    for lane in [s.lane for s in sorted(spans, key=lambda s: s.start)] + [m.lane or "guard" for m in marks]:
        if lane not in lanes:
            lanes.append(lane)
    many = len(lanes) > 14
    row = 9 if many else 22
    end = max([s.end for s in spans] + [m.at for m in (*marks, *provider)] + [started + 0.001])
    span_ms = max((end - started) * 1000, 1.0)
    plot = WIDTH - GUTTER - RIGHT
    height = TOP + row * len(lanes) + 70

    def x(at: float) -> float:
        return GUTTER + (at - started) * 1000 / span_ms * plot

    def y(lane: str | None) -> float:
        return TOP + row * lanes.index(lane or "guard") + row / 2

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui,sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="20" font-size="14" font-weight="600" fill="#1f2328">{escape(title)}</text>',
    ]
    for i, lane in enumerate(lanes):
        if not many or lane == "provider" or i % 5 == 0:
            out.append(
                f'<text x="{GUTTER - 8}" y="{y(lane) + 4:.1f}" text-anchor="end" '
                f'fill="#57606a">{escape(lane)}</text>'
            )
        out.append(
            f'<line x1="{GUTTER}" x2="{WIDTH - RIGHT}" y1="{y(lane):.1f}" y2="{y(lane):.1f}" '
            'stroke="#eaeef2"/>'
        )
    bar = max(3, row - 8)
    for s in spans:
        color = "#ddd3f3" if s.lane == "provider" else "#d0d7de" if s.status < 400 else "#ffcecb"
        out.append(
            f'<rect x="{x(s.start):.1f}" y="{y(s.lane) - bar / 2:.1f}" '
            f'width="{max(x(s.end) - x(s.start), 1):.1f}" height="{bar}" rx="2" fill="{color}">'
            f"<title>{escape(s.lane)}: {s.status}</title></rect>"
        )
    radius = 3 if many else 5
    for m in [*provider, *marks]:
        color = COLORS.get(m.kind, "#57606a")
        label = f"{NAMES.get(m.kind, m.kind)}{f' ({m.label})' if m.label else ''}"
        out.append(
            f'<circle cx="{x(m.at):.1f}" cy="{y(m.lane):.1f}" r="{radius}" fill="{color}">'
            f"<title>{escape(label)}</title></circle>"
        )
    axis = TOP + row * len(lanes) + 6
    out.append(f'<line x1="{GUTTER}" x2="{WIDTH - RIGHT}" y1="{axis}" y2="{axis}" stroke="#8c959f"/>')
    step = _step(span_ms)
    tick = 0.0
    while tick <= span_ms + 1e-9:
        tx = GUTTER + tick / span_ms * plot
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{axis}" y2="{axis + 4}" stroke="#8c959f"/>')
        out.append(
            f'<text x="{tx:.1f}" y="{axis + 16}" text-anchor="middle" fill="#57606a">{tick:g} ms</text>'
        )
        tick += step
    used = list(dict.fromkeys(m.kind for m in (*provider, *marks)))
    lx = 12.0
    for kind in used:
        name = NAMES.get(kind, kind)
        out.append(f'<circle cx="{lx + 5:.1f}" cy="{axis + 40}" r="5" fill="{COLORS.get(kind, "#57606a")}"/>')
        out.append(f'<text x="{lx + 14:.1f}" y="{axis + 44}" fill="#1f2328">{escape(name)}</text>')
        lx += 24 + 6.2 * len(name)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _step(span_ms: float) -> float:
    """A round tick interval giving 4 to 10 ticks."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if span_ms / step <= 10:
            return float(step)
    return 10000.0 * (span_ms // 100000 + 1)
