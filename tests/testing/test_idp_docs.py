"""The example in docs/testing.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _example(name: str) -> str:
    match = re.search(
        rf"<!-- example: {name} -->\n(?:<!-- [^\n]* -->\n)?```python\n(.*?)```", DOC.read_text(), re.S
    )
    assert match is not None, f"docs/testing.md has no example {name!r}"
    return match.group(1)


@pytest.mark.anyio
async def test_relogin_example() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_example("relogin"), str(DOC), "exec"), namespace)
    test = namespace["test_revoked_grant_asks_for_a_new_login"]
    await test()  # type: ignore[operator]


@pytest.mark.anyio
async def test_signed_in_example() -> None:
    namespace: dict[str, object] = {"__name__": "docs_testing_signed_in"}
    exec(compile(_example("signed-in"), str(DOC), "exec"), namespace)
    await namespace["test_me_shows_the_users_groups"]()  # type: ignore[operator]


def test_fixtures_example_runs_under_pytest_with_the_plugin(tmp_path: Path) -> None:
    """As a user runs it: its own conftest.py enables the plugin, pytest collects the test and runs it."""
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["asgi_oauth_guard.testing.pytest_plugin"]\n', encoding="utf-8"
    )
    (tmp_path / "test_app.py").write_text(_example("fixtures"), encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b[1-9]\d* passed", done.stdout) and "skipped" not in done.stdout, done.stdout
