"""The package as people install it: the built wheel, not this checkout, in a fresh virtual environment.

``python -m build`` makes the sdist and, from it, the wheel; the wheel goes into a new venv with
``--no-index --find-links`` (its dependencies resolve normally, from the index or pip's cache). There, every
quick start of README.md and docs/quickstart.md runs against the embedded provider (served on loopback) and
passes ``mypy --strict``; the quick start with two providers (Google and GitHub) signs a user in with each,
through the embedded provider playing it (``quickstart_driver.through_mimics``).
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from ..docs.test_quickstart_types import module_name, quick_start_blocks

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("quickstart_driver.py")
EXTRAS = "fastapi,flask,django"


def run(*command: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's python, with the wheel (and its extras) installed, uvicorn and mypy beside it."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    (wheel,) = dist.glob("*.whl")
    # This process's pip installs into the new venv; --no-compile: the tests do not need .pyc files made.
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check"]
    pip.append("--no-compile")
    # This wheel by its file URL (never an index's asgi-oauth-guard); its dependencies resolve as usual.
    run(*pip, f"asgi-oauth-guard[{EXTRAS}] @ {wheel.as_uri()}", "uvicorn", "mypy")
    return python


def test_the_wheel_holds_the_package_its_license_and_metadata(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read("asgi_oauth_guard-0.1.0.dist-info/METADATA").decode())
    for name in (
        "asgi_oauth_guard/py.typed",
        "asgi_oauth_guard/integrations/django.py",
        "asgi_oauth_guard/testing/pytest_plugin.py",
        "asgi_oauth_guard-0.1.0.dist-info/licenses/LICENSE",
    ):
        assert name in names, name
    assert not any(n.startswith(("integrations/", "tests/", "examples/")) for n in names)
    assert metadata["License-Expression"] == "MIT" and metadata["Author"] == "the asgi-oauth-guard authors"
    assert {"fastapi", "flask", "django", "redis"} <= set(metadata.get_all("Provides-Extra") or [])
    (sdist,) = dist.glob("*.tar.gz")
    listing = run("tar", "tzf", sdist)
    assert "/docs/quickstart.md" in listing and "/examples/django_app.py" in listing  # README's links


@pytest.mark.parametrize("block", quick_start_blocks(), ids=lambda b: b.id)
def test_each_quick_start_runs_from_the_installed_wheel(
    installed: Path, block: object, tmp_path: Path
) -> None:
    path = tmp_path / f"{module_name(block)}.py"  # type: ignore[arg-type]
    path.write_text(block.code, encoding="utf-8")  # type: ignore[attr-defined]
    out = run(installed, DRIVER, path, cwd=tmp_path, timeout=120)
    assert "signed in; routes answered:" in out


def test_the_quick_starts_pass_mypy_strict_against_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    paths = []
    for block in quick_start_blocks():
        path = tmp_path / f"{module_name(block)}.py"
        path.write_text(block.code, encoding="utf-8")
        paths.append(path)
    config = ROOT / "pyproject.toml"  # python_version; Django ships no types
    run(
        installed,
        "-m",
        "mypy",
        "--strict",
        "--config-file",
        config,
        "--no-error-summary",
        *paths,
        cwd=tmp_path,
    )
