"""`bench slurm` on a real Slurm (CI starts a single-node one with .ci/slurm): a two-shard job array of a tiny
suite, waited for, merged, and checked against the unsharded plan."""

import json
import shutil

import pytest

from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from conftest import TINY_SUITE, bench_cli, write_suite

NO_SLURM = "sbatch is not on PATH: CI starts a single-node Slurm with .ci/slurm (Debian's slurm-wlm and munge)"
needs_slurm = pytest.mark.skipif(shutil.which("sbatch") is None, reason=NO_SLURM)
RUN_OPTIONS = ("--no-peak", "--no-report", "--quiet-wait", "0")


def test_without_sbatch_it_refuses_in_one_line(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    result = bench_cli("slurm", suite, "--shards", 2, "--out", tmp_path / "array", env={"PATH": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: slurm: expected sbatch on PATH, got none; run this where Slurm jobs are submitted"
    ]
    assert not (tmp_path / "array").exists()


@needs_slurm
def test_a_job_sbatch_refuses_is_bad_input(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    result = bench_cli("slurm", suite, "--shards", 2, "--out", tmp_path / "array", "--", "--partition=no-such-partition")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: slurm: sbatch refused the job (exit code 1): ") and "partition" in line
    assert not (tmp_path / "array" / "bench-slurm.sh").exists()


@pytest.mark.slow
@needs_slurm
def test_a_two_shard_array_merges_into_exactly_the_unsharded_case_set(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE.replace("threads: [1]", "threads: [1, 2]"))
    out = tmp_path / "array"
    submitted = bench_cli(
        "slurm", suite, "--shards", 2, "--out", out, "--wait", *RUN_OPTIONS, "--", "--time=30", timeout=1800
    )
    outputs = "".join(p.read_text() for p in sorted(out.glob("slurm-*.out")))
    assert submitted.returncode in (0, 1), submitted.stderr + outputs  # 1: a case failed or was contaminated
    job = submitted.stdout.strip()
    assert job.isdigit(), submitted.stdout
    assert sorted(p.name for p in out.glob("slurm-*.out")) == [f"slurm-{job}_0.out", f"slurm-{job}_1.out"]
    script = (out / "bench-slurm.sh").read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --exclusive" in script and "--no-peak" in script
    shards = [out / "shard-0", out / "shard-1"]
    for index, shard in enumerate(shards):
        manifest = json.loads((shard / "manifest.json").read_text())
        assert (manifest["shard"]["index"], manifest["shard"]["count"]) == (index, 2)

    merged = bench_cli("merge", *shards, "--out", tmp_path / "merged")
    assert merged.returncode == 0 and "missing" not in merged.stderr, merged.stderr
    rows = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    ids = [row["case_id"] for row in rows]
    unsharded = [case.case_id for case in expand(load_suite(suite)[0])]
    assert sorted(ids) == sorted(unsharded) and len(ids) == len(set(ids)) == 4
    assert json.loads((tmp_path / "merged" / "manifest.json").read_text())["planned_cases"] == unsharded
    assert all(row["machine"]["hostname"] for row in rows)
