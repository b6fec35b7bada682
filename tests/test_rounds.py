"""Rounds: passes over the plan in shuffled orders, rows merged from fresh workers, disagreement flagged."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from conftest import PROJECT, TINY_SUITE, bench_cli, write_suite

from bench.run.rounds import agreement, merge, pass_order, passes


@dataclass
class FakeCase:
    case_id: str
    measure: dict = field(default_factory=lambda: {"rounds": 3})


def test_each_pass_has_its_own_order_and_the_same_seed_gives_the_same_orders():
    cases = [FakeCase(f"c{i}") for i in range(12)]
    orders = [[c.case_id for c in pass_order(cases, index, seed=0)] for index in range(3)]
    assert len({tuple(o) for o in orders}) == 3
    assert all(sorted(o) == sorted(c.case_id for c in cases) for o in orders)
    assert orders == [[c.case_id for c in pass_order(cases, index, seed=0)] for index in range(3)]
    assert orders[0] != [c.case_id for c in pass_order(cases, 0, seed=1)]


def test_passes_skip_rounds_already_done_and_cases_with_fewer_rounds():
    cases = [FakeCase("a"), FakeCase("b", {"rounds": 1}), FakeCase("c")]
    todo = [(index, case.case_id) for index, case in passes(cases, {"a": 2}, seed=0)]
    assert sorted(todo) == [(0, "b"), (0, "c"), (1, "c"), (2, "a"), (2, "c")]
    assert [index for index, _ in todo] == sorted(index for index, _ in todo)


def rounds_at(*levels, iqr=2.0):
    return [{"median_ms": level, "iqr_ms": iqr} for level in levels]


def test_rounds_on_two_levels_are_unstable_with_the_levels_named():
    verdict = agreement(rounds_at(160.0, 201.0, 159.0))
    assert verdict["verdict"] == "unstable"
    assert verdict["levels_ms"] == [159.0, 201.0]


def test_rounds_within_their_own_spread_or_a_small_gap_are_stable():
    assert agreement(rounds_at(160.0, 161.5, 159.5))["verdict"] == "stable"
    assert agreement(rounds_at(160.0, 175.0, iqr=20.0))["verdict"] == "stable"
    assert agreement(rounds_at(100.0, 104.0, iqr=0.5))["verdict"] == "stable"
    assert agreement(rounds_at(100.0))["verdict"] == "single round"


def round_row(samples, status="ok", reason=None):
    from bench.measure.stats import summarize

    return {
        "status": status, "reason": reason, "batch_size": 2, "measure": {"min_iterations": 3, "rounds": 2},
        "samples_ms": samples, "latency_ms": summarize(samples) if samples else None,
        "throughput": {"samples_per_s": 0.0, "tokens_per_s": 32 / (summarize(samples)["median"] / 1000)}
        if samples else None,
        "accuracy": {"passed": True}, "timings_ms": {"prepare": len(samples)}, "wall_s": 1.0, "warnings": [],
    }  # fmt: skip


def test_merge_pools_samples_keeps_each_round_and_recomputes_throughput():
    merged = merge([round_row([10.0, 10.2, 10.1]), round_row([10.4, 10.3, 10.5])])
    assert merged["samples_ms"] == [10.0, 10.2, 10.1, 10.4, 10.3, 10.5]
    assert merged["latency_ms"]["median"] == 10.25
    assert [r["median_ms"] for r in merged["rounds"]] == [10.1, 10.4]
    assert merged["timings_ms"] == {"prepare": 3}
    assert merged["throughput"]["tokens_per_s"] == 32 / 0.01025
    assert merged["wall_s"] == 2.0


def test_a_failed_round_makes_the_row_and_names_the_round():
    merged = merge([round_row([10.0, 10.1, 10.2]), round_row([], status="crashed", reason="killed by SIGABRT")])
    assert merged["status"] == "crashed" and merged["reason"] == "round 2: killed by SIGABRT"


ROUNDS_SUITE = TINY_SUITE.replace("timeout: 120}", "timeout: 120, rounds: 2}")


def test_each_round_runs_in_a_fresh_worker_and_the_row_merges_them(tmp_path):
    suite = write_suite(tmp_path, ROUNDS_SUITE)
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out)
    assert result.returncode in (0, 1), result.stderr  # 1: millisecond cases may be flagged; not what is tested
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len(records) == 4 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        mine = [r["row"] for r in records if r["case_id"] == row["case_id"]]
        assert [len(r["samples_ms"]) for r in mine] == [len(s) for s in row["round_samples_ms"]]
        assert row["samples_ms"] == [s for r in mine for s in r["samples_ms"]]
        assert len(row["rounds"]) == 2 and row["rounds_agreement"]["verdict"] in ("stable", "unstable")
        assert len({r["effective"]["pid"] for r in mine}) == 2
    assert result.stderr.count("round 2/2") == 2


def test_resume_in_the_middle_of_rounds_finishes_each_case_exactly_once(tmp_path):
    suite = write_suite(tmp_path, ROUNDS_SUITE.replace("min_seconds: 0.05", "min_seconds: 0.5"))
    out = tmp_path / "run"
    parent = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), "--no-peak", "--no-report",
         "--quiet-wait", "0"],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    rounds_file = out / "rounds.jsonl"
    while not rounds_file.exists() or not rounds_file.read_text().strip():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    resumed = bench_cli("run", "--resume", out)
    assert resumed.returncode in (0, 1), resumed.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["case_id"] for r in rows) == sorted(json.loads((out / "manifest.json").read_text())["planned_cases"])
    assert all(len(r["rounds"]) == 2 for r in rows)


def test_rows_lost_after_every_round_was_measured_are_merged_again_on_resume_without_measuring(tmp_path):
    suite = write_suite(tmp_path, ROUNDS_SUITE)
    out = tmp_path / "run"
    first = bench_cli("run", suite, "--out", out)
    assert first.returncode in (0, 1), first.stderr
    rows = (out / "results.jsonl").read_text()
    rounds_before = (out / "rounds.jsonl").read_text()
    (out / "results.jsonl").write_text("")  # as if the run had been killed after its last round
    resumed = bench_cli("run", "--resume", out)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert (out / "rounds.jsonl").read_text() == rounds_before, "nothing measured again"
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in rows.splitlines()]
    assert sorted(r["case_id"] for r in again) == sorted(r["case_id"] for r in before)
    assert {r["case_id"]: r["latency_ms"]["median"] for r in again} == {
        r["case_id"]: r["latency_ms"]["median"] for r in before
    }
