"""The decision over many cases, by simulation against a known truth: Holm's method holds the family-wise error of
`bench compare` and of an A/B run; the threshold on the interval catches a true 5% slowdown, not half the time."""

import math

import numpy as np
import pytest

from bench.results import ab, regression
from test_paired_stats import simulate_shape
from bench.measure.intervals import pooled_log_spread


def test_holm_matches_its_definition():
    ps = [0.01, 0.04, 0.03, 0.005]
    assert ab.holm(ps) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def drifting_rounds(rng, level, rounds, drift_sd, calls=9):
    """Each round a process on its own level (drift between rounds), its calls spread 1% around it."""
    return [list(level * math.exp(rng.normal(0, drift_sd)) * rng.lognormal(0, 0.01, calls)) for _ in range(rounds)]


def rows_of(rounds_per_case):
    """Merged rows as a run writes them, with the run's pooled spread between rounds."""
    pooled = pooled_log_spread([float(np.median(r)) for r in rounds] for rounds in rounds_per_case)
    return [
        {"case_id": f"c{i}", "status": "ok", "accuracy": {"passed": True}, "round_samples_ms": rounds,
         "samples_ms": [s for r in rounds for s in r], "latency_ms": {"median": float(np.median(rounds))},
         "rounds_agreement": {"verdict": "stable", "pooled": pooled}}
        for i, rounds in enumerate(rounds_per_case)
    ]  # fmt: skip


def compare_once(rng, cases, slowdown=1.0, drift_sd=0.01, slowed=()):
    base = rows_of([drifting_rounds(rng, 10.0, 3, drift_sd) for _ in range(cases)])
    new = rows_of([drifting_rounds(rng, 10.0 * (slowdown if i in slowed else 1.0), 3, drift_sd) for i in range(cases)])
    settings = regression.Settings()
    found = [regression.judge(b, n, settings) for b, n in zip(base, new)]
    regression.family_wise(found, settings)
    return found


def test_two_identical_runs_of_many_cases_call_one_slower_at_most_at_the_family_wise_rate():
    rng = np.random.default_rng(5)
    alarms = sum(any(c.verdict == regression.SLOWER for c in compare_once(rng, 60)) for _ in range(80))
    assert alarms / 80 <= 0.03  # alpha 0.01 family-wise; without Holm, 60 cases at 0.01 would alarm about 45%


def test_without_holm_the_same_runs_would_alarm_often():
    rng = np.random.default_rng(5)
    alarms = 0
    for _ in range(30):
        found = compare_once(rng, 60)
        alarms += any(c.p_value < 0.01 and c.ratio > 1 for c in found if c.p_value is not None)
    assert alarms / 30 > 0.15


def test_a_true_five_percent_slowdown_is_caught_by_the_interval_rule_not_half_the_time():
    rng = np.random.default_rng(6)
    caught = total = 0
    for _ in range(40):
        found = compare_once(rng, 10, slowdown=1.05, drift_sd=0.005, slowed=range(10))
        caught += sum(c.verdict == regression.SLOWER for c in found)
        total += len(found)
    assert caught / total >= 0.9


def ab_rows(rng, cases, slowdown=1.0, slowed=(), process_sd=0.005, block_sd=0.01):
    """An A/B run's rows: per case, A and its twin B paired in 3 rounds of 8 passes on a drifting machine."""
    rows = []
    for index in range(cases):
        truth = math.log(slowdown) if index in slowed else 0.0
        found = simulate_shape(rng, np.array([0.0, truth]), 3, 8, process_sd, block_sd)
        a = {"case_id": f"c{index}", "status": "ok", "latency_ms": {"median": 10.0, "median_ci": [9.9, 10.1]},
             "accuracy": {"passed": True}, "paired": {"role": "baseline", "canary_ms": [1.0] * 3}}  # fmt: skip
        b = {**a, "case_id": f"c{index}@b", "pair_of": f"c{index}",
             "paired": {"role": "configuration", "baseline": f"c{index}", "log_speedups": found[1],
                        "canary_ms": [1.0] * 3}}  # fmt: skip
        rows += [a, b]
    return rows


def test_ab_runs_of_identical_environments_rarely_exit_1():
    rng = np.random.default_rng(7)
    failing = sum(bool(ab.ab_result(ab_rows(rng, 40)).slower) for _ in range(30))
    assert failing / 30 <= 0.1  # family-wise 5%


@pytest.mark.parametrize("slowdown, rate", [(1.05, 0.9), (1.10, 0.95)])
def test_ab_catches_injected_slowdowns(slowdown, rate):
    rng = np.random.default_rng(8)
    caught = total = false_alarms = 0
    for _ in range(10):
        result = ab.ab_result(ab_rows(rng, 20, slowdown, slowed=range(10)))
        slowed = [c for c in result.cases if c.base["case_id"] in {f"c{i}" for i in range(10)}]
        caught += sum(c.verdict == ab.SLOWER for c in slowed)
        total += len(slowed)
        false_alarms += sum(c.verdict == ab.SLOWER for c in result.cases if c not in slowed)
    assert caught / total >= rate
    assert false_alarms <= 2  # Holm holds the family-wise rate (5%) per run over the unchanged cases
