"""A machine whose speed drifts: the run's pooled spread between rounds, the intervals it widens, the cases it
leaves stable, and run-against-run comparisons that read a quiet re-run as unchanged."""

import math

import numpy as np
import pytest
from scipy.stats import f, t

from bench.measure.intervals import MIN_POOLED_DF, ROUNDS_BOOTSTRAP, ROUNDS_POOLED, pooled_bound, pooled_log_spread
from bench.measure.stats import summarize
from bench.results.regression import FASTER, SLOWER, UNCHANGED, judge
from bench.run.rounds import SPREAD_ALPHA, agreement, merge, pooled_spread

LEVELS = (1.0, 1.1)
"""The machine's two speeds: a round lands on either."""


def round_row(case_id, level, n=30, spread=0.01, rounds=3):
    """One round's row: n samples evenly over level × (1 ± spread)."""
    samples = [float(s) for s in level * np.linspace(1 - spread, 1 + spread, n)]
    return {
        "case_id": case_id, "status": "ok", "reason": None, "batch_size": 1,
        "measure": {"min_iterations": 5, "rounds": rounds}, "samples_ms": samples, "latency_ms": summarize(samples),
        "throughput": {"samples_per_s": 0.0, "tokens_per_s": 0.0}, "accuracy": {"passed": True},
        "timings_ms": {"prepare": 1.0}, "wall_s": 1.0, "warnings": [],
    }  # fmt: skip


def run_records(levels_by_case: dict[str, list[float]]) -> dict[str, list[dict]]:
    """The rounds of a run as the runner keeps them: case id to its records, each holding a round's row."""
    return {
        case_id: [{"case_id": case_id, "round": i, "row": round_row(case_id, lv, rounds=len(levels))}
                  for i, lv in enumerate(levels)]
        for case_id, levels in levels_by_case.items()
    }  # fmt: skip


def merged_run(levels_by_case: dict[str, list[float]]) -> dict[str, dict]:
    """Each case's row, merged against the run's other cases as the runner does."""
    records = run_records(levels_by_case)
    return {
        case_id: merge([r["row"] for r in mine], pooled_spread(records, leaving_out=case_id))
        for case_id, mine in records.items()
    }


def drifting_run(rng, cases=8, rounds=3, base_ms=20.0, factor=1.0):
    """Cases whose rounds land on one of the machine's levels at random, as the quiet machine does."""
    return {f"case{i}": [base_ms * (i + 1) * factor * rng.choice(LEVELS) for _ in range(rounds)] for i in range(cases)}


def test_the_pooled_spread_is_the_pooled_variance_of_log_round_medians():
    groups = [[10.0, 11.0, 10.2], [50.0, 55.0], [3.0, 3.3, 3.0, 3.2], [7.0], []]
    got = pooled_log_spread(groups)
    used = [np.log(g) for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in used)
    expected = sum((len(g) - 1) * np.var(g, ddof=1) for g in used) / df
    assert got["df"] == df == 6 and got["cases"] == 3
    assert got["sd_log"] == pytest.approx(math.sqrt(expected), rel=1e-12)


def test_the_pooled_spread_leaves_out_the_case_itself_and_failed_rounds():
    records = run_records({"a": [10.0, 11.0], "b": [20.0, 22.0, 20.0], "c": [5.0, 5.5, 5.0], "d": [8.0, 8.8]})
    records["d"][1]["row"]["status"] = "crashed"
    got = pooled_spread(records, leaving_out="a")
    assert got == pooled_log_spread([[20.0, 22.0, 20.0], [5.0, 5.5, 5.0]])
    assert got["df"] == MIN_POOLED_DF


def test_too_few_rounds_in_the_run_fall_back_to_the_gap_rule():
    assert pooled_log_spread([[10.0, 11.0], [20.0, 22.0], [5.0, 5.5]]) is None  # 3 degrees of freedom
    rows = merged_run({"a": [160.0, 201.0, 159.0], "b": [20.0, 22.0], "c": [5.0, 5.5]})
    row = rows["a"]
    assert row["rounds_agreement"]["pooled"] is None and row["rounds_agreement"]["verdict"] == "unstable"
    assert row["latency_ms"]["median_ci_method"] == ROUNDS_BOOTSTRAP
    opening = "unstable across rounds: round medians landed at 159 ms and 201 ms"
    assert any(w.startswith(opening) for w in row["warnings"])


def alternating_cases(high, cases=6):
    """Cases of 3 rounds on the levels 1 and `high`: each the same spread of log medians."""
    patterns = ([high, 1.0, high], [1.0, high, 1.0])
    return {f"c{i}": [10.0 * (i + 1) * lv for lv in patterns[i % 2]] for i in range(cases)}


