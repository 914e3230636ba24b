"""The chaos soak (scripts/soak.py), briefly: 10 users with 3 tabs each on 2 workers for 15 s, with faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]


# A 503 is explained by an injected fault, or by a token call the guard gave up on (the workers watch
# their own transport: on a loaded machine the provider is slower than http_timeout with no fault
# injected, and a code may then never reach it). Before the workers reported those, 2 of 4 full runs on
# a loaded machine failed on 503s and a code "sent 0 times" right after such a call.
def test_a_short_soak_breaks_no_invariant(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    argv = [sys.executable, str(REPO / "scripts" / "soak.py")]
    argv += ["--users", "10", "--tabs", "3", "--workers", "2", "--seconds", "15", "--seed", "1"]
    argv += ["--json", str(report_file)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    report = json.loads(report_file.read_text())
    assert report["violations"] == [], output
    requests = report["requests"]
    assert requests["requests"] > 500 and requests["logins completed"] >= 10, output
    assert requests["api"] > 0 and requests["page"] > 0 and requests["back button"] > 0, output
    assert requests["sign-out racing"] > 0 and requests["signed-out cookie checks"] > 0, output
    # Back-channel logouts and end_sessions are drawn at random like the other faults: a 15 s run may draw
    # neither, so their counts are reported, not required (tests/test_backchannel.py, the interop suite
    # and tests/test_lifecycle.py show them deterministically).
    assert sum(report["faults_injected"].values()) >= 3, output
    assert report["provider"]["refreshes"] > 0 and report["provider"]["calls_hit_by_a_fault"] > 0, output
