"""Links between the pages work: every relative link names a file of the repository, every #anchor a heading."""

from __future__ import annotations

from pathlib import Path

import pytest

from .markdown import DOCS, ROOT, anchors, links


def _targets() -> list[object]:
    return [
        pytest.param(path, target, id=f"{path.relative_to(ROOT)}->{target}")
        for path in DOCS
        for target in links(path)
        if not target.startswith(("http://", "https://", "mailto:"))
    ]


def test_the_pages_link_to_each_other() -> None:
    readme = set(links(ROOT / "README.md"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in {t.partition("#")[0] for t in readme}, (
            f"README.md does not link {page.name}"
        )


@pytest.mark.parametrize(("path", "target"), _targets())
def test_relative_link_resolves(path: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{path.relative_to(ROOT)} links {target}, which does not exist"
    if anchor:
        assert linked.suffix == ".md", f"{target}: an anchor into a file that is not Markdown"
        assert anchor in anchors(linked), f"{target}: no such heading; anchors are {sorted(anchors(linked))}"
