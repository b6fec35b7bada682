"""Start a child process (the worker, the peak probe, the import probe) in its own session, pinned and sized; block
until it ends or its timeout, kill its group, and read the envelope it answered with."""

from __future__ import annotations

import json
import os
import select
import signal
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.job import ENVELOPE_SCHEMA, Job
from bench.orphans import die_with_parent
from bench.paths import PROJECT_ROOT
from bench.backends.threads import child_environment

WORKER = "bench.worker.case"
TAIL_LINES = 25


@dataclass
class Outcome:
    """How a child ended: its status ("ok", "timeout", "crashed", or the envelope's), why, and what it answered."""

    status: str
    reason: str | None
    result: dict | None
    returncode: int | None
    wall_s: float
    stderr_tail: str


def child_command(python: str | Path, module: str, args: list[str], result_path: str | Path) -> list[str]:
    return [str(python), "-m", module, *args, "--result", str(result_path)]


def worker_environment(base: dict[str, str], threads: int) -> dict[str, str]:
    """The child's variables: thread pools sized to the case, and this checkout's bench importable first."""
    env = child_environment(base, threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), base.get("PYTHONPATH")]))
    return env


def pin_and_tie(cpus: list[int] | None, tie: bool = True):
    """Runs in the child between fork and exec: pin it (unless `cpus` is None), and make it die if the parent dies
    (unless `tie` is False)."""

    def setup():
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if tie:
            die_with_parent()

    return setup


@contextmanager
def job_folder(path: Path):
    """The job's files in the run folder, not /tmp: a killed parent leaves them where the next resume clears them."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield str(path)
    finally:
        remove_job_folder(path)


def remove_job_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # the jobs/ folder, once no job is left in it
    except OSError:
        pass


def end_detached(pid: int, pidfd: int, proc: subprocess.Popen | None, server, force: bool = False) -> int | None:
    """End a child started detached, as a Popen `proc` or forked by the fork server `server`: its group killed first
    with `force` (and woken, if it was stopped), its end awaited on `pidfd` for up to 10 s, the stragglers it left
    killed, and it reaped. Its return code, or None when the server could not say."""
    if force:
        kill_group(pid, signal.SIGKILL)
    kill_group(pid, signal.SIGCONT)
    select.select([pidfd], [], [], 10.0)
    kill_group(pid, signal.SIGKILL)
    os.close(pidfd)
    if proc is not None:
        return proc.wait()
    try:
        return server.reap(pid)
    except Exception:  # the server is gone or answered nonsense: its end is unknown, and nothing is left to wait for
        return None


def launch(
    python: str | Path, job: Job, cpus: list[int], timeout: float, log_path: Path, work_dir: Path, warm=None
) -> Outcome:
    """One case in one worker: the job written to its folder, the worker's output appended to the case's log.

    `warm` (bench.run.warm.WarmStarts) forks the worker from a process that has imported torch and transformers;
    without it, or where that fails to start, the worker starts as a fresh interpreter.
    """
    with job_folder(work_dir) as tmp:
        job_path, result_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        with open(job_path, "w") as handle:
            json.dump(job.to_dict(), handle)
        args = ["--job", job_path]
        if warm is not None:
            outcome = warm.run_child(
                python, WORKER, args, result_path,
                threads=job.case.threads, timeout=timeout, output_path=log_path, cpus=cpus,
            )  # fmt: skip
            if outcome is not None:
                return outcome
        return run_child(
            python, WORKER, args, result_path,
            threads=job.case.threads, timeout=timeout, output_path=log_path, cpus=cpus,
        )  # fmt: skip


def run_child(
    python: str | Path,
    module: str,
    args: list[str],
    result_path: str | Path,
    *,
    threads: int,
    timeout: float,
    output_path: Path,
    cpus: list[int] | None = None,
) -> Outcome:
    """`python -m MODULE ARGS --result RESULT` in a session of its own, pinned to `cpus` (None: not pinned), with
    thread pools sized to `threads` and its output appended to `output_path`. Blocks until it ends or `timeout`
    passes, kills its group, and reads the envelope it answered with."""
    env = worker_environment(dict(os.environ), threads)
    start = time.monotonic()
    with open(output_path, "ab") as output:
        try:
            proc = subprocess.Popen(
                child_command(python, module, args, result_path),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pin_and_tie(cpus),
            )
        except OSError as exc:
            return Outcome("unavailable", f"cannot start {python}: {exc}", None, None, 0.0, "")
        try:
            timed_out = not wait_blocking(proc, timeout)
            if timed_out:
                stop_group(proc)
            returncode = proc.wait()
        finally:
            kill_group(proc.pid, signal.SIGKILL)  # stragglers the child left behind, or the child when the run stopped
            wait_group_gone(proc.pid)
    wall = time.monotonic() - start
    return outcome_of(read_envelope(result_path), returncode, timed_out, timeout, wall, tail(output_path))


def wait_blocking(proc: subprocess.Popen, timeout: float) -> bool:
    """Sleep in the kernel until the child exits or the timeout passes; True if it exited.

    A pidfd becomes readable when the process ends, so select() blocks without waking up to poll
    (Popen.wait(timeout) polls with growing sleeps).
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


def stop_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the child's group, SIGKILL whatever is still running after `grace` seconds.

    The worker is reaped the moment it exits (until then its zombie keeps the group in existence), so this returns
    as soon as the whole group is gone, not after the grace period.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    if wait_blocking(proc, grace):
        proc.wait()
    while group_running(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # the worker's own children: not ours to wait for
    kill_group(proc.pid)


def end_group(proc: subprocess.Popen, within: float = 10.0) -> None:
    """SIGKILL the child's group now, reap the child, and wait (up to `within` s) until the rest of the group, which
    the kernel kills asynchronously, is gone too."""
    kill_group(proc.pid)
    proc.wait()
    wait_group_gone(proc.pid, within)


def wait_group_gone(pgid: int, within: float = 10.0) -> None:
    """Wait (up to `within` s) until no process of group `pgid` runs: the kernel tears a killed group down
    asynchronously, and a large process takes a while to give back its memory."""
    deadline = time.monotonic() + within
    while group_running(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running; zombies waiting for a reaper do not count."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = None
    if entries is None:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


def read_envelope(path: str | Path) -> dict | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def outcome_of(envelope, returncode, timed_out, timeout, wall, stderr_tail) -> Outcome:
    if timed_out:
        return Outcome("timeout", f"killed after the {timeout:g} s timeout", None, returncode, wall, stderr_tail)
    if envelope is None:
        if returncode is not None and returncode < 0:
            name = signal.Signals(-returncode).name
            reason = f"worker killed by {name} before writing a result"
        else:
            reason = f"worker exited with code {returncode} before writing a result"
        return Outcome("crashed", reason, None, returncode, wall, stderr_tail)
    if envelope.get("schema") != ENVELOPE_SCHEMA:
        reason = f"result envelope has schema {envelope.get('schema')!r}, expected {ENVELOPE_SCHEMA}"
        return Outcome("error", reason, None, returncode, wall, stderr_tail)
    if envelope["status"] == "ok":
        return Outcome("ok", None, envelope["result"], returncode, wall, "")
    return Outcome(envelope["status"], envelope["error"]["message"], None, returncode, wall, stderr_tail)


def tail(path: Path, lines: int = TAIL_LINES, max_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]
