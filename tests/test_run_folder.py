"""Damaged run folders: readers skip what they cannot use and never write; only the writer repairs, keeping what it
removes. A manifest --resume cannot trust, and a folder or CPUs already in use, are refused in one line."""

import json
import os

import pytest

from bench.cli import app as cli
from bench.run import workflow
from bench.errors import BenchError
from bench.run.locks import cpu_list_text, lock_folder, parse_cpus
from bench.results.folder import RunDir, parse_row
from bench.results.shape import row_problem
from bench.measure.stats import summarize, throughput
from conftest import TINY_SUITE, bench_cli, write_suite


def row(case_id, backend="eager", median=5.0, status="ok"):
    """A row with the keys and types the runner writes (one case of a tiny text-classification model)."""
    samples = [median * f for f in (0.98, 1.0, 1.01, 1.03)]
    latency = summarize(samples)
    measured = status == "ok"
    return {
        "schema": 1, "case_id": case_id, "status": status, "reason": None if measured else "worker crashed",
        "suite": "tiny", "model": "tiny", "task": "text-classification", "backend": backend, "backend_type": "pytorch",
        "backend_options": {}, "environment": "main", "precision": "fp32", "seq_len": 16, "batch_size": 2,
        "threads": 1, "padding_ratio": 0.0, "baseline": backend == "eager", "pinned_cpus": [0],
        "latency_ms": latency if measured else None, "samples_ms": samples if measured else None,
        "throughput": throughput(latency["median"], 2, 32) if measured else None,
        "accuracy": {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": 1.0, "argmax_agreement": 1.0,
                     "finite": True, "passed": True, "failures": [], "tolerance": {}} if measured else None,
        "warnings": [], "stderr_tail": None, "wall_s": 1.0, "returncode": 0,
    }  # fmt: skip


GOOD = [row("tiny-eager-a", "eager", 5.0), row("tiny-sdpa-b", "sdpa", 4.0), row("tiny-ort-c", "ort", 3.0)]
DAMAGED_IDS = ["tiny-lost-d", "tiny-lost-e", "tiny-lost-f"]


def damaged_run(directory):
    """Three good rows around a garbage line, a JSON line that is not a row, and a torn last line."""
    directory.mkdir()
    manifest = {"schema": 1, "suite": {"name": "tiny"}, "planned_cases": [r["case_id"] for r in GOOD] + DAMAGED_IDS,
                "runs": [{"started": "2026-01-01T00:00:00+00:00", "finished": None}]}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest))
    lines = [json.dumps(GOOD[0]).encode(), b"\x00\x17garbage{{ not json", json.dumps(["tiny-lost-e", "ok"]).encode()]
    lines += [json.dumps(GOOD[1]).encode(), json.dumps(GOOD[2]).encode()]
    torn = json.dumps(row("tiny-lost-f")).encode()[:40]
    (directory / "results.jsonl").write_bytes(b"\n".join(lines) + b"\n" + torn)
    return directory


def snapshot(directory, but=("run.lock",)):
    """Every file's bytes and mtime (but the lock file, which a refused writer takes before it reads the manifest)."""
    files = (p for p in sorted(directory.rglob("*")) if p.is_file() and p.name not in but)
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_show_and_report_leave_a_damaged_file_unchanged_and_name_every_bad_line(tmp_path):
    run = damaged_run(tmp_path / "run")
    before = snapshot(run, but=())
    shown = bench_cli("show", run)
    reported = bench_cli("report", run, "--out", tmp_path / "report")
    assert snapshot(run, but=()) == before, "a reader wrote to the run folder"
    assert reported.returncode == 0, reported.stderr
    rows_file = run / "results.jsonl"
    for result in (shown, reported):
        assert "Traceback" not in result.stderr
        assert f"warning: {rows_file}:2: skipped: not JSON" in result.stderr
        assert f"warning: {rows_file}:3: skipped: not a row: expected an object, got a list" in result.stderr
        assert f"warning: {rows_file}:6: skipped: torn last line" in result.stderr
    assert shown.returncode == 1
    for good in GOOD:
        assert good["backend"] in shown.stdout
    assert shown.stdout.startswith("6 planned cases: 3 measured (3 passing the accuracy check), 0 failed, 3 not run.")
    assert f"not run (3 of 6 planned): {', '.join(DAMAGED_IDS)}" in shown.stdout
    assert f"bench run --resume {run}" in shown.stdout
    markdown = (tmp_path / "report" / "report.md").read_text()
    top = markdown.split("## Needs attention")[0]
    assert "**Incomplete run.**" in top and "3 of 6 planned cases have no row" in top
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.index('id="incomplete"') < html.index("Needs attention")


