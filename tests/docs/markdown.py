"""Reading the documentation's Markdown: its fenced blocks with their test markers, its links and headings."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# A marker is an HTML comment on the line just above a fence (invisible on GitHub).
MARKERS = {
    "<!-- no-test -->": "no-test",  # a fragment that cannot run alone: keep these few
    "<!-- test: build-only -->": "build-only",  # names a real provider: build the app, sign nobody in
    # names providers the embedded provider mimics (presets): each one signs a user in through its mimic
    "<!-- test: mimics -->": "mimics",
}
_FENCE = re.compile(r"^(`{3,})([\w+-]*)[^\n]*$")


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{i + 1}: a code fence is never closed")
        above = lines[i - 1].strip() if i > 0 else ""
        if above.startswith(("<!-- test", "<!-- no-test")) and above not in MARKERS:
            raise AssertionError(f"{path.relative_to(ROOT)}:{i}: unknown marker {above!r}")
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=lang,
                code="\n".join(lines[i + 1 : end]) + "\n",
                marker=MARKERS.get(above),
            )
        )
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def prose(path: Path) -> str:
    """The file without its fenced blocks (so links and headings inside code are not taken for real)."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"^(`{3,})[^\n]*\n.*?^\1[ \t]*$", "", text, flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of ``path``: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", prose(path), flags=re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(path: Path) -> list[str]:
    """Targets of the Markdown links in ``path``'s prose (not in code)."""
    text = re.sub(r"`[^`\n]*`", "", prose(path))
    return re.findall(r"\]\(([^)\s]+)\)", text)
