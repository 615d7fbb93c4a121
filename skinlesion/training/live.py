"""A stand-in for dvclive.Live that keeps each epoch's metrics in memory: what the training
processes other than rank 0 log to, and what tests and benchmarks read back."""

from __future__ import annotations


class MemoryLive:
    """What fit() needs of dvclive.Live (log_metric, summary, step, next_step)."""

    def __init__(self) -> None:
        self.summary: dict = {}
        self.history: list[dict[str, float]] = []
        self.step = 0
        self._values: dict[str, float] = {}

    def __enter__(self) -> MemoryLive:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def log_metric(self, name: str, value: float) -> None:
        self._values[name] = float(value)

    def next_step(self) -> None:
        self.history.append(self._values)
        self._values, self.step = {}, self.step + 1
