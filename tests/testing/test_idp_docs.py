"""The example in docs/testing.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _example(name: str) -> str:
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None, f"docs/testing.md has no example {name!r}"
    return match.group(1)


@pytest.mark.anyio
async def test_relogin_example() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_example("relogin"), str(DOC), "exec"), namespace)
    test = namespace["test_revoked_grant_asks_for_a_new_login"]
    await test()  # type: ignore[operator]
