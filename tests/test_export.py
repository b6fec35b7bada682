"""pytest-benchmark's JSON from a run: its statistics computed its way, read back by its own `compare`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.stats import Stats

from bench.results.export import benchmark_stats
from conftest import bench_cli
from test_regression import suite_rows
from test_report import make_row, write_run


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 8, 9, 31])
def test_the_stats_are_pytest_benchmarks_own(n):
    samples = [10.0 + ((7 * i) % n) * 0.37 + (3.0 if i == n - 1 else 0.0) for i in range(n)]  # one slow outlier
    theirs = Stats()
    for sample in samples:
        theirs.update(sample / 1000)
    ours = benchmark_stats(samples)
    assert set(ours) == set(Stats.fields) | {"data", "iterations"}
    for name in Stats.fields:
        expected = getattr(theirs, name)
        assert ours[name] == (expected if isinstance(expected, (int, str)) else pytest.approx(expected)), name
    assert ours["data"] == pytest.approx([s / 1000 for s in samples]) and ours["iterations"] == 1


def test_pytest_benchmark_compare_reads_the_exported_run_and_lists_its_cases(tmp_path):
    rows = suite_rows() + [make_row("bert", "ort", "int8", 32, 1, 5.0, status="crashed", reason="SIGSEGV")]
    run = write_run(tmp_path / "run", rows)
    out = tmp_path / "export" / "0001_run.json"
    result = bench_cli("export", "--format", "pytest-benchmark", run, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "left out: 1 case(s) that were not measured" in result.stderr
    exported = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(exported)
    assert exported["machine_info"]["cpu"]["brand_raw"] == "Test CPU" and exported["commit_info"]["id"] == "abc123"
    assert [b["name"] for b in exported["benchmarks"]] == [r["case_id"] for r in rows[:4]]
    assert exported["benchmarks"][0]["stats"]["median"] == pytest.approx(rows[0]["latency_ms"]["median"] / 1000)
    printed = bench_cli("export", "--format", "pytest-benchmark", run)
    assert json.loads(printed.stdout) == exported
    cli = Path(sys.executable).with_name("pytest-benchmark")
    compared = subprocess.run([cli, "compare", out, "--columns", "min,median,max,rounds"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    assert "Failed to load" not in compared.stdout + compared.stderr
    for row in rows[:4]:
        assert row["case_id"] in compared.stdout
    assert "bert-ort" not in compared.stdout
    assert "Median" in compared.stdout and "(time in ms)" in compared.stdout
