"""scripts/mutation_conformance.py stays runnable: each check it removes is still in the source, exactly
once, and every refusing case is the target of at least one removal (so each has been shown to fail)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .test_backchannel_cases import BACKCHANNEL_CASES
from .test_rp_cases import SIGN_IN_CASES

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutation_conformance", ROOT / "scripts" / "mutation_conformance.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_removed_check_is_in_the_source_exactly_once() -> None:
    for mutation in _script().MUTATIONS:
        source = (ROOT / mutation.path).read_text()
        for original, _ in ((mutation.original, mutation.mutated), *mutation.also):
            assert source.count(original) == 1, (mutation.check, original)
        for path, original, _ in mutation.also_in:
            assert (ROOT / path).read_text().count(original) == 1, (mutation.check, original)


def test_every_refusing_case_is_shown_to_fail_without_its_check() -> None:
    targeted = " ".join(test for mutation in _script().MUTATIONS for test in mutation.tests)
    refusing = [case.name for case in SIGN_IN_CASES if not case.accept]
    refusing += [case.name for case in BACKCHANNEL_CASES if not case.ends_session]
    assert [name for name in refusing if f"[{name}]" not in targeted] == []
    for test in targeted.split():
        name = test.split("::", 1)[1].split("[", 1)[0]
        assert f"def {name}(" in (ROOT / test.split("::", 1)[0]).read_text(), test
