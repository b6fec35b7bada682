"""Warm starts: workers forked from a process of their environment that imported torch and transformers once.

Real servers and real workers; the modules the workers run are written here: one answers, one never ends.
"""

import json
import os
import signal
import sys
import threading

from bench.run.warm import KEEP_VAR, ServerGone, WarmStarts
from conftest import TINY_SUITE, bench_cli, live_processes, write_suite

ANSWERS = """\
import os, sys
from bench.worker.answer import answer
answer(sys.argv[-1], lambda: {"pid": os.getpid(), "torch_imported": "torch" in sys.modules,
                              "cpus": sorted(os.sched_getaffinity(0)), "start": os.environ.get("BENCH_START"),
                              "threads": os.environ.get("OMP_NUM_THREADS"), "marker": os.environ.get("MARKER")})
"""
SLEEPS = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


def rows_of(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def test_a_run_forks_its_workers_from_a_warm_process_and_cold_start_keeps_fresh_interpreters(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    warm = bench_cli("run", suite, "--out", tmp_path / "warm")
    cold = bench_cli("run", suite, "--out", tmp_path / "cold", "--cold-start")
    for result, folder, start in ((warm, "warm", "warm"), (cold, "cold", "cold")):
        rows = rows_of(tmp_path / folder)
        assert [r["status"] for r in rows] == ["ok", "ok"], result.stderr
        assert {r["effective"]["start"] for r in rows} == {start}
        assert len({r["effective"]["pid"] for r in rows}) == 2, "each case in a process of its own"
        assert all(r["effective"]["cpus"] == r["pinned_cpus"] for r in rows)
    assert (tmp_path / "warm" / "logs" / "warm-start.log").exists()
    assert not (tmp_path / "cold" / "logs" / "warm-start.log").exists()


def warm_starts(tmp_path, monkeypatch, said):
    (tmp_path / "answers.py").write_text(ANSWERS)
    (tmp_path / "sleeps.py").write_text(SLEEPS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv(KEEP_VAR, raising=False)  # each test's own server (kept ones: test_a_kept_server_...)
    return WarmStarts(tmp_path / "logs" / "warm-start.log", said.append, cpus=sorted(os.sched_getaffinity(0)))


def run(starts, tmp_path, module, name, timeout=120.0, cpus=None):
    cpus = cpus or [min(os.sched_getaffinity(0))]
    return starts.run_child(
        sys.executable, module, [], tmp_path / f"{name}.json",
        threads=1, timeout=timeout, output_path=tmp_path / f"{name}.log", cpus=cpus,
    )  # fmt: skip


def test_a_forked_worker_is_a_fresh_pinned_process_with_the_environment_of_its_launch(tmp_path, monkeypatch):
    said = []
    starts = warm_starts(tmp_path, monkeypatch, said)
    try:
        cpu = max(os.sched_getaffinity(0))
        first = run(starts, tmp_path, "answers", "first", cpus=[cpu])
        monkeypatch.setenv("MARKER", "second")
        second = run(starts, tmp_path, "answers", "second", cpus=[cpu])
        server = starts.servers[(sys.executable, 1)]
    finally:
        starts.close()
    assert (first.status, second.status) == ("ok", "ok"), (first, second, said)
    assert first.result["pid"] != second.result["pid"] != server.proc.pid
    assert first.result["torch_imported"] and "torch" in server.preloaded
    assert first.result["cpus"] == [cpu] and first.result["start"] == "warm" and first.result["threads"] == "1"
    assert (first.result["marker"], second.result["marker"]) == (None, "second")
    assert server.proc.returncode == 0 and said == []


def test_a_worker_past_its_timeout_is_killed_and_the_server_serves_the_next(tmp_path, monkeypatch):
    said = []
    starts = warm_starts(tmp_path, monkeypatch, said)
    try:
        hung = run(starts, tmp_path, "sleeps", "hung", timeout=2.0)
        after = run(starts, tmp_path, "answers", "after")
    finally:
        starts.close()
    assert hung.status == "timeout" and hung.returncode == -signal.SIGTERM
    assert "sleeping" in (tmp_path / "hung.log").read_text(), "the worker's output goes to its log"
    assert after.status == "ok" and said == []


def test_a_server_that_dies_fails_its_worker_and_the_run_goes_on_cold(tmp_path, monkeypatch):
    said = []
    starts = warm_starts(tmp_path, monkeypatch, said)
    server = starts.server(sys.executable, 1)
    threading.Timer(2.0, os.kill, (server.proc.pid, signal.SIGKILL)).start()
    orphaned = run(starts, tmp_path, "sleeps", "orphaned")
    assert orphaned.status == "crashed" and orphaned.wall_s < 60
    assert run(starts, tmp_path, "answers", "next") is None, "no server any more: the caller starts it cold"
    assert len(said) == 1 and "starting workers cold" in said[0]


def test_an_interpreter_that_cannot_serve_falls_back_to_cold_starts(tmp_path, monkeypatch):
    said = []
    starts = warm_starts(tmp_path, monkeypatch, said)
    broken = starts.run_child(
        "/bin/false", "answers", [], tmp_path / "r.json", threads=1, timeout=10, output_path=tmp_path / "o.log", cpus=None
    )
    starts.close()
    assert broken is None
    assert said and said[-1].startswith("warm start unavailable for /bin/false at 1 thread(s)")


def test_a_server_interrupted_while_it_starts_is_killed_with_its_group(tmp_path):
    import pytest

    from bench.run.launch import group_running
    from bench.run.warm import WarmServer

    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 600\n")  # an interpreter that never says it is ready
    slow.chmod(0o755)
    started = []

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    original = WarmServer.read

    def read(self, timeout):
        started.append(self.proc.pid)
        signal.alarm(1)
        return original(self, timeout)

    try:
        WarmServer.read = read
        with pytest.raises(KeyboardInterrupt):
            WarmServer(slow, 1, tmp_path / "server.log").wait_ready()
    finally:
        WarmServer.read = original
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert started and not group_running(started[0])


def test_a_kept_server_serves_the_next_run_and_ends_the_workers_of_a_run_that_dies(tmp_path):
    import subprocess
    import time

    from bench.run.launch import group_running
    from conftest import PROJECT

    suite = write_suite(tmp_path, TINY_SUITE)
    hanging = write_suite(tmp_path, TINY_SUITE.replace("name: eager", "name: hang"), name="hanging.yaml")
    env = {KEEP_VAR: "60", "KEPT_SERVER_TEST": str(tmp_path)}  # a server of this test's own: its key holds the env
    first = bench_cli("run", suite, "--out", tmp_path / "first", env=env)
    second = bench_cli("run", suite, "--out", tmp_path / "second", env=env)
    rows = rows_of(tmp_path / "first") + rows_of(tmp_path / "second")
    assert [r["status"] for r in rows] == ["ok"] * 4, first.stderr + second.stderr
    servers = {r["effective"]["fork_server"] for r in rows}
    assert len(servers) == 1 and {r["effective"]["start"] for r in rows} == {"warm"}
    server = servers.pop()
    try:
        assert os.path.exists(f"/proc/{server}"), "the server outlived both runs"
        full_env = {**os.environ, **env, "BENCH_FAULT": "-hang-:hang"}
        run = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", hanging, "--out", tmp_path / "killed", "--no-peak", "--no-report",
             "--quiet-wait", "0", "--filter", "backend=hang"],
            cwd=PROJECT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (list((tmp_path / "killed" / "jobs").glob("*/job.json")) and (workers := children(server))):
            assert time.monotonic() < deadline and run.poll() is None, "no worker was forked for the hanging case"
            time.sleep(0.1)
        run.kill()  # SIGKILL: the run cleans nothing up itself
        run.wait()
        deadline = time.monotonic() + 30
        while any(group_running(w) for w in workers):
            assert time.monotonic() < deadline, "the dead run's worker outlived its connection"
            time.sleep(0.1)
        third = bench_cli("run", suite, "--out", tmp_path / "third", env=env)
        assert {r["effective"]["fork_server"] for r in rows_of(tmp_path / "third")} == {server}, third.stderr
    finally:
        os.kill(server, signal.SIGTERM)


def test_a_run_that_dies_as_its_worker_is_forked_leaves_the_kept_server_free_for_the_next(tmp_path, monkeypatch):
    import time

    from bench.run.warm import KeptServer

    warm_starts(tmp_path, monkeypatch, [])
    monkeypatch.setenv(KEEP_VAR, "60")
    monkeypatch.setenv("KEPT_SERVER_TEST", str(tmp_path))
    first = KeptServer(sys.executable, 1, tmp_path / "server.log", None, idle_s=60)
    server = first.proc
    request = {"module": "sleeps", "argv": [], "cpus": None, "output": str(tmp_path / "sleeps.log"), "env": {}}
    try:
        for run in range(20):
            kept = first if run == 0 else KeptServer(sys.executable, 1, tmp_path / "server.log", None, idle_s=60)
            try:
                kept.wait_ready()
            except ServerGone as exc:
                raise AssertionError(f"run {run}: the server still serves the run before it, which died") from exc
            kept.send({**request, "env": dict(os.environ)})
            kept.close()  # dies before it reads the pid: the server may not have seen the worker start its group
        deadline = time.monotonic() + 30
        while children(server.pid):
            assert time.monotonic() < deadline, "a worker of a dead run outlived its connection"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait()


def children(pid: int) -> list[int]:
    return live_processes(lambda fields: int(fields[1]) == pid)
