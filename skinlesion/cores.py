"""How many CPU cores this process may use, for every default that starts one worker per core."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on: its affinity, which containers and schedulers narrow
    below the machine's count (os.cpu_count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
