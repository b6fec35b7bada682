"""End to end: a tiny suite run twice, the second time with one backend slowed on purpose, is caught by compare."""

import json

import pytest

from conftest import EAGER_AND_SDPA, TINY_MODEL, bench_cli, write_suite

SUITE = """\
name: slowdown
defaults:
  seq_lens: [16, 32, 64]
  batch_sizes: [8]
  threads: [1]
  measure: {warmup: 0, min_iterations: 3, min_seconds: 0.1, max_seconds: 3, rounds: 2, retries: 1, timeout: 120}
""" + TINY_MODEL + EAGER_AND_SDPA
"""Six cases of two rounds: each case is judged against the spread between rounds of five others (5 degrees of
freedom, beyond the pooled figure's minimum of 4), so the machine's drift is not taken for a case's instability."""
BASE_DELAY = {"BENCH_DELAY_MS": "tiny-sdpa-:100"}
NEW_DELAY = {"BENCH_DELAY_MS": "tiny-sdpa-:300"}
"""The sdpa cases spin 100 ms per call in the base run and 300 ms in the new one. Their own calls took 8 to 35 ms on
an AVX2 VM, and the undelayed cases moved by up to 1.7 times between the two runs there, so the spin must dominate:
the new side is at least 2.4 times slower whatever the machine does. The spin is wall time, the same at every speed
of the machine, so the delayed cases' rounds agree closely on both sides and are never taken for unstable."""
THRESHOLD = "0.9"
"""Only changes of 90% count here: the delayed cases are well beyond it; the unchanged ones, measured minutes apart on
a drifting machine, have moved by 1.7 times but not by 1.9."""


def run_pair(tmp_path):
    suite = write_suite(tmp_path, SUITE)
    base, new = tmp_path / "base", tmp_path / "new"
    for out, env in ((base, BASE_DELAY), (new, NEW_DELAY)):
        result = bench_cli("run", suite, "--out", out, env=env)
        assert result.returncode in (0, 1), result.stderr  # 1: a case flagged by the meter; compare says so
    md, js = tmp_path / "comparison.md", tmp_path / "comparison.json"
    compared = bench_cli("compare", base, new, "--threshold", THRESHOLD, "--markdown", md, "--json", js)
    assert compared.returncode in (0, 1), compared.stderr
    return compared, md.read_text(), json.loads(js.read_text())


@pytest.mark.slow
def test_a_backend_slowed_on_purpose_is_caught_and_the_unchanged_one_is_not_called_slower(tmp_path):
    compared, md, data = run_pair(tmp_path)
    verdicts = {(case["backend"], case["seq_len"]): case for case in data["cases"]}
    assert set(verdicts) == {(backend, s) for backend in ("eager", "sdpa") for s in (16, 32, 64)}
    for (backend, _), case in verdicts.items():
        if backend == "eager":
            assert case["verdict"] != "slower", case
            continue
        assert case["verdict"] == "slower", case
        assert case["ratio"] > 2 and case["ratio_ci"][0] > 1, case
    assert compared.returncode == 1
    table = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
    assert all(line.startswith("| **slower** | `tiny-sdpa-fp32-") for line in table[:3]), table
    assert {case["backend"] for case in data["cases"][:3]} == {"sdpa"}


def test_the_delay_hook_wraps_only_the_matching_cases_run(monkeypatch):
    import time

    from bench.worker.case import DELAY_VAR, inject_delay

    class Backend:
        def run(self):
            return "outputs"

    monkeypatch.setenv(DELAY_VAR, "tiny-sdpa-:20,other:5")
    untouched, slowed = Backend(), Backend()
    inject_delay(untouched, "tiny-eager-fp32-s32-b8-t1-0000")
    inject_delay(slowed, "tiny-sdpa-fp32-s32-b8-t1-0000")
    assert "run" not in vars(untouched)
    start = time.perf_counter()
    assert slowed.run() == "outputs"
    assert time.perf_counter() - start >= 0.020  # a floor the spin guarantees, not a speed
