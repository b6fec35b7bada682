"""Run against run, on sample sets with known answers: unchanged, slower, buried in noise, faster; rounds; refusals."""

import json
import math
import random

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.results import significance
from bench.results.regression import CANT_TELL, FASTER, SLOWER, UNCHANGED, judge
from bench.run.rounds import agreement
from bench.measure.stats import latency_summary, summarize
from conftest import bench_cli
from test_report import make_row, manifest, write_run


def grid(level, spread, n):
    """n samples spread evenly over level × (1 ± spread), in a shuffled order (a seeded one)."""
    values = list(level * np.linspace(1 - spread, 1 + spread, n))
    random.Random(f"{level}:{spread}:{n}").shuffle(values)
    return values


def row_of(rounds, backend="sdpa", **kwargs):
    """A measured row from its rounds' samples, merged as bench.run.rounds.merge does."""
    row = make_row("bert", backend, "fp32", 32, 1, 10.0, **kwargs)
    if row["status"] != "ok":
        return row
    pooled = [s for samples in rounds for s in samples]
    row.update(samples_ms=pooled, latency_ms=latency_summary(pooled, rounds if len(rounds) > 1 else None))
    if len(rounds) > 1:
        summaries = [summarize(samples) for samples in rounds]
        row["round_samples_ms"] = rounds
        row["rounds_agreement"] = agreement([{"median_ms": s["median"], "iqr_ms": s["iqr"]} for s in summaries])
    return row


def test_the_same_samples_in_another_order_are_unchanged():
    found = judge(row_of([grid(10.0, 0.02, 40)]), row_of([grid(10.0, 0.02, 40)[::-1]]))
    assert found.verdict == UNCHANGED and found.ratio == pytest.approx(1.0)
    assert found.p_value == pytest.approx(1.0) and found.ratio_ci[0] < 1 < found.ratio_ci[1]


def test_five_percent_slower_with_low_noise_is_slower():
    found = judge(row_of([grid(10.0, 0.01, 40)]), row_of([grid(10.5, 0.01, 40)]))
    assert found.verdict == SLOWER and found.ratio == pytest.approx(1.05)
    assert found.p_value < 1e-10 and 1 < found.ratio_ci[0] <= 1.05 <= found.ratio_ci[1]


def test_five_percent_slower_buried_in_noise_is_not_called_slower():
    """±10% of spread around both medians: 21 samples a side cannot tell 5% apart at alpha 0.01 (p is 0.024)."""
    found = judge(row_of([grid(10.0, 0.10, 21)]), row_of([grid(10.5, 0.10, 21)]))
    assert found.verdict in (UNCHANGED, CANT_TELL)
    assert 0.01 < found.p_value < 0.05 and found.ratio_ci[0] < 1


def test_the_same_five_percent_in_the_same_noise_is_caught_with_more_samples():
    found = judge(row_of([grid(10.0, 0.10, 61)]), row_of([grid(10.5, 0.10, 61)]))
    assert found.verdict == SLOWER and found.p_value < 0.001


def test_thirty_percent_faster_is_faster():
    found = judge(row_of([grid(10.0, 0.02, 30)]), row_of([grid(7.0, 0.02, 30)]))
    assert found.verdict == FASTER and found.ratio == pytest.approx(0.7) and found.ratio_ci[1] < 1


def test_a_significant_change_within_the_threshold_is_unchanged():
    base, new = row_of([grid(10.0, 0.005, 60)]), row_of([grid(10.2, 0.005, 60)])
    found = judge(base, new)
    assert found.p_value < 1e-10 and found.ratio_ci[0] > 1 and found.verdict == UNCHANGED
    from bench.results.regression import Settings

    assert judge(base, new, Settings(threshold=0.01)).verdict == SLOWER


def test_rounds_that_overlap_across_runs_are_unchanged_though_the_pooled_samples_differ():
    """Each side's two workers landed 6% apart (within their spread: stable), one new worker on a base level.

    The U test on the pooled samples and the Hodges-Lehmann interval both say 'different'; resampling whole rounds
    does not, since one base worker and one new worker ran at the same level.
    """
    base, new = row_of([grid(100, 0.06, 41), grid(106, 0.06, 41)]), row_of([grid(106, 0.06, 41), grid(112, 0.06, 41)])
    assert base["rounds_agreement"]["verdict"] == new["rounds_agreement"]["verdict"] == "stable"
    assert significance.mann_whitney_p(base["samples_ms"], new["samples_ms"]) < 1e-6
    assert significance.hodges_lehmann_ratio(base["samples_ms"], new["samples_ms"], 0.99)[0] > 1
    found = judge(base, new)
    assert found.ratio > 1.05 and found.verdict == UNCHANGED
    assert found.method == "rounds" and found.ratio == pytest.approx(math.sqrt(106 * 112 / (100 * 106)), rel=1e-3)
    assert found.ratio_ci[0] < 1 < found.ratio_ci[1] and found.p_value > 0.2


