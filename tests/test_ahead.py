"""Preparation ahead: a cold run's exports, conversions and references made on every CPU before anything is timed."""

import json
import os
import time

import pytest

from bench.results.rows import preparation_ms
from conftest import bench_cli, write_suite

SUITE = """\
name: ahead
defaults:
  seq_lens: [16]
  batch_sizes: [1]
  threads: [1]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 1, timeout: 300}
models:
  - name: tiny
    config: bert-tiny
    task: text-classification
backends:
  - name: eager
    type: pytorch
  - name: ort
    type: onnxruntime
  - name: ov
    type: openvino
"""
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


def run(suite, out, cache, env=None, probe=False):
    env = {"BENCH_CACHE_DIR": str(cache), **(env or {})}
    result = bench_cli("run", suite, "--out", out, *(["--no-report"] if probe else []), env=env, probe_and_report=probe)
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    return result, rows


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CPUS, reason="preparation ahead needs two CPUs for two jobs at once")
def test_a_cold_run_builds_its_exports_and_reference_side_by_side_before_measuring_and_the_rows_say_so(tmp_path):
    suite, cache = write_suite(tmp_path, SUITE), tmp_path / "cache"
    result, rows = run(suite, tmp_path / "cold", cache, probe=True)
    assert result.returncode == 0, result.stderr
    said = result.stderr
    assert "preparing ahead on CPUs" in said and ": 3 job(s)" in said  # the ORT export, the OV IR, the reference
    assert said.index("prepared ahead in") < said.index("matmul peak: fp32") < said.index("tiny eager fp32"), said
    peak = json.loads((tmp_path / "cold" / "manifest.json").read_text())["peak"]
    assert peak["gflops"]["fp32"]["1"] > 0 and peak["start"] == "warm"  # forked: no second import of torch
    ort, ov = rows["ort"], rows["ov"]
    assert ort["details"]["cache"] == ov["details"]["cache"] == "miss"
    assert ort["timings_ms"]["ahead_prepare"] > ort["timings_ms"]["export_ms"] > 0
    assert ov["timings_ms"]["ahead_prepare"] > ov["timings_ms"]["convert_ms"] > 0
    assert ort["details"]["built_ahead_on"] != ov["details"]["built_ahead_on"]  # the two exports ran at once
    assert preparation_ms(ort) == ort["timings_ms"]["prepare"] + ort["timings_ms"]["ahead_prepare"]
    assert "ahead_prepare" not in rows["eager"]["timings_ms"]  # its reference was made ahead: nothing of its own

    result, again = run(suite, tmp_path / "warm", cache)
    assert result.returncode == 0 and "preparing ahead" not in result.stderr, result.stderr
    assert again["ort"]["details"]["cache"] == again["ov"]["details"]["cache"] == "hit"
    assert not any("ahead_prepare" in row["timings_ms"] for row in again.values())


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CPUS, reason="preparation ahead needs two CPUs for two jobs at once")
def test_a_job_that_hangs_ahead_fails_its_case_at_its_timeout_once_and_the_others_run(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace("timeout: 300", "timeout: 20").replace("  - name: ort\n    type: onnxruntime\n", ""))
    began = time.monotonic()
    result, rows = run(suite, tmp_path / "out", tmp_path / "cache", env={"BENCH_FAULT": "-ov-:hang"})
    took = time.monotonic() - began
    assert result.returncode == 1 and "ov fp32 of tiny failed (timeout: killed after the 20 s timeout), its cases fail with it" in result.stderr
    assert rows["ov"]["status"] == "timeout" and rows["ov"]["reason"] == "killed after the 20 s timeout"
    assert rows["eager"]["status"] == "ok" and rows["eager"]["accuracy"]["passed"]
    assert took < 2 * 20 + 25, f"the hang cost its timeout twice: {took:.0f} s"
