"""Shards: the partition every shard computes on its own, where the shard index comes from, and what a shard
run records; then merging shard folders, with a suite whose cases end at once (models not in the Hub cache)."""

import json
import random

import pytest

from bench.errors import BenchError
from bench.plan.matrix import expand
from bench.run.shards import (
    Shard, costs, estimate, from_environment, layers, parse_shard, partition, requested, select_share,
)  # fmt: skip
from bench.plan.suite import load_suite
from conftest import EAGER_AND_SDPA, TINY_SUITE, bench_cli, write_suite

SUITE = """\
defaults:
  seq_lens: [16, 64, 128, 384]
  batch_sizes: [1, 4]
  threads: [1, 2]
models:
  - name: tiny
    config: bert-tiny
  - name: deep
    config: bert-tiny
    config_overrides: {num_hidden_layers: 24}
  - name: base
    config: bert-base-uncased
    task: text-classification
""" + EAGER_AND_SDPA


@pytest.fixture
def cases(tmp_path):
    return expand(load_suite(write_suite(tmp_path, SUITE))[0])


def ids(share):
    return [c.case_id for c in share]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_case_is_in_exactly_one_shard_and_every_shard_computes_the_same_partition(cases, count):
    cost = costs(cases)
    shares = partition(cases, count, cost)
    everything = [case_id for share in shares for case_id in ids(share)]
    assert sorted(everything) == sorted(ids(cases)) and len(set(everything)) == len(cases)
    shuffled = list(cases)
    random.Random(count).shuffle(shuffled)
    assert [sorted(ids(s)) for s in partition(shuffled, count, costs(shuffled))] == [sorted(ids(s)) for s in shares]
    own = [select_share(shuffled, Shard(k, count, "--shard"), None)[0] for k in range(count)]
    assert [set(ids(s)) for s in own] == [set(ids(s)) for s in shares]


def shape_of(case):
    return (case.model, case.task, case.seq_len, case.batch_size, case.threads, case.padding_ratio)


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_shares_are_balanced_by_cost_and_keep_each_shape_on_one_shard(cases, count):
    cost = costs(cases)
    shares = partition(cases, count, cost)
    loads = [sum(cost[c.case_id] for c in share) for share in shares]
    shape_costs = {}
    for case in cases:
        shape_costs[shape_of(case)] = shape_costs.get(shape_of(case), 0) + cost[case.case_id]
    assert max(loads) - min(loads) <= max(shape_costs.values())  # the greedy bound: at most one shape apart
    assert max(loads) < 1.5 * sum(loads) / count
    homes = {shape_of(c): k for k, share in enumerate(shares) for c in share}
    assert all(shape_of(c) in {shape_of(d) for d in shares[homes[shape_of(c)]]} for c in cases)
    assert sum(len({shape_of(c) for c in share}) for share in shares) == len(shape_costs)


def test_ties_go_by_first_case_id_to_the_lowest_shard(cases):
    shares = partition(cases, 2, {c.case_id: 1.0 for c in cases})  # every shape has two cases: all tie
    firsts = sorted(min(c.case_id for c in cases if shape_of(c) == shape) for shape in {shape_of(c) for c in cases})
    assert [min(ids(s)) for s in shares] == firsts[:2]
    assert {c.case_id for c in shares[0] if c.case_id in firsts} == set(firsts[0::2])


def test_the_estimate_grows_with_tokens_and_layers_and_shrinks_with_threads(cases):
    def one(model, seq, batch, threads):
        return next(
            c for c in cases
            if (c.model, c.backend, c.seq_len, c.batch_size, c.threads) == (model, "eager", seq, batch, threads)
        )  # fmt: skip

    assert (layers(one("tiny", 16, 1, 1)), layers(one("deep", 16, 1, 1)), layers(one("base", 16, 1, 1))) == (2, 24, 12)
    assert estimate(one("tiny", 128, 1, 1)) == 8 * estimate(one("tiny", 16, 1, 1))
    assert estimate(one("tiny", 16, 4, 1)) == 4 * estimate(one("tiny", 16, 1, 1))
    assert estimate(one("deep", 16, 1, 1)) == 12 * estimate(one("tiny", 16, 1, 1))
    assert estimate(one("tiny", 16, 1, 2)) == estimate(one("tiny", 16, 1, 1)) / 2


ROW = {"schema": 1, "status": "error", "reason": "timed only", "model": "m", "task": "text-classification",
       "backend": "b", "precision": "fp32", "seq_len": 16, "batch_size": 1, "threads": 1}  # fmt: skip
"""What makes a line a row for the readers; the tests give each row its case_id and wall_s."""