def test_rounds_that_disagree_like_the_other_cases_are_stable_with_their_levels_recorded():
    """The gap rule alone calls the case unstable (10% apart, beyond each round's spread); the run says it is drift."""
    others = alternating_cases(1.1)
    rows = merged_run({**others, "case": [30.0, 33.0, 30.0]})
    verdict = rows["case"]["rounds_agreement"]
    assert agreement(rows["case"]["rounds"])["verdict"] == "unstable"
    assert verdict["verdict"] == "stable" and verdict["pooled"]["df"] == 12 and verdict["pooled"]["cases"] == 6
    assert verdict["levels_ms"] == [pytest.approx(30.0), pytest.approx(33.0)]
    assert not any(w.startswith("unstable") for w in rows["case"]["warnings"])


def test_rounds_four_times_wider_than_the_other_cases_are_unstable_and_the_warning_says_against_what():
    others = alternating_cases(1.05)
    wide = [30.0 * math.exp(4 * (math.log(m) - math.log(30.0))) for m in [30.0, 31.5, 30.0]]
    rows = merged_run({**others, "case": wide})
    verdict = rows["case"]["rounds_agreement"]
    pooled = verdict["pooled"]
    assert verdict["sd_log"] / pooled["sd_log"] == pytest.approx(4.0, rel=1e-9)
    assert 16 > f.ppf(1 - SPREAD_ALPHA, 2, pooled["df"])
    assert verdict["verdict"] == "unstable"
    warning = next(w for w in rows["case"]["warnings"] if w.startswith("unstable across rounds: "))
    assert f"±{pooled['sd_log']:.1%}" in warning and "other cases" in warning and "30 ms and" in warning
    assert all(rows[c]["rounds_agreement"]["verdict"] == "stable" for c in others)


def test_the_interval_holds_the_pooled_bound_and_names_its_method():
    rows = merged_run(drifting_run(np.random.default_rng(1)))
    for row in rows.values():
        latency, pooled = row["latency_ms"], row["rounds_agreement"]["pooled"]
        half = t.ppf(0.975, pooled["df"]) * pooled["sd_log"] / math.sqrt(3)
        low, high = latency["median"] * math.exp(-half), latency["median"] * math.exp(half)
        assert [low, high] == pytest.approx(pooled_bound(latency["median"], 3, pooled))
        assert latency["median_ci_method"] == ROUNDS_POOLED
        assert latency["median_ci"][0] <= low * (1 + 1e-12) and high * (1 - 1e-12) <= latency["median_ci"][1]
        rerun_half = half * math.sqrt(2)
        assert latency["rerun_interval"] == pytest.approx(
            [latency["median"] * math.exp(-rerun_half), latency["median"] * math.exp(rerun_half)]
        )


def test_a_rerun_of_a_drifting_machine_lands_in_the_rerun_interval_about_as_often_as_promised():
    rng = np.random.default_rng(7)

    def run():  # each round at the machine's speed of that moment: lognormal, 10% spread
        return {f"case{i}": list(20.0 * (i + 1) * np.exp(rng.normal(0, 0.1, 3))) for i in range(60)}

    first, second = merged_run(run()), merged_run(run())
    inside = [
        row["latency_ms"]["rerun_interval"][0] <= second[case_id]["latency_ms"]["median"]
        <= row["latency_ms"]["rerun_interval"][1]
        for case_id, row in first.items()
    ]  # fmt: skip
    assert len(inside) >= 10 and sum(inside) / len(inside) >= 0.8


def compare_all(base_rows, new_rows):
    return {case_id: judge(base_rows[case_id], new_rows[case_id]) for case_id in base_rows}


def test_a_quiet_rerun_on_a_drifting_machine_reads_unchanged_and_a_30_percent_slowdown_reads_slower():
    rng = np.random.default_rng(7)
    base_levels, new_levels = drifting_run(rng), drifting_run(rng)
    base_levels["case0"], new_levels["case0"] = [20.0] * 3, [22.0] * 3  # every round on the other level by chance
    base = merged_run(base_levels)
    found = compare_all(base, merged_run(new_levels))
    assert {r.verdict for r in found.values()} == {UNCHANGED}
    assert found["case0"].ratio == pytest.approx(1.1) and found["case0"].method == "rounds"
    assert found["case0"].p_value > 0.01  # three rounds a side, each side moderated by its run's spread between rounds

    without = {c: {**row, "rounds_agreement": {**row["rounds_agreement"], "pooled": None}} for c, row in base.items()}
    assert judge(without["case0"], merged_run(new_levels)["case0"]).verdict == SLOWER  # what the drift bound prevents

    slower = compare_all(base, merged_run({c: [m * 1.3 for m in lv] for c, lv in new_levels.items()}))
    assert {r.verdict for r in slower.values()} == {SLOWER}
    faster = compare_all(base, merged_run({c: [m / 1.3 for m in lv] for c, lv in new_levels.items()}))
    assert {r.verdict for r in faster.values()} == {FASTER}
