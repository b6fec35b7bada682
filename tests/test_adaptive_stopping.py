"""measure.target_ci: stop once the median's interval is firm, with a fake clock and fake calls."""

import random

import pytest

from bench.measure.intervals import relative_half_width
from bench.plan.matrix import expand
from bench.measure.stats import ci_target, ci_target_warnings, latency_summary
from bench.plan.suite import load_suite
from bench.measure.timing import CHECK_SHARE, measure
from conftest import write_suite
from test_suite import GOOD, problems

MS = 1_000_000


class JitteryClock:
    """A clock whose measured call costs 10 ms times (1 + a uniform draw within ±spread); no other time passes."""

    def __init__(self, spread: float, seed: int = 0):
        self.now = 0
        self.spread = spread
        self.rng = random.Random(seed)

    def __call__(self) -> int:
        return self.now

    def work(self):
        self.now += int(10 * MS * (1 + self.rng.uniform(-self.spread, self.spread)))


def run(spread, target=0.01, min_iterations=10, min_seconds=0.05, max_seconds=5.0):
    clock = JitteryClock(spread)
    samples = measure(clock.work, min_iterations=min_iterations, min_seconds=min_seconds,
                      max_seconds=max_seconds, clock=clock, target_ci=target)  # fmt: skip
    return samples, clock.now / 1e9


def test_low_noise_stops_as_soon_as_the_minimums_are_met():
    samples, elapsed = run(spread=0.001)
    assert len(samples) == 10 and elapsed < 0.2
    assert relative_half_width(sorted(samples)) <= 0.01


def test_noise_runs_on_to_max_seconds_when_the_target_is_out_of_reach():
    samples, elapsed = run(spread=0.5)
    assert elapsed >= 5.0 and len(samples) > 400
    assert relative_half_width(sorted(samples)) > 0.01


def test_moderate_noise_stops_once_the_target_is_reached_before_max_seconds():
    samples, elapsed = run(spread=0.05)
    assert 10 < len(samples) and elapsed < 5.0
    assert relative_half_width(sorted(samples)) <= 0.01
    checks = [10]  # the schedule: after the minimums, again each time the samples grow by a tenth
    while checks[-1] < len(samples):
        checks.append(checks[-1] + max(1, checks[-1] // CHECK_SHARE))
    assert checks[-1] == len(samples)
    assert relative_half_width(sorted(samples[: checks[-2]])) > 0.01  # the check before did not stop it


def test_without_a_target_the_loop_stops_at_the_minimums_whatever_the_noise():
    clock = JitteryClock(spread=0.5)
    samples = measure(clock.work, min_iterations=10, min_seconds=0.05, max_seconds=5.0, clock=clock)
    assert len(samples) == 10


def test_the_minimums_still_bind_with_a_target():
    samples, _ = run(spread=0.001, min_iterations=3, min_seconds=1.0)
    assert len(samples) == 100  # min_seconds binds at 10 ms a call
    samples, _ = run(spread=0.001, min_iterations=3, min_seconds=0)
    assert len(samples) == 6  # a 95% interval of the median needs 6 samples


def test_the_row_records_the_width_reached_and_whether_the_target_was_met():
    values = [9.0 + 0.1 * i for i in range(21)]  # median 10.0 in [9.5, 10.5]: ±5%
    latency = latency_summary(values)
    assert ci_target(latency, None) is None
    assert ci_target(latency, 0.05) == {"target": 0.05, "reached": pytest.approx(0.05), "met": True}
    missed = ci_target(latency, 0.01)
    assert missed["met"] is False and missed["reached"] == pytest.approx(0.05)
    (warning,) = ci_target_warnings(missed, 21)
    assert warning.startswith("imprecise: the median's 95% interval reached ±5.0% after 21 samples, not the ±1.0%")
    assert ci_target_warnings(ci_target(latency, 0.05), 21) == []
    assert ci_target(latency_summary([1.0, 2.0]), 0.01) == {"target": 0.01, "reached": None, "met": False}


def test_target_ci_is_a_suite_setting_checked_like_the_others(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, GOOD + "defaults:\n  measure: {target_ci: 0.02}\n"))
    assert {c.measure["target_ci"] for c in expand(suite)} == {0.02}
    suite, _ = load_suite(write_suite(tmp_path, GOOD))
    assert all("target_ci" not in c.measure for c in expand(suite))
    assert problems(tmp_path, GOOD + "defaults:\n  measure: {target_ci: 1.5}\n") == [
        "defaults.measure.target_ci: expected less than 1, got 1.5"
    ]