def test_readers_warn_once_per_bad_line_and_bound_the_warnings(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    garbage = b"".join(b"not json %d\n" % i for i in range(25))
    (run / "results.jsonl").write_bytes(garbage + json.dumps(GOOD[0]).encode() + b"\n")
    folder = RunDir(run)
    assert folder.rows() == [GOOD[0]] and folder.rows() == [GOOD[0]]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[-1].endswith("15 more bad lines skipped")


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("a string", "expected an object, got a string"),
        ({**GOOD[0], "schema": 2}, "schema: expected 1, got 2"),
        ({k: v for k, v in GOOD[0].items() if k != "case_id"}, "case_id: expected a non-empty string, got no such key"),
        ({**GOOD[0], "status": None}, "status: expected a non-empty string, got null"),
        ({**GOOD[0], "seq_len": "16"}, "seq_len: expected an integer, got a string"),
        ({**GOOD[0], "threads": True}, "threads: expected an integer, got a boolean"),
        ({**GOOD[0], "warnings": "slow"}, "warnings: expected a list or null, got a string"),
        ({**GOOD[0], "latency_ms": None}, "latency_ms.median: expected a positive number in an ok row, got null"),
        ({**GOOD[0], "latency_ms": {**GOOD[0]["latency_ms"], "median": 0}}, "latency_ms.median: expected a positive"),
        ({**GOOD[0], "latency_ms": {**GOOD[0]["latency_ms"], "p99": float("nan")}}, "latency_ms.p99: expected a number, got NaN"),
        ({**GOOD[0], "accuracy": {**GOOD[0]["accuracy"], "cosine": "1"}}, "accuracy.cosine: expected a number"),
    ],
)  # fmt: skip
def test_a_row_is_checked_for_the_keys_and_types_readers_use(bad, problem):
    assert row_problem(bad).startswith(problem)


@pytest.mark.parametrize(
    "line, problem",
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"\x00\x17garbage", "not JSON (Expecting value: line 1 column 1 (char 0))"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON (nested too deeply)"),
        (b"null", "not a row: expected an object, got null"),
    ],
)
def test_a_line_that_is_not_a_row_says_why(line, problem):
    assert parse_row(line) == (None, problem)


def test_rows_the_runner_writes_for_every_status_pass_the_check():
    assert row_problem(GOOD[0]) is None
    assert row_problem(row("tiny-crash", status="crashed")) is None


def test_only_the_writer_repairs_a_torn_last_line_and_keeps_what_it_removes(tmp_path):
    folder = RunDir(tmp_path)
    good = json.dumps(GOOD[0]).encode() + b"\n"
    folder.rows_path.write_bytes(good + b'{"schema": 1, "case_')
    message = folder.repair_torn_tail()
    assert message == (
        f"{folder.rows_path}:2: a torn last line (20 bytes, no newline) was moved to results.jsonl.rejected;"
        " its case runs again"
    )
    assert folder.rows_path.read_bytes() == good
    folder.rows_path.write_bytes(good + b"torn again")
    folder.repair_torn_tail()
    assert folder.rejected_path.read_bytes() == b'{"schema": 1, "case_\ntorn again\n'
    assert folder.repair_torn_tail() is None and folder.rows_path.read_bytes() == good


def test_resume_repairs_the_torn_line_says_so_and_plans_its_case_again(tmp_path, capsys):
    suite = write_suite(tmp_path, TINY_SUITE)
    run_dir, cases, _, _ = workflow.start_run(str(suite), str(tmp_path / "run"), [])
    run_dir.release()
    first, second = (c.case_id for c in cases)
    rows = [row(first), row(second)]
    run_dir.rows_path.write_bytes(json.dumps(rows[0]).encode() + b"\n" + json.dumps(rows[1]).encode()[:50])
    resumed, todo, _, notes = workflow.resume_run(str(run_dir.path), [])
    resumed.release()
    assert [c.case_id for c in todo] == [second]
    assert any("moved to results.jsonl.rejected" in n for n in notes)
    assert run_dir.rejected_path.read_bytes() == json.dumps(rows[1]).encode()[:50] + b"\n"
    manifest = run_dir.read_manifest()
    assert manifest["runs"][-1]["resumed"] and manifest["runs"][-1]["cpus"] == sorted(os.sched_getaffinity(0))


