"""Runs started side by side, as real processes: one run per folder, one run per CPU, disjoint --cpus on purpose."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.run.launch import group_running
from bench.run.warm import KEEP_VAR
from conftest import PROJECT, TINY_SUITE, bench_cli, write_suite

HANGING = TINY_SUITE.split("backends:")[0] + """\
backends:
  - name: hang
    type: pytorch
    measure: {timeout: 300}
"""
"""One case whose worker hangs (the BENCH_FAULT test hook) until it is stopped: a run that holds its locks."""
ONE_CASE = TINY_SUITE.split("  - name: sdpa")[0]


def start(tmp_path, *args, env=None, name="first"):
    """`python -m bench ...` in the background, from tmp_path (its reports land there), this checkout's code; a run
    does not wait for quiet CPUs (the other run of a test keeps them busy on purpose)."""
    if args and args[0] == "run":
        args = (*args, "--quiet-wait", "0")
    out, err = (open(tmp_path / f"{name}.{kind}", "w") for kind in ("out", "err"))
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT), KEEP_VAR: "", **(env or {})}  # the run's own fork servers
    command = [sys.executable, "-m", "bench", *map(str, args)]
    return subprocess.Popen(  # SIGINT as at a terminal, even where this test runs with it ignored (a background job)
        command, cwd=tmp_path, env=full_env, stdout=out, stderr=err,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def wait_for(condition, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert process.poll() is None, f"the run ended with {process.returncode} before it was expected to"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def worker_pids(folder, run_pid):
    """The run's workers: a process whose command line names a job file of this run folder (a cold start), or a
    child of the run's fork server (a warm start: forked, it keeps the server's command line)."""
    pids, servers = [], []
    for pid, parent, cmdline in processes():
        if str(folder / "jobs").encode() in cmdline:
            pids.append(pid)
        elif parent == run_pid and b"bench.worker.warm" in cmdline:
            servers.append(pid)
    return pids + [pid for pid, parent, _ in processes() if parent in servers]


def processes():
    """(pid, parent pid, command line) of every process this user can read."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                parent = int(handle.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry), parent, cmdline))
    return found


def test_a_folder_in_use_refuses_a_second_run_and_a_resume_and_an_interrupt_is_recorded(tmp_path):
    suite = write_suite(tmp_path, HANGING)
    run, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    hang = {"BENCH_FAULT": "-hang-:hang", "TMPDIR": str(scratch)}
    first = start(tmp_path, "run", suite, "--out", run, "--no-peak", env=hang)
    try:
        wait_for(lambda: list((run / "jobs").glob("*/job.json")), first)  # a case is running; its files in the run
        worker = wait_for(lambda: worker_pids(run, first.pid), first)[0]
        second = bench_cli("run", suite, "--out", run)
        resume = bench_cli("run", "--resume", run)
        elsewhere = bench_cli("run", suite, "--out", tmp_path / "elsewhere")
        shown = bench_cli("show", run)
    finally:
        first.send_signal(signal.SIGINT)
        returncode = first.wait(timeout=300)
    assert (second.returncode, second.stderr) == (2, f"error: {run} is in use by pid {first.pid}\n")
    assert (resume.returncode, resume.stderr) == (2, f"error: {run} is in use by pid {first.pid}\n")
    cpu = min(os.sched_getaffinity(0))
    assert elsewhere.returncode == 2 and not (tmp_path / "elsewhere").exists()
    assert elsewhere.stderr == (
        f"error: CPU {cpu} is in use by pid {first.pid} (bench run {run}); pick other CPUs with --cpus, or wait\n"
    )
    assert shown.returncode == 1 and "not run (1 of 1 planned)" in shown.stdout  # a reader never waits for the lock

    stderr = (tmp_path / "first.err").read_text()
    assert returncode == 130, stderr
    assert stderr.rstrip().endswith(f"interrupted: finished cases are kept; continue with: bench run --resume {run}")
    last = json.loads((run / "manifest.json").read_text())["runs"][-1]
    assert last["interrupted"] is True and last["finished"]
    assert not group_running(worker), "the interrupted case's worker group outlived the run"
    left_in_tmp = [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")]  # torch's own cache
    assert not (run / "jobs").exists() and left_in_tmp == []
    report = (tmp_path / "reports" / "run" / "report.md").read_text()
    assert "**Incomplete run.** The run was interrupted: 1 of 1 planned case has no row" in report.split("##")[0]

    (run / "jobs" / "left-by-a-killed-run").mkdir(parents=True)
    nothing = bench_cli("run", "--resume", run, "--filter", "backend=none")
    assert nothing.returncode == 1 and "nothing to run" in nothing.stderr, nothing.stderr
    assert not (run / "jobs").exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_two_runs_on_disjoint_cpus_both_run_and_a_third_on_their_cpus_is_refused(tmp_path):
    suite = write_suite(tmp_path, ONE_CASE)
    cpu_a, cpu_b = sorted(os.sched_getaffinity(0))[:2]
    first = start(tmp_path, "run", suite, "--out", tmp_path / "a", "--cpus", cpu_a, "--no-peak", "--no-report")
    wait_for(lambda: (tmp_path / "a" / "manifest.json").exists(), first)
    overlapping = bench_cli("run", suite, "--out", tmp_path / "both", "--cpus", f"{cpu_a}-{cpu_b}")
    second = start(
        tmp_path, "run", suite, "--out", tmp_path / "b", "--cpus", cpu_b, "--no-peak", "--no-report", name="second"
    )
    wait_for(lambda: (tmp_path / "b" / "manifest.json").exists(), second)
    assert first.poll() is None, "the first run ended before the second started: they did not overlap"
    # 1 would be the interference meter seeing the other run's work (its parent is not pinned): not what is tested
    assert first.wait(timeout=600) in (0, 1), (tmp_path / "first.err").read_text()
    assert second.wait(timeout=600) in (0, 1), (tmp_path / "second.err").read_text()

    assert overlapping.returncode == 2 and not (tmp_path / "both").exists()
    assert overlapping.stderr.startswith(f"error: CPU {cpu_a} is in use by pid {first.pid}")
    for folder, cpu in (("a", cpu_a), ("b", cpu_b)):
        rows = [json.loads(line) for line in (tmp_path / folder / "results.jsonl").read_text().splitlines()]
        assert [(r["status"], r["pinned_cpus"], r["effective"]["cpus"]) for r in rows] == [("ok", [cpu], [cpu])]
        assert json.loads((tmp_path / folder / "manifest.json").read_text())["runs"][0]["cpus"] == [cpu]


def test_sigterm_stops_a_run_as_ctrl_c_does_and_exits_143(tmp_path):
    suite = write_suite(tmp_path, HANGING)
    run = tmp_path / "run"
    first = start(tmp_path, "run", suite, "--out", run, "--no-peak", "--no-report", env={"BENCH_FAULT": "-hang-:hang"})
    try:
        wait_for(lambda: list((run / "jobs").glob("*/job.json")), first)
        worker = wait_for(lambda: worker_pids(run, first.pid), first)[0]
    finally:
        first.send_signal(signal.SIGTERM)
        returncode = first.wait(timeout=300)
    stderr = (tmp_path / "first.err").read_text()
    assert returncode == 143, stderr
    assert stderr.rstrip().endswith(f"terminated: finished cases are kept; continue with: bench run --resume {run}")
    assert json.loads((run / "manifest.json").read_text())["runs"][-1]["interrupted"] is True
    assert not group_running(worker), "the stopped case's worker group outlived the run"
