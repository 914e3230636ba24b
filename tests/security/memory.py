"""A process's resident memory, read from ``/proc`` (Linux), for the soak's bounded-memory check."""

from __future__ import annotations

from pathlib import Path


def resident_kib(pid: int | str = "self") -> int:
    """VmRSS of a process in KiB, or 0 where ``/proc`` is not available."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