def write_run(path, rows, manifest=None):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest or {"suite": {"name": "x"}}))
    (path / "results.jsonl").write_text("".join(json.dumps({**ROW, **r}) + "\n" for r in rows))
    return path


def test_known_wall_times_decide_the_partition_and_scale_the_estimates(cases, tmp_path):
    heavy, *rest = sorted(cases, key=lambda c: c.case_id)
    huge = 10 * sum(2 * estimate(c) for c in rest)
    known = {heavy.case_id: huge, rest[0].case_id: estimate(rest[0]) * 2, rest[1].case_id: estimate(rest[1]) * 2}
    run = write_run(tmp_path / "before", [{"case_id": k, "wall_s": v} for k, v in known.items()])
    cost = costs(cases, known)
    assert cost[heavy.case_id] == huge
    assert cost[rest[5].case_id] == pytest.approx(estimate(rest[5]) * 2)  # scaled by the median known ratio (2)
    mine, section = select_share(cases, Shard(0, 2, "--shard"), run)
    assert ids(mine) == [c.case_id for c in cases if shape_of(c) == shape_of(heavy)]  # costs more than the rest
    assert len(mine) == 2
    assert section["costs"] == {"run": str(run.resolve()), "known": 3, "estimated": len(cases) - 3}
    assert (section["index"], section["count"], section["method"]) == (0, 2, "lpt-by-shape")
    assert section["plan_cases"] == ids(cases)


def test_shard_options_are_checked():
    assert parse_shard("1/3") == Shard(1, 3, "--shard")
    for bad in ("3/3", "1", "-1/3", "a/3", "1/0", "1/x"):
        with pytest.raises(BenchError, match="--shard: expected K/N"):
            parse_shard(bad)
    with pytest.raises(BenchError, match="--costs: expected it with a shard"):
        requested(None, "some-run", environ={})


def test_the_shard_comes_from_a_slurm_array_task():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert from_environment(env) == Shard(3, 4, "SLURM_ARRAY_TASK_ID")
    assert requested(None, environ=env) == Shard(3, 4, "SLURM_ARRAY_TASK_ID")
    assert requested("0/1", environ=env) == Shard(0, 1, "--shard")  # the option wins
    assert parse_shard("auto/4", env) == Shard(3, 4, "SLURM_ARRAY_TASK_ID")
    with pytest.raises(BenchError, match="has 4 tasks, not 5"):
        parse_shard("auto/5", env)
    stepped = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_STEP": "2"}  # fmt: skip  (--array=1-7:2: tasks 1, 3, 5, 7)
    assert from_environment(stepped) == Shard(2, 4, "SLURM_ARRAY_TASK_ID")
    with pytest.raises(BenchError, match="SLURM_ARRAY_TASK_ID: expected a whole number, got 'x'"):
        from_environment({**env, "SLURM_ARRAY_TASK_ID": "x"})
    assert from_environment({"SLURM_JOB_ID": "7"}) is None and requested(None, environ={}) is None