def test_rounds_that_all_moved_are_slower():
    base = row_of([grid(100, 0.01, 30), grid(101, 0.01, 30)])
    new = row_of([grid(110, 0.01, 30), grid(111, 0.01, 30)])
    found = judge(base, new)
    assert found.verdict == SLOWER and found.ratio_ci[0] > 1


@pytest.mark.parametrize(
    "side, flag, reason",
    [
        ("new", {"interference": {"contaminated": True}}, "new contaminated"),
        ("base", {"rounds_agreement": {"verdict": "unstable"}}, "base unstable"),
        ("new", {"accuracy": {"passed": False}}, "new fails accuracy"),
    ],
)
def test_an_untrusted_row_on_either_side_cannot_tell_however_large_the_change(side, flag, reason):
    rows = {"base": row_of([grid(10.0, 0.01, 30)]), "new": row_of([grid(20.0, 0.01, 30)])}
    rows[side].update(flag)
    found = judge(rows["base"], rows["new"])
    assert found.verdict == CANT_TELL and found.reasons == [reason] and found.ratio == pytest.approx(2.0)


def test_a_failed_case_cannot_tell_and_too_few_samples_cannot_tell():
    crashed = judge(row_of([grid(10.0, 0.01, 30)]), row_of([], status="crashed", reason="SIGSEGV"))
    assert crashed.verdict == CANT_TELL and crashed.reasons == ["new crashed"] and crashed.ratio is None
    few = judge(row_of([grid(10.0, 0.01, 3)]), row_of([grid(20.0, 0.01, 3)]))
    assert few.verdict == CANT_TELL and "too few samples (3 and 3)" in few.reasons[0]


def test_the_kth_pairwise_difference_and_the_hodges_lehmann_interval_match_brute_force():
    rng = np.random.default_rng(3)
    x, y = np.sort(rng.lognormal(0, 0.1, 37)), np.sort(rng.lognormal(0.05, 0.1, 23))
    differences = np.sort(np.subtract.outer(np.log(y), np.log(x)).ravel())
    for k in (1, 17, 400, len(differences)):
        assert significance.kth_difference(np.log(x), np.log(y), k) == pytest.approx(differences[k - 1], abs=1e-12)
    n, m, z = len(x), len(y), 2.5758293035489
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    low, high = significance.hodges_lehmann_ratio(x, y, 0.99)
    assert (math.log(low), math.log(high)) == pytest.approx((differences[k - 1], differences[n * m - k]), abs=1e-12)


def test_the_smallest_p_value_is_the_exact_tests():
    assert significance.smallest_p_value(3, 3) == pytest.approx(0.1)
    assert significance.smallest_p_value(5, 5) == pytest.approx(2 / 252)
    exact = mannwhitneyu([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], alternative="two-sided", method="exact").pvalue
    assert exact == pytest.approx(significance.smallest_p_value(5, 5))


# The command: refusals, exit codes, Markdown and JSON.


def two_runs(tmp_path, base_rows, new_rows, base_manifest=None, new_manifest=None):
    base = write_run(tmp_path / "base", base_rows, base_manifest)
    new = write_run(tmp_path / "new", new_rows, new_manifest)
    return base, new


def suite_rows(slow_factor=1.0):
    """eager and sdpa at two threads; sdpa's samples multiplied by slow_factor."""
    rows = []
    for threads in (1, 2):
        for backend, level in (("eager", 10.0 / threads), ("sdpa", 8.0 / threads)):
            factor = slow_factor if backend == "sdpa" and threads == 1 else 1.0
            row = row_of([grid(level * factor, 0.01, 30)], backend)
            row.update(case_id=f"bert-{backend}-t{threads}", threads=threads)
            rows.append(row)
    return rows


def test_compare_exits_0_when_nothing_changed_and_1_with_the_slower_case_first(tmp_path):
    base, same = two_runs(tmp_path, suite_rows(), suite_rows())
    result = bench_cli("compare", base, same, "--json", tmp_path / "same.json")
    assert result.returncode == 0, result.stderr
    assert {c["verdict"] for c in json.loads((tmp_path / "same.json").read_text())["cases"]} == {UNCHANGED}
    slow = write_run(tmp_path / "slow", suite_rows(slow_factor=1.3))
    md, js = tmp_path / "out" / "comparison.md", tmp_path / "out" / "comparison.json"
    result = bench_cli("compare", base, slow, "--markdown", md, "--json", js)
    assert result.returncode == 1, result.stderr
    assert "bert-sdpa-t1" in result.stdout and "slower" in result.stdout
    table = [line for line in md.read_text().splitlines() if line.startswith("| ") and "`" in line]
    assert table[0].startswith("| **slower** | `bert-sdpa-t1` |") and len(table) == 4
    assert "**Significantly slower: `bert-sdpa-t1`**" in md.read_text()
    data = json.loads(js.read_text())
    assert data["regression"] is True and data["counts"] == {SLOWER: 1, CANT_TELL: 0, UNCHANGED: 3, FASTER: 0}
    first = data["cases"][0]
    assert first["case_id"] == "bert-sdpa-t1" and first["ratio"] == pytest.approx(1.3)
    assert first["ratio_ci"][0] > 1 and first["p_value"] < 0.01 and first["samples"] == {"base": 30, "new": 30}


