"""benchmarks/timing.py: which calls are timed, and the figures the benchmarks report from them."""

import time

import pytest

from benchmarks.timing import Timing, measure, timed


def test_warm_up_calls_are_made_first_and_each_repeat_times_its_own_calls():
    calls = []
    timing = measure(lambda: calls.append(len(calls)), warmup=2, number=3, repeats=4)
    assert len(calls) == 2 + 3 * 4
    assert len(timing.wall_s) == len(timing.cpu_s) == 4


def test_a_timing_covers_the_calls_it_times():
    timing = measure(lambda: time.sleep(0.01), number=2, repeats=1)
    assert timing.wall_s[0] >= 0.02
    assert timing.cpu_s[0] < timing.wall_s[0]  # sleeping takes no CPU time


def test_timed_returns_the_result_and_its_seconds():
    result, seconds = timed(lambda: time.sleep(0.01) or "done")
    assert result == "done"
    assert seconds >= 0.01


def test_best_is_the_fastest_repeat_and_median_the_middle_one():
    timing = Timing(wall_s=(3.0, 1.0, 2.0), cpu_s=(0.0, 0.0, 0.0))
    assert timing.best_s == 1.0
    assert timing.median_s == pytest.approx(2.0)