def test_the_shard_comes_from_a_kubernetes_indexed_job():
    indexed = {"JOB_COMPLETION_INDEX": "2", "BENCH_SHARD_COUNT": "3"}
    assert from_environment(indexed) == Shard(2, 3, "JOB_COMPLETION_INDEX")
    assert parse_shard("auto/5", {"JOB_COMPLETION_INDEX": "4"}) == Shard(4, 5, "JOB_COMPLETION_INDEX")
    with pytest.raises(BenchError, match="shard count is not: give --shard auto/N or set BENCH_SHARD_COUNT"):
        from_environment({"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(BenchError, match="expected an index from 0 to 2, got 3"):
        from_environment({"JOB_COMPLETION_INDEX": "3", "BENCH_SHARD_COUNT": "3"})
    with pytest.raises(BenchError, match="expected SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX"):
        parse_shard("auto/2", {})


UNCACHED = TINY_SUITE.replace("    config: bert-tiny\n", "    hub: nobody/not-cached\n").replace(
    "threads: [1]", "threads: [1, 2, 3]"
).replace("seq_lens: [16]", "seq_lens: [16, 32]")
"""Twelve cases that end at once as `unavailable` rows: the Hub model is not in the (empty) cache."""


def shard_run(tmp_path, suite, name, *args, env=None):
    out = tmp_path / name
    result = bench_cli("run", suite, "--out", out, *args, env={"HF_HUB_CACHE": str(tmp_path / "hub"), **(env or {})})
    assert result.returncode == 1, result.stderr  # every row is `unavailable`
    return out, result


def row_ids(folder):
    return [json.loads(line)["case_id"] for line in (folder / "results.jsonl").read_text().splitlines()]


def test_shard_runs_record_their_share_and_merge_into_the_whole_plan(tmp_path):
    suite = write_suite(tmp_path, UNCACHED)
    whole, _ = shard_run(tmp_path, suite, "whole")
    plan = json.loads((whole / "manifest.json").read_text())["planned_cases"]
    assert len(plan) == 12
    timed = write_run(tmp_path / "timed", [{"case_id": c, "wall_s": i + 1.0} for i, c in enumerate(plan)])
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_JOB_ID": "9"}
    shards = [shard_run(tmp_path, suite, "s0", "--shard", "0/3", "--costs", timed)[0]]
    shards.append(shard_run(tmp_path, suite, "s1", "--costs", timed, env=slurm)[0])
    shards.append(shard_run(tmp_path, suite, "s2", "--shard", "2/3", "--costs", timed)[0])
    manifests = [json.loads((s / "manifest.json").read_text()) for s in shards]
    assert [(m["shard"]["index"], m["shard"]["count"], m["shard"]["from"]) for m in manifests] == [
        (0, 3, "--shard"), (1, 3, "SLURM_ARRAY_TASK_ID"), (2, 3, "--shard")
    ]  # fmt: skip
    assert all(m["shard"]["plan_cases"] == plan for m in manifests)
    assert all(m["shard"]["costs"]["known"] == 12 for m in manifests)
    assert [m["shard"]["expected_cost"] for m in manifests] == [26, 26, 26]  # shapes of 8, 10, ..., 18 in three
    for folder, manifest in zip(shards, manifests):
        assert sorted(row_ids(folder)) == sorted(manifest["planned_cases"])

    out = tmp_path / "merged"
    merged = bench_cli("merge", *shards[:2], "--out", out)
    assert merged.returncode == 0, merged.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["planned_cases"] == plan
    assert sorted(manifest["merged"]["missing"]) == sorted(manifests[2]["planned_cases"])
    assert f"missing: {len(manifests[2]['planned_cases'])} of 12 planned cases have no row" in merged.stderr
    assert "shards 2 of 3 are not among the folders" in merged.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["machine"]["hostname"] == manifests[0]["machine"]["hostname"] for r in rows)

    complete = bench_cli("merge", out, shards[2], "--out", tmp_path / "complete")
    assert complete.returncode == 0 and "missing" not in complete.stderr, complete.stderr
    assert sorted(row_ids(tmp_path / "complete")) == sorted(plan) and len(row_ids(tmp_path / "complete")) == 12
    assert len(json.loads((tmp_path / "complete" / "manifest.json").read_text())["merged"]["shards"]) == 3


def test_merge_refuses_overlaps_other_suites_and_existing_folders(tmp_path):
    suite = write_suite(tmp_path, UNCACHED)
    first, _ = shard_run(tmp_path, suite, "s0", "--shard", "0/2")
    second, _ = shard_run(tmp_path, suite, "s1", "--shard", "1/2")
    again, _ = shard_run(tmp_path, suite, "again", "--shard", "1/2")
    overlap = bench_cli("merge", first, second, again, "--out", tmp_path / "never")
    assert overlap.returncode == 2 and len(overlap.stderr.splitlines()) == 1
    assert f"{again} and {second} both hold case" in overlap.stderr
    other_suite = write_suite(tmp_path, UNCACHED.replace("seq_lens: [16, 32]", "seq_lens: [16, 64]"), "other.yaml")
    other, _ = shard_run(tmp_path, other_suite, "other", "--shard", "1/2")
    different = bench_cli("merge", first, other, "--out", tmp_path / "never")
    assert different.returncode == 2 and len(different.stderr.splitlines()) == 1
    assert f"{other}: expected the suite of {first}" in different.stderr
    assert "they differ at suite.defaults.seq_lens[1]" in different.stderr
    exists = bench_cli("merge", first, second, "--out", first)
    assert exists.returncode == 2 and "expected a new folder" in exists.stderr
    assert not (tmp_path / "never").exists()


def test_a_resumed_shard_keeps_its_share(tmp_path):
    suite = write_suite(tmp_path, UNCACHED)
    out, _ = shard_run(tmp_path, suite, "s1", "--shard", "1/2")
    share = json.loads((out / "manifest.json").read_text())["planned_cases"]
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:2]))
    resumed = bench_cli("run", "--resume", out, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert resumed.returncode == 1, resumed.stderr
    assert sorted(row_ids(out)) == sorted(share) and 2 < len(share) < 12
    refused = bench_cli("run", "--resume", out, "--shard", "0/2")
    assert refused.returncode == 2 and "give no SUITE, --out, --shard or --costs" in refused.stderr
