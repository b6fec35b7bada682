"""`bench compare` on rows measured under load: an offline row judged on its samples/s (round by round, on simulated
runs with drift whose answer is known), server and closed-loop rows named and not judged."""

import json
import math

import numpy as np
import pytest

from bench.results.regression import CANT_TELL, SLOWER, UNCHANGED, judge
from conftest import bench_cli
from test_report import make_row, write_run


def offline_row(rounds_windows, backend="ort", scenario="offline"):
    """An offline row whose rounds had these windows (samples/s each), as bench.run.offline merges them."""
    row = make_row("bert", backend, "fp32", 32, 1, 10.0)
    flat = [w for per_round in rounds_windows for w in per_round]
    row.update(scenario=scenario, streams=2, throughput=None)
    row["load"] = {"scenario": scenario, "streams": 2, "threads_per_stream": 1, "windows": rounds_windows,
                   "samples_per_s": float(np.median(flat)), "contaminated_windows": 0}  # fmt: skip
    return row


def drifting_windows(rng, rate, rounds=3, windows=6, round_sd=0.04, window_sd=0.03):
    """Each round (a fresh set of streams) at its own level of the machine, each window about it."""
    return [list(rate * np.exp(rng.normal(0, round_sd) + rng.normal(0, window_sd, windows))) for _ in range(rounds)]


POOLED = {"sd_log": 0.041, "df": 30}
"""The run's pooled spread between rounds, as bench.run.rounds gives a row: the drift below, over 30 degrees."""


def with_pooled(row, pooled):
    if pooled:
        row["rounds_agreement"] = {"pooled": pooled}
    return row


@pytest.mark.parametrize("pooled", [None, POOLED])
def test_identical_offline_runs_under_drift_are_called_slower_at_most_as_often_as_alpha_allows(pooled):
    """400 comparisons of two runs of the same throughput, every round on its own level (log sd 0.04 between rounds,
    as these VMs drift): alpha is 0.01 (0.005 a side), and the binomial slack of 400 allows 2%."""
    rng = np.random.default_rng(21)
    verdicts = [judge(with_pooled(offline_row(drifting_windows(rng, 100.0)), pooled),
                      with_pooled(offline_row(drifting_windows(rng, 100.0)), pooled)).verdict for _ in range(400)]  # fmt: skip
    assert verdicts.count(SLOWER) / len(verdicts) <= 0.02, verdicts.count(SLOWER)
    assert verdicts.count(UNCHANGED) >= 0.95 * len(verdicts)


@pytest.mark.parametrize("pooled, loss, least", [(None, 0.20, 50), (POOLED, 0.15, 90)])
def test_a_throughput_loss_is_caught_round_by_round_and_pooling_the_windows_would_call_identical_runs_slower(
    pooled, loss, least
):
    """Rounds are the unit (3 a side): a 20% loss is slower in most of 100 runs on the rounds alone (Welch's t on 2 +
    2 degrees), a 15% one in nearly all with the run's pooled spread; the windows pooled across rounds as independent
    samples would call two identical runs slower far more often than alpha."""
    from bench.results import significance

    rng = np.random.default_rng(5)
    caught, pooled_false = 0, 0
    for _ in range(100):
        base = with_pooled(offline_row(drifting_windows(rng, 100.0)), pooled)
        new = with_pooled(offline_row(drifting_windows(rng, 100.0 * (1 - loss))), pooled)
        found = judge(base, new)
        caught += found.verdict == SLOWER
        assert found.method == "rounds" and found.figure.startswith("time per sample")
        per_round = [[math.log(np.median(1 / np.array(w))) for w in row["load"]["windows"]] for row in (base, new)]
        assert found.ratio == pytest.approx(math.exp(np.mean(per_round[1]) - np.mean(per_round[0])))
        same = [w for r in drifting_windows(rng, 100.0) for w in r], [w for r in drifting_windows(rng, 100.0) for w in r]
        pooled_false += significance.mann_whitney_p([1 / w for w in same[0]], [1 / w for w in same[1]]) < 0.01
    assert caught >= least, caught
    assert pooled_false >= 10, pooled_false


def test_one_round_a_side_is_judged_on_its_windows():
    found = judge(offline_row([[100.0 + i % 3 for i in range(20)]]), offline_row([[70.0 + i % 3 for i in range(20)]]))
    assert found.method == "windows" and found.verdict == SLOWER and found.ratio == pytest.approx(101 / 71)


def test_server_and_closed_loop_rows_are_named_and_not_judged_and_a_scenario_that_changed_is_said():
    for scenario, words in (("server", "rate"), ("closed-loop", "users")):
        found = judge(offline_row([[100.0] * 8], scenario=scenario), offline_row([[50.0] * 8], scenario=scenario))
        assert found.verdict == CANT_TELL and words in found.reasons[0], found.reasons
    found = judge(offline_row([[100.0] * 8]), make_row("bert", "ort", "fp32", 32, 1, 10.0))
    assert found.verdict == CANT_TELL and found.reasons == ["measured as offline in base and as single-stream in new"]


def test_compare_of_two_offline_runs_shows_samples_per_second_and_exits_1_on_a_throughput_loss(tmp_path):
    rng = np.random.default_rng(3)
    base = write_run(tmp_path / "base", [offline_row(drifting_windows(rng, 100.0))])
    slow = write_run(tmp_path / "slow", [offline_row(drifting_windows(rng, 75.0))])
    result = bench_cli("compare", base, slow, "--json", tmp_path / "c.json")
    assert result.returncode == 1, result.stderr
    assert "/s" in result.stdout and "samples/s under load" in result.stdout
    case = json.loads((tmp_path / "c.json").read_text())["cases"][0]
    assert case["verdict"] == SLOWER and case["figure"].startswith("time per sample") and case["method"] == "rounds"
    assert case["new_samples_per_s"] < case["base_samples_per_s"] and case["ratio"] > 1.2
    same = write_run(tmp_path / "same", [offline_row(drifting_windows(rng, 100.0))])
    assert bench_cli("compare", base, same).returncode == 0