def test_a_faster_or_untrusted_case_exits_0(tmp_path):
    new_rows = suite_rows(slow_factor=0.7)
    new_rows[0]["interference"] = {"contaminated": True}
    doubled = [2 * s for s in new_rows[0]["samples_ms"]]
    new_rows[0].update(samples_ms=doubled, latency_ms=latency_summary(doubled))
    base, new = two_runs(tmp_path, suite_rows(), new_rows)
    result = bench_cli("compare", base, new, "--json", tmp_path / "c.json")
    assert result.returncode == 0, result.stderr
    verdicts = {c["case_id"]: c["verdict"] for c in json.loads((tmp_path / "c.json").read_text())["cases"]}
    assert verdicts == {"bert-sdpa-t1": FASTER, "bert-eager-t1": CANT_TELL, "bert-eager-t2": UNCHANGED,
                        "bert-sdpa-t2": UNCHANGED}  # fmt: skip


def test_runs_from_different_machines_or_software_are_refused_unless_forced(tmp_path):
    other = manifest(cpu_model="Other CPU")
    base, new = two_runs(tmp_path, suite_rows(), suite_rows(slow_factor=1.3), new_manifest=other)
    refused = bench_cli("compare", base, new)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert str(new / "manifest.json") in refused.stderr
    assert "machine.cpu_model: 'Test CPU' (base) vs 'Other CPU'" in refused.stderr
    forced = bench_cli("compare", base, new, "--force", "--json", tmp_path / "c.json")
    assert forced.returncode == 1 and "compared despite: machine.cpu_model" in forced.stdout
    assert json.loads((tmp_path / "c.json").read_text())["differences"] == [
        "machine.cpu_model: 'Test CPU' (base) vs 'Other CPU' (new)"
    ]
    newer = manifest()
    newer["software"]["packages"]["torch"] = "2.14.0"
    newer["machine"]["hostname"] = "another-node"  # the same kind of machine: not a difference
    rows = suite_rows()
    rows[2]["effective"]["versions"] = {"onnxruntime": "1.99"}
    refused = bench_cli("compare", base, write_run(tmp_path / "newer", rows, newer))
    assert refused.returncode == 2
    assert "software.packages.torch: 2.13.0 (base) vs 2.14.0 (new)" in refused.stderr
    assert "effective.versions (main environment).onnxruntime: None (base) vs 1.99 (new)" in refused.stderr
    assert "hostname" not in refused.stderr


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda run: (run / "manifest.json").unlink(), "manifest.json: expected a run folder"),
        (lambda run: (run / "results.jsonl").write_text('{"case_id": "x", "status": "ok", "latency_ms": {"median": 1},'
                                                        ' "samples_ms": "fast"}\n'), "samples_ms: expected a list"),
        (lambda run: (run / "results.jsonl").write_text("not json\n{}\n"), "line 1: expected a JSON row"),
        (lambda run: (run / "manifest.json").write_text('{"machine": {}}'), "machine.cpu.model: expected the CPU"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_file_and_field_and_exit_2(tmp_path, damage, named):
    base, new = two_runs(tmp_path, suite_rows(), suite_rows())
    damage(new)
    result = bench_cli("compare", base, new, "--json", tmp_path / "c.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and named in result.stderr and str(new) in result.stderr
    assert not (tmp_path / "c.json").exists()


def test_a_torn_last_line_is_skipped_and_left_as_it_is(tmp_path):
    base, new = two_runs(tmp_path, suite_rows(), suite_rows())
    text = (new / "results.jsonl").read_text() + '{"case_id": "bert-tor'
    (new / "results.jsonl").write_text(text)
    assert bench_cli("compare", base, new).returncode == 0
    assert (new / "results.jsonl").read_text() == text


def test_cases_in_one_run_only_are_listed_not_judged(tmp_path):
    rows = suite_rows()
    base, new = two_runs(tmp_path, rows, rows[:3])
    result = bench_cli("compare", base, new, "--json", tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert result.returncode == 0 and data["only_in_base"] == ["bert-sdpa-t2"] and len(data["cases"]) == 3


def test_settings_out_of_range_are_bad_input(tmp_path):
    base, new = two_runs(tmp_path, suite_rows(), suite_rows())
    for option, value in (("--threshold", "5"), ("--alpha", "0"), ("--threshold", "nan")):
        result = bench_cli("compare", base, new, option, value)
        assert result.returncode == 2 and f"compare: {option}: expected" in result.stderr
    assert "expected two run folders" in bench_cli("compare", base).stderr
