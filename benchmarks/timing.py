"""Wall-clock timing for the benchmarks: warm-up calls, then timed repeats, the device synchronised
around each (CUDA queues work and returns at once, so an unsynchronised clock times the queueing).

Needs only the standard library, and torch where a device is passed: benchmarks/gpu_check.sh runs on
machines without DVC, and the benchmarks that time processes do not import torch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def sync(device: torch.device | None) -> None:
    """Wait for the work queued on `device` (CUDA); nothing to wait for elsewhere or with None."""
    if device is not None and device.type == "cuda":
        import torch  # already loaded: the caller holds a torch.device

        torch.cuda.synchronize()


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repeat: wall clock, and this process's CPU time (all its threads)."""

    wall_s: tuple[float, ...]
    cpu_s: tuple[float, ...]

    @property
    def best_s(self) -> float:
        return min(self.wall_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall_s)


def timed(run: Callable[[], T], *, device: torch.device | None = None) -> tuple[T, float]:
    """`run()`'s result and the wall seconds it took, `device` synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = run()
    sync(device)
    return result, time.perf_counter() - start


def measure(
    run: Callable[[], object],
    *,
    warmup: int = 0,
    number: int = 1,
    repeats: int = 1,
    device: torch.device | None = None,
) -> Timing:
    """`warmup` untimed calls of `run`, then `repeats` timings of `number` calls each, `device`
    synchronised before and after each timing. A warm-up unlike the timed work (one batch before
    a pass over all) is the caller's to run first."""

    def calls(count: int) -> None:
        for _ in range(count):
            run()  # its result dropped at once, as a loop that times it would

    calls(warmup)
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start = time.process_time()
        _, seconds = timed(lambda: calls(number), device=device)
        wall.append(seconds)
        cpu.append(time.process_time() - cpu_start)
    return Timing(tuple(wall), tuple(cpu))
