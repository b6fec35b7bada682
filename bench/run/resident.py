"""The runner's handle on one resident worker (bench.worker.resident): started through the fork server (or cold),
pinned like any worker, driven block by block over an abstract Unix socket, stopped (SIGSTOP) between blocks.

Every wait selects on the socket and on a pidfd of the worker, so a worker that dies or hangs ends its case (with the
envelope it wrote, or as crashed or timed out) and never the run.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.job import Job
from bench.run.launch import (
    Outcome, end_detached, kill_group, outcome_of, pin_and_tie, read_envelope, tail, worker_environment,
)  # fmt: skip

RESIDENT = "bench.worker.resident"
_names = itertools.count()


class WorkerEnded(Exception):
    """The worker ended, or stayed silent past its timeout, before answering."""


class Resident:
    def __init__(self, python, job: Job, work_dir: Path, log_path: Path, warm=None, cpus: list[int] | None = None):
        """`cpus`: where the worker prepares its case, when not on its job's CPUs (it is moved there when ready)."""
        self.job, self.log_path, self.timeout = job, log_path, job.case.measure["timeout"]
        self.cpus = cpus or job.cpus
        work_dir.mkdir(parents=True, exist_ok=True)
        self.job_path, self.result_path = work_dir / "job.json", work_dir / "result.json"
        self.job_path.write_text(json.dumps(job.to_dict()))
        self.name = f"bench-{os.getpid()}-{next(_names)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + self.name)
        self.listener.listen(1)
        self.conn, self.buffer, self.stopped = None, b"", False
        self.ended, self.returncode = False, None
        self.started = time.monotonic()
        self.server, self.proc = None, None
        args = ["--job", str(self.job_path), "--control", self.name, "--result", str(self.result_path)]
        env = worker_environment(dict(os.environ), job.case.process_threads)
        server = warm.server(python, job.case.process_threads) if warm is not None else None
        if server is not None:
            try:
                self.pid = server.start_worker(RESIDENT, args, self.cpus, log_path, env, detach=True)
                self.server = server
            except Exception:
                server = None
        if server is None:
            with open(log_path, "ab") as output:
                self.proc = subprocess.Popen(
                    [str(python), "-m", RESIDENT, *args], env=env, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin_and_tie(self.cpus),
                )  # fmt: skip
            self.pid = self.proc.pid
        self.pidfd = os.pidfd_open(self.pid)

    def ready(self) -> dict:
        """The worker's ready line, once it has prepared its case (WorkerEnded if it ends or its timeout, counted from
        its start, passes first)."""
        self.wait([self.listener], max(0.0, self.started + self.timeout - time.monotonic()))
        self.conn, _ = self.listener.accept()
        self.listener.close()
        return self.read()

    def preparing_handles(self) -> list:
        """What becomes readable when the worker is ready or has ended (select on them, then call `ready`)."""
        return [self.listener, self.pidfd]

    def move_to(self, cpus: list[int]) -> None:
        """Pin every thread of the worker's process group to `cpus` (a worker prepared elsewhere, now idle)."""
        for pid in group_pids(self.pid):
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    os.sched_setaffinity(int(task), cpus)
                except OSError:
                    pass
        self.cpus = list(cpus)

    def block(self, calls: int, warm: int, relayout: bool = False) -> dict:
        """One block: the worker resumed, its heap's layout drawn afresh (with `relayout`), `warm` untimed and `calls`
        timed calls, and stopped again."""
        self.resume()
        self.send({"block": calls, "warm": warm, "relayout": relayout})
        answer = self.read()
        self.pause()
        return answer

    def send(self, command: dict) -> None:
        try:
            self.conn.sendall((json.dumps(command) + "\n").encode())
        except OSError as exc:
            raise WorkerEnded(f"the worker closed its socket ({exc})") from exc

    def finish(self) -> Outcome:
        """The worker's envelope after its last block (it checks its outputs, answers and exits)."""
        self.resume()
        timed_out = False
        try:
            if self.conn is not None:
                self.conn.sendall(b'{"finish": true}\n')
            timed_out = not select.select([self.pidfd], [], [], self.timeout)[0]
        except OSError:
            pass
        return self.outcome(self.end(timed_out), timed_out)

    def failed(self, why: WorkerEnded) -> Outcome:
        """How a worker that ended or hung before finishing is reported."""
        timed_out = "timeout" in str(why)
        return self.outcome(self.end(force=True), timed_out)

    def outcome(self, returncode: int | None, timed_out: bool) -> Outcome:
        wall = time.monotonic() - self.started
        envelope = read_envelope(self.result_path)
        return outcome_of(envelope, returncode, timed_out, self.timeout, wall, tail(self.log_path))

    def cpu_s(self) -> float | None:
        """The worker's CPU time so far (every thread), from /proc: what an idle, stopped worker must not add to."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def resume(self) -> None:
        if self.stopped:
            kill_group(self.pid, signal.SIGCONT)
            self.stopped = False

    def pause(self) -> None:
        kill_group(self.pid, signal.SIGSTOP)
        self.stopped = True

    def end(self, force: bool = False) -> int | None:
        """The worker ended (killed first with `force`) and its return code; a second call only repeats the code."""
        if self.ended:
            return self.returncode
        self.returncode = end_detached(self.pid, self.pidfd, self.proc, self.server, force)
        self.ended = True
        for handle in (self.conn, self.listener):
            if handle is not None:
                handle.close()
        return self.returncode

    def wait(self, handles: list, timeout: float) -> list:
        readable = select.select([*handles, self.pidfd], [], [], timeout)[0]
        if not readable:
            raise WorkerEnded(f"killed after the {timeout:g} s timeout")
        if readable == [self.pidfd]:
            raise WorkerEnded("the worker ended")
        return readable

    def read(self) -> dict:
        while b"\n" not in self.buffer:
            self.wait([self.conn], self.timeout)
            chunk = self.conn.recv(65536)
            if not chunk:
                raise WorkerEnded("the worker closed its socket")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


def group_pids(pgid: int) -> list[int]:
    """The processes of process group `pgid` (a worker is its session's leader; a compile pool would be a member)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return found
