"""The quick starts pass ``mypy --strict`` as written: what people copy type-checks in their projects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .markdown import ROOT, Block, blocks

QUICK_STARTS = [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]


def quick_start_blocks() -> list[Block]:
    """The Python blocks of the README and the quick start: every app people are told to copy."""
    return [b for path in QUICK_STARTS for b in blocks(path) if b.lang == "python" and b.marker != "no-test"]


def module_name(block: Block) -> str:
    return "quickstart_" + re.sub(r"\W", "_", block.id.lower())


def write_modules(directory: Path) -> list[Path]:
    paths = []
    for block in quick_start_blocks():
        path = directory / f"{module_name(block)}.py"
        path.write_text(block.code, encoding="utf-8")
        paths.append(path)
    return paths


def test_every_framework_has_a_quick_start() -> None:
    code = "\n".join(b.code for b in quick_start_blocks())
    for framework in ("fastapi", "starlette", "flask", "django"):
        assert f"asgi_oauth_guard.integrations.{framework}" in code or (
            f"asgi_oauth_guard.integrations import {framework}" in code
        ), framework


def installed_layout(directory: Path) -> Path:
    """The package as a wheel installs it (``integrations/`` inside it), made of links to this checkout:
    mypy cannot follow the import hook of an editable install."""
    package = directory / "asgi_oauth_guard"
    package.mkdir(parents=True)
    for entry in (ROOT / "asgi_oauth_guard").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "integrations").symlink_to(ROOT / "integrations")
    return directory


def mypy_strict(paths: list[Path], *, python: str, env: dict[str, str] | None = None) -> None:
    # The project's own mypy settings (python_version, untyped third-party modules), on these files only.
    command = [python, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml")]
    done = subprocess.run(
        [*command, "--no-error-summary", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_quick_starts_pass_mypy_strict(tmp_path: Path) -> None:
    paths = write_modules(tmp_path)
    assert len(paths) >= 6
    layout = installed_layout(tmp_path / "site")
    mypy_strict(paths, python=sys.executable, env={**os.environ, "MYPYPATH": str(layout)})
