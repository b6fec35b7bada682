"""Warm starts, the parent's half: a fork server (bench.worker.warm) per environment and thread count, all started
side by side when the run starts (or on first use), settled before the first quiet check and ended with the run,
and the launch of one worker through it.

A worker started this way is a fresh process like any other: its own session, pinned, sized, timed out and killed
with its group; it is only spared importing torch and transformers. Where a server cannot start or dies, the run
falls back to cold starts and says so once.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

from bench.run.launch import Outcome, kill_group, outcome_of, pin_and_tie, read_envelope, tail, worker_environment

SERVER = "bench.worker.warm"
READY_TIMEOUT_S = 300.0
FORK_TIMEOUT_S = 60.0
TERM_GRACE_S = 3.0


class ServerGone(Exception):
    """The fork server did not answer as it should; the caller starts the worker cold."""


class WarmServer:
    """One fork server: `python -m bench.worker.warm` of one interpreter, with thread pools sized to `threads`,
    pinned to the run's CPUs (its workers pin themselves to their case's)."""

    def __init__(self, python: str | Path, threads: int, log_path: Path, cpus: list[int] | None = None):
        env = worker_environment(dict(os.environ), threads)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(python), "-m", SERVER],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=pin_and_tie(cpus),
            )
        self.buffer = b""
        self.preloaded: list[str] | None = None
        self.import_s: float | None = None

    def wait_ready(self) -> WarmServer:
        """Block until the server has imported what it preloads (at once when it already has)."""
        if self.preloaded is not None:
            return self
        try:
            ready = self.read(READY_TIMEOUT_S)
            if not ready.get("ready"):
                raise ServerGone(f"fork server answered {ready!r} instead of ready")
        except BaseException:  # Ctrl-C or SIGTERM while it imports, or it never got ready: no run will close it
            kill_group(self.proc.pid)
            self.proc.wait()
            raise
        self.preloaded = ready.get("preloaded", [])
        self.import_s = ready.get("import_s")
        return self

    def start_worker(
        self, module: str, argv: list[str], cpus, output: Path, env: dict[str, str], detach: bool = False
    ) -> int:
        request = {"module": module, "argv": argv, "cpus": cpus, "output": str(output), "env": env, "detach": detach}
        self.send(request)
        answer = self.read(FORK_TIMEOUT_S)
        if "error" in answer:
            raise ServerGone(answer["error"])
        return int(answer["pid"])

    def reap(self, pid: int) -> int | None:
        """The return code of a detached worker that has ended."""
        self.send({"reap": pid})
        return self.read(FORK_TIMEOUT_S)["returncode"]

    def send(self, request: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise ServerGone(f"fork server closed its input: {exc}") from exc

    def read(self, timeout: float) -> dict:
        """The server's next line; ServerGone when it ends or stays silent for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise ServerGone(f"fork server silent for {timeout:g} s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise ServerGone(f"fork server ended (exit code {self.proc.poll()}); see {self.log_path}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def wait_worker(self, pid: int, timeout: float) -> tuple[int | None, bool]:
        """(return code, timed out): the worker's end as the server reports it, its group killed past `timeout`."""
        try:
            return self.read(timeout)["returncode"], False
        except ServerGone:
            if self.proc.poll() is not None:
                raise
        kill_group(pid, signal.SIGTERM)
        try:
            return self.read(TERM_GRACE_S)["returncode"], True
        except ServerGone:
            if self.proc.poll() is not None:
                raise
        kill_group(pid)
        return self.read(FORK_TIMEOUT_S)["returncode"], True

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            kill_group(self.proc.pid)
            self.proc.wait()


class WarmStarts:
    """The run's fork servers, by interpreter and thread count."""

    def __init__(self, log_path: Path, say=None, cpus: list[int] | None = None):
        self.log_path = log_path
        self.cpus = cpus
        self.say = say or (lambda text: None)
        self.servers: dict[tuple[str, int], WarmServer | None] = {}

    def prestart(self, keys) -> None:
        """Start the servers of these (interpreter, thread count) pairs at once, side by side, without waiting for
        them: their imports overlap each other's and the run's own start. `settle` waits for them."""
        for python, threads in keys:
            self.spawn(python, threads)

    def settle(self) -> None:
        """Every server started so far has finished importing (or is dropped): nothing of the run's own is busy on
        the CPUs when a case's quiet check looks at them."""
        for python, threads in list(self.servers):
            self.server(python, threads)

    def spawn(self, python: str | Path, threads: int) -> None:
        key = (str(python), threads)
        if key in self.servers:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.servers[key] = WarmServer(python, threads, self.log_path, self.cpus)
        except (OSError, ValueError) as exc:
            self.unavailable(key, exc)

    def server(self, python: str | Path, threads: int) -> WarmServer | None:
        key = (str(python), threads)
        self.spawn(python, threads)
        server = self.servers[key]
        if server is None:
            return None
        try:
            return server.wait_ready()
        except (OSError, ServerGone, ValueError) as exc:
            self.unavailable(key, exc)
            return None

    def unavailable(self, key: tuple[str, int], exc: Exception) -> None:
        python, threads = key
        self.say(f"warm start unavailable for {python} at {threads} thread(s) ({exc}); starting workers cold")
        self.servers[key] = None

    def run_child(
        self, python, module: str, args: list[str], result_path, *, threads: int, timeout: float, output_path: Path, cpus
    ) -> Outcome | None:
        """Like launch.run_child, through the warm server; None when there is none (the caller starts it cold)."""
        server = self.server(python, threads)
        if server is None:
            return None
        env = worker_environment(dict(os.environ), threads)
        start = time.monotonic()
        pid = None
        try:
            pid = server.start_worker(module, [*args, "--result", str(result_path)], cpus, output_path, env)
            returncode, timed_out = server.wait_worker(pid, timeout)
        except ServerGone as exc:
            self.say(f"warm start for {python} at {threads} thread(s) failed ({exc}); starting workers cold")
            self.drop(python, threads)
            if pid is None:
                return None
            returncode, timed_out = None, False
        except BaseException:
            self.drop(python, threads)  # its next line would answer for this worker
            raise
        finally:
            if pid is not None:
                kill_group(pid)  # stragglers the worker left behind
        wall = time.monotonic() - start
        return outcome_of(read_envelope(result_path), returncode, timed_out, timeout, wall, tail(output_path))

    def drop(self, python, threads: int) -> None:
        server = self.servers.get((str(python), threads))
        self.servers[(str(python), threads)] = None
        if server is not None:
            kill_group(server.proc.pid)
            server.proc.wait()

    def close(self) -> None:
        for server in self.servers.values():
            if server is not None:
                server.close()
        self.servers.clear()
