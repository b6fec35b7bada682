"""What a run leaves behind: a stopped worker's group reaped at once, the user's git checkout untouched."""

import os
import signal
import subprocess
import sys
import time

from bench import machine
from bench.run.launch import group_running, stop_group
from conftest import live_processes

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "


def worker(code: str) -> subprocess.Popen:
    """A process in its own session, like a worker, running `code`."""
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def started_child(proc: subprocess.Popen, seconds: float = 60) -> None:
    """Wait until the worker's group has a second member (the grandchild it starts)."""
    deadline = time.monotonic() + seconds
    while len(members(proc.pid)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)


def members(pgid: int) -> list[int]:
    return live_processes(lambda fields: fields[2] == str(pgid).encode())


def test_a_worker_that_ends_on_sigterm_is_reaped_without_waiting_the_grace_period():
    proc = worker("import time; time.sleep(600)")
    time.sleep(0.5)
    start = time.monotonic()
    stop_group(proc, grace=60)
    assert time.monotonic() - start < 30, "stop_group waited out the grace period for a worker that had exited"
    assert proc.returncode == -signal.SIGTERM and not group_running(proc.pid)


def test_a_worker_and_a_grandchild_that_ignore_sigterm_are_killed_after_the_grace_period():
    code = IGNORE_TERM + "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    code += "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); time.sleep(600)"
    proc = worker(code)
    started_child(proc)
    start = time.monotonic()
    stop_group(proc, grace=1)
    assert time.monotonic() - start >= 1
    assert proc.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while group_running(proc.pid):
        assert time.monotonic() < deadline, f"left running: {members(proc.pid)}"
        time.sleep(0.05)


def test_a_grandchild_that_outlives_the_worker_is_killed(tmp_path):
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    code += "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); time.sleep(600)"
    proc = worker(code)
    started_child(proc)
    stop_group(proc, grace=2)
    assert proc.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 30
    while group_running(proc.pid):
        assert time.monotonic() < deadline, f"left running: {members(proc.pid)}"
        time.sleep(0.05)


def git(checkout, *args):
    subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True)


def test_reading_the_git_state_does_not_write_the_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git(checkout, "init", "-q")
    (checkout / "file.txt").write_text("content\n")
    git(checkout, "add", "file.txt")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    future = time.time() + 3600
    os.utime(checkout / "file.txt", (future, future))  # stale stat data: a plain `git status` rewrites the index
    index = checkout / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    monkeypatch.setattr(machine, "PROJECT_ROOT", checkout)
    state = machine.git_state()
    assert state["commit"] and state["dirty"] is False
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert not (checkout / ".git" / "index.lock").exists()
