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
  seq_lens: [16, 32]
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
    precisions: [fp32, int8]
  - name: ov
    type: openvino
"""
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


def run(suite, out, cache, env=None, probe=False):
    env = {"BENCH_CACHE_DIR": str(cache), **(env or {})}
    result = bench_cli("run", suite, "--out", out, *(["--no-report"] if probe else []), env=env, probe_and_report=probe)
    rows = {(r["backend"], r["precision"], r["seq_len"]): r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    return result, rows


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CPUS, reason="preparation ahead needs two CPUs for two jobs at once")
def test_a_cold_run_builds_its_exports_and_reference_side_by_side_before_measuring_and_the_rows_say_so(tmp_path):
    suite, cache = write_suite(tmp_path, SUITE), tmp_path / "cache"
    result, rows = run(suite, tmp_path / "cold", cache, probe=True)
    assert result.returncode == 0, result.stderr
    said = result.stderr
    # the ORT export then its int8 model, one after the other; the OV IR beside them; a reference per shape
    assert "preparing ahead on CPUs" in said and ": 5 job(s)" in said
    assert said.index("prepared ahead in") < said.index("matmul peak: fp32") < said.index("tiny eager fp32"), said
    peak = json.loads((tmp_path / "cold" / "manifest.json").read_text())["peak"]
    assert peak["gflops"]["fp32"]["1"] > 0 and peak["start"] == "warm"  # forked: no second import of torch
    assert all(row["status"] == "ok" and row["accuracy"]["passed"] for row in rows.values())
    ort, int8, ov = rows["ort", "fp32", 16], rows["ort", "int8", 16], rows["ov", "fp32", 16]
    assert ort["details"]["cache"] == int8["details"]["cache"] == ov["details"]["cache"] == "miss"
    assert ort["timings_ms"]["ahead_prepare"] > ort["timings_ms"]["export_ms"] > 0
    assert int8["details"]["export_cache"] == "hit" and "export_ms" not in int8["timings_ms"]  # built after fp32
    assert int8["timings_ms"]["ahead_prepare"] > int8["timings_ms"]["quantize_ms"] > 0
    assert ov["timings_ms"]["ahead_prepare"] > ov["timings_ms"]["convert_ms"] > 0
    assert ort["details"]["built_ahead_on"] != ov["details"]["built_ahead_on"]  # the two exports ran at once
    assert preparation_ms(ort) == ort["timings_ms"]["prepare"] + ort["timings_ms"]["ahead_prepare"]
    for key in [("ort", "fp32", 32), ("ort", "int8", 32), ("ov", "fp32", 32)]:  # found built, as without building ahead
        assert rows[key]["details"]["cache"] == "hit" and "ahead_prepare" not in rows[key]["timings_ms"], key
    assert "ahead_prepare" not in rows["eager", "fp32", 16]["timings_ms"]  # its reference was made ahead

    result, again = run(suite, tmp_path / "warm", cache)
    assert result.returncode == 0 and "preparing ahead" not in result.stderr, result.stderr
    assert {row["details"]["cache"] for key, row in again.items() if key[0] != "eager"} == {"hit"}
    assert not any("ahead_prepare" in row["timings_ms"] for row in again.values())


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CPUS, reason="preparation ahead needs two CPUs for two jobs at once")
def test_a_job_that_hangs_ahead_fails_its_case_at_its_timeout_once_and_the_others_run(tmp_path):
    without_ort = SUITE.replace("  - name: ort\n    type: onnxruntime\n    precisions: [fp32, int8]\n", "")
    suite = write_suite(tmp_path, without_ort.replace("timeout: 300", "timeout: 20"))
    began = time.monotonic()
    result, rows = run(suite, tmp_path / "out", tmp_path / "cache", env={"BENCH_FAULT": "-ov-:hang"})
    took = time.monotonic() - began
    assert result.returncode == 1 and "ov fp32 of tiny failed (timeout: killed after the 20 s timeout), its cases fail with it" in result.stderr
    for seq_len in (16, 32):  # the configuration's case at the other shape fails with it, without hanging again
        hung, eager = rows["ov", "fp32", seq_len], rows["eager", "fp32", seq_len]
        assert hung["status"] == "timeout" and hung["reason"] == "killed after the 20 s timeout"
        assert eager["status"] == "ok" and eager["accuracy"]["passed"]
    assert took < 2 * 20 + 25, f"the hang cost its timeout twice: {took:.0f} s"