def resumable(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    run_dir, _, _, _ = workflow.start_run(str(suite), str(tmp_path / "run"), [])
    run_dir.release()
    return run_dir, run_dir.read_manifest()


def edited(manifest, **changes):
    return {k: v for k, v in {**manifest, **changes}.items() if v is not DROP}


DROP = object()
BAD_MANIFESTS = {
    "not JSON": (lambda m: "{not json", "expected JSON, got Expecting property name"),
    "not an object": (lambda m: json.dumps([m]), "expected a JSON object, got a list"),
    "no suite": (lambda m: json.dumps(edited(m, suite=DROP)), "suite: expected the suite as validated (an object), got no such field"),
    "suite a string": (lambda m: json.dumps(edited(m, suite="tiny")), "suite: expected the suite as validated (an object), got a string"),
    "no planned_cases": (lambda m: json.dumps(edited(m, planned_cases=DROP)), "planned_cases: expected a list of strings, got no such field"),
    "planned numbers": (lambda m: json.dumps(edited(m, planned_cases=[1, 2])), "planned_cases: expected a list of strings, got a list holding a number"),
    "filters a string": (lambda m: json.dumps(edited(m, filters="backend=eager")), "filters: expected a list of strings, got a string"),
    "bad filter": (lambda m: json.dumps(edited(m, filters=["speed=fast"])), "filters: --filter: expected a field among"),
    "no suite_file": (lambda m: json.dumps(edited(m, suite_file=DROP)), "suite_file: expected the suite file's path, got no such field"),
    "runs not a list": (lambda m: json.dumps(edited(m, runs={})), "runs: expected a list of runs, got an object"),
    "suite invalid": (
        lambda m: json.dumps(edited(m, suite={**m["suite"], "defaults": {**m["suite"]["defaults"], "seq_lens": [-16]}})),
        "suite.defaults.seq_lens: expected integers of at least 1, got -16; the suite no longer validates",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_MANIFESTS)
def test_a_manifest_that_is_not_what_it_should_be_refuses_resume_in_one_line(tmp_path, capsys, kind):
    run_dir, manifest = resumable(tmp_path)
    damage, message = BAD_MANIFESTS[kind]
    run_dir.manifest_path.write_text(damage(manifest))
    before = snapshot(run_dir.path)
    assert cli.main(["run", "--resume", str(run_dir.path), "--no-peak", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run_dir.manifest_path}: {message}") and err.count("\n") == 1, err
    assert snapshot(run_dir.path) == before


def test_a_broken_manifest_through_the_command_line(tmp_path):
    run_dir, manifest = resumable(tmp_path)
    run_dir.manifest_path.write_text(json.dumps(edited(manifest, planned_cases=DROP)))
    result = bench_cli("run", "--resume", run_dir.path)
    assert result.returncode == 2
    expected = f"error: {run_dir.manifest_path}: planned_cases: expected a list of strings, got no such field"
    assert result.stderr.strip() == expected


def test_a_new_run_refuses_a_used_folder_and_a_folder_in_use(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    run_dir, _ = resumable(tmp_path)
    with pytest.raises(BenchError, match="expected a new folder, got one with results; use --resume"):
        workflow.start_run(str(suite), str(run_dir.path), [])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    held = lock_folder(fresh)  # another open file description: the refusal another process gets (see test_concurrent)
    try:
        with pytest.raises(BenchError, match=f"^{fresh} is in use by pid {os.getpid()}$"):
            workflow.start_run(str(suite), str(fresh), [])
    finally:
        held.release()
    assert list(fresh.iterdir()) == [fresh / "run.lock"]


@pytest.mark.parametrize(
    "text, cpus", [("0", [0]), ("1,0", [0, 1]), ("0-1", [0, 1]), (" 0 - 1 ", None), ("0-1,1", [0, 1])]
)
def test_cpu_lists(text, cpus):
    if cpus is None:
        with pytest.raises(BenchError, match="--cpus: expected CPU numbers such as 2,3 or 0-1"):
            parse_cpus(text, {0, 1})
    else:
        assert parse_cpus(text, {0, 1}) == cpus


@pytest.mark.parametrize(
    "text, message",
    [
        ("x", "--cpus: expected CPU numbers such as 2,3 or 0-1, got 'x'"),
        ("", "--cpus: expected CPU numbers such as 2,3 or 0-1, got ''"),
        ("1-0", "--cpus: expected a range from low to high such as 0-1, got '1-0'"),
        ("0,7", "--cpus: expected CPUs this process may use (0-1), got 7"),
        ("0-99999999999", "--cpus: expected CPUs this process may use (0-1), got 99999999999"),
    ],
)
def test_cpu_lists_that_are_refused(text, message):
    with pytest.raises(BenchError) as caught:
        parse_cpus(text, {0, 1})
    assert str(caught.value) == message


def test_cpu_list_text():
    assert cpu_list_text([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"


def test_cpus_too_few_for_the_widest_case_are_refused_before_anything_is_written(tmp_path, capsys):
    suite = write_suite(tmp_path, TINY_SUITE.replace("threads: [1]", "threads: [1, 2]"))
    allowed = sorted(os.sched_getaffinity(0))
    code = cli.main(["run", str(suite), "--out", str(tmp_path / "run"), "--cpus", str(allowed[0]), "--no-peak"])
    assert code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err == (
        "error: --cpus: expected at least 2 CPUs (the most threads a case uses), got 1;"
        " give more CPUs or --filter threads=...\n"
    )
