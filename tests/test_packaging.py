"""What people see before they run anything: the license, the metadata, how to install, where the docs are.
(The built wheel itself, installed in a fresh venv, is tests/packaging.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_license_file_is_the_mit_license_the_metadata_names() -> None:
    assert re.search(r'^license = "MIT"$', PYPROJECT, flags=re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', PYPROJECT, flags=re.M)
    authors = re.search(r'^authors = \[\{ name = "([^"]+)" \}\]$', PYPROJECT, flags=re.M)
    assert authors is not None
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert f"Copyright (c) 2026 {authors.group(1)}\n" in text
    assert (
        "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    )


def test_the_readme_says_how_to_install_today_and_where_the_repository_is() -> None:
    install = README.partition("## Install\n")[2].partition("\n## ")[0]
    assert 'pip install ".[fastapi]"' in install  # from a checkout
    git = re.search(r'"asgi-oauth-guard\[fastapi\] @ git\+(https://[^"]+)"', install)
    assert git is not None, "the README gives no Git URL to install from"
    urls = dict(
        re.findall(
            r'^(\w+) = "([^"]+)"$', PYPROJECT.partition("[project.urls]\n")[2].partition("\n[")[0], re.M
        )
    )
    assert git.group(1) == urls["Source"] == urls["Homepage"]  # one address to replace, in both places
    assert urls["Documentation"] == urls["Source"] + "/tree/main/docs"
    assert 'pip install "asgi-oauth-guard[fastapi]"' in install  # once it is on an index


def test_the_readme_says_where_its_relative_links_lead() -> None:
    """On an index's page the README's relative links to docs/ lead nowhere; the README says where they are."""
    assert (
        "The documentation is\nthe `docs/` folder of the repository (and of the source distribution)"
        in README
    )
    assert re.search(r"^graft docs$", (ROOT / "MANIFEST.in").read_text(encoding="utf-8"), flags=re.M)


def test_nothing_in_the_repository_refers_to_files_outside_it() -> None:
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    # The session's shared notes and workspace (spelled in pieces, so this file does not match itself).
    outside = re.compile(
        "|".join([r"\.\./" + "shared", "/" + "work/", r"\b" + "DESIGN" + r"\.md", r"\b" + "STYLE" + r"\.md"])
    )
    found = []
    for name in filter(None, tracked):
        path = ROOT / name
        if (
            path.suffix in (".png", ".jpg", ".lock")
            or name.endswith("package-lock.json")
            or not path.is_file()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{name}: {m.group(0)}" for m in outside.finditer(text)]
    assert not found, found
