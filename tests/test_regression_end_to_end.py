"""End to end: a tiny suite run twice, the second time with one backend slowed on purpose, is caught by compare."""

import json

import pytest

from conftest import EAGER_AND_SDPA, TINY_MODEL, bench_cli, write_suite

SUITE = """\
name: slowdown
defaults:
  seq_lens: [32]
  batch_sizes: [8]
  threads: [1]
  measure: {warmup: 2, min_iterations: 20, min_seconds: 0.2, max_seconds: 3, rounds: 2, retries: 1, timeout: 120}
""" + TINY_MODEL + EAGER_AND_SDPA
DELAY = {"BENCH_DELAY_MS": "tiny-sdpa-:3"}
"""3 ms of spinning per call of the sdpa case: more than the call itself (about a millisecond), so the slowdown is
far beyond any level a shared machine moves a case by."""
THRESHOLD = "0.5"
"""Only changes of 50% count here: the delayed case is well beyond it, the unchanged one never drifts that far."""
ATTEMPTS = 2


def run_pair(tmp_path, attempt):
    suite = write_suite(tmp_path, SUITE)
    base, new = tmp_path / f"base-{attempt}", tmp_path / f"new-{attempt}"
    for out, env in ((base, None), (new, DELAY)):
        result = bench_cli("run", suite, "--out", out, env=env)
        assert result.returncode in (0, 1), result.stderr  # 1: a case flagged by the meter; compare says so
    md, js = tmp_path / f"comparison-{attempt}.md", tmp_path / f"comparison-{attempt}.json"
    compared = bench_cli("compare", base, new, "--threshold", THRESHOLD, "--markdown", md, "--json", js)
    assert compared.returncode in (0, 1), compared.stderr
    return compared, md.read_text(), json.loads(js.read_text())


@pytest.mark.slow
def test_a_backend_slowed_on_purpose_is_caught_and_the_unchanged_one_is_not_called_slower(tmp_path):
    """A case flagged on either side (contaminated or unstable on a busy machine) can't tell: the pair is run again."""
    flagged = []
    for attempt in range(ATTEMPTS):
        compared, md, data = run_pair(tmp_path, attempt)
        verdicts = {case["backend"]: case for case in data["cases"]}
        assert set(verdicts) == {"eager", "sdpa"}
        assert verdicts["eager"]["verdict"] != "slower", verdicts["eager"]
        if verdicts["sdpa"]["verdict"] == "cant_tell":
            flagged.append(verdicts["sdpa"]["reasons"])
            continue
        assert verdicts["sdpa"]["verdict"] == "slower" and compared.returncode == 1, verdicts["sdpa"]
        assert verdicts["sdpa"]["ratio"] > 1.5 and verdicts["sdpa"]["ratio_ci"][0] > 1
        table = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
        assert table[0].startswith("| **slower** | `tiny-sdpa-fp32-s32-b8-t1-")
        assert data["cases"][0]["backend"] == "sdpa"
        return
    pytest.skip(f"the delayed case was flagged in all {ATTEMPTS} attempts on this busy machine: {flagged}")


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
