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

from bench.run.launch import (
    Outcome, end_group, kill_group, outcome_of, pin_and_tie, read_envelope, tail, wait_group_gone, worker_environment,
)

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
        self.eof = False
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
            end_group(self.proc)
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

    def output(self) -> int:
        """The descriptor the server's lines arrive on."""
        return self.proc.stdout.fileno()

    def ended(self) -> bool:
        return self.proc.poll() is not None

    def read(self, timeout: float) -> dict:
        """The server's next line; ServerGone when it ends or stays silent for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.output()], [], [], left)[0]:
                raise ServerGone(f"fork server silent for {timeout:g} s")
            chunk = os.read(self.output(), 65536)
            if not chunk:
                self.eof = True
                raise ServerGone(f"fork server ended; see {self.log_path}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def wait_worker(self, pid: int, timeout: float) -> tuple[int | None, bool]:
        """(return code, timed out): the worker's end as the server reports it, its group killed past `timeout`."""
        try:
            return self.read(timeout)["returncode"], False
        except ServerGone:
            if self.ended():
                raise
        kill_group(pid, signal.SIGTERM)
        try:
            return self.read(TERM_GRACE_S)["returncode"], True
        except ServerGone:
            if self.ended():
                raise
        kill_group(pid)
        return self.read(FORK_TIMEOUT_S)["returncode"], True

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        """End the server now (it misbehaved, or the run was interrupted while it served a worker)."""
        end_group(self.proc)


KEEP_VAR = "BENCH_KEEP_WARM"
"""`SECONDS`: fork servers outlive their run by up to SECONDS idle, and later runs of the same interpreter, thread
count, environment and bench sources use them instead of importing torch again (unset: each run has its own)."""
CONNECT_S = 2.0
"""How long a run waits for a kept server's ready line (it serves one run at a time) before starting its own."""
NOT_KEYED = (
    "PWD", "OLDPWD", "SHLVL", "_", KEEP_VAR,
    "BENCH_DELAY_MS", "BENCH_STALL", "BENCH_COLD_START", "BENCH_FAULT", "BENCH_GENERATION_FAULT", "BENCH_PIPELINE_FAULT",
)  # fmt: skip
"""What a kept server is not told apart by: each worker gets its run's whole environment when it is forked; only
what is read while torch and transformers import must match."""


def keep_seconds() -> float | None:
    value = os.environ.get(KEEP_VAR, "")
    try:
        return float(value) if float(value) > 0 else None
    except ValueError:
        return None


def kept_name(python: str | Path, threads: int, env: dict[str, str]) -> str:
    """The abstract socket name of the kept server for this interpreter, thread count, environment and sources."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{Path(python).absolute()}\0{threads}\0".encode())
    for key in sorted(env):
        if key not in NOT_KEYED and not key.startswith("PYTEST_"):
            digest.update(f"{key}={env[key]}\0".encode())
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"bench-warm-{os.getuid()}-{digest.hexdigest()[:24]}"


class KeptServer(WarmServer):
    """A fork server kept between runs (KEEP_VAR): reached on its abstract socket, or started there detached from
    this run when none listens. Closing it ends this run's connection, and with it any worker still running."""

    def __init__(self, python: str | Path, threads: int, log_path: Path, cpus: list[int] | None, idle_s: float):
        import socket

        env = worker_environment(dict(os.environ), threads)
        self.name = kept_name(python, threads, env)
        self.log_path = log_path
        self.buffer = b""
        self.eof = False
        self.preloaded: list[str] | None = None
        self.import_s: float | None = None
        self.proc = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect("\0" + self.name)
        except OSError:
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(python), "-m", SERVER, "--listen", self.name, "--idle", f"{idle_s:g}"],
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                    preexec_fn=pin_and_tie(cpus, tie=False),  # it outlives this run
                )  # fmt: skip

    def wait_ready(self) -> WarmServer:
        if self.preloaded is not None:
            return self
        if self.proc is not None:  # started by this run: its line says it listens (or that another took the name)
            try:
                if not select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)[0] or not self.proc.stdout.readline():
                    raise ServerGone(f"kept fork server did not listen; see {self.log_path}")
            except BaseException:
                self.kill()
                raise
            self.proc.stdout.close()
            self.proc = None  # it lives on, detached from this run
            try:
                self.sock.connect("\0" + self.name)
            except OSError as exc:
                raise ServerGone(f"kept fork server {self.name} does not answer: {exc}") from exc
        ready = self.read(CONNECT_S)
        if not ready.get("ready"):
            raise ServerGone(f"kept fork server answered {ready!r} instead of ready")
        self.preloaded = ready.get("preloaded", [])
        self.import_s = 0.0  # imported before this run
        with open(self.log_path, "a") as log:
            log.write(f"this run's workers are forked by the kept fork server {self.name} (pid {ready.get('pid')})\n")
        return self

    def send(self, request: dict) -> None:
        try:
            self.sock.sendall((json.dumps(request) + "\n").encode())
        except OSError as exc:
            raise ServerGone(f"kept fork server closed the connection: {exc}") from exc

    def output(self) -> int:
        return self.sock.fileno()

    def ended(self) -> bool:
        return self.eof

    def close(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            end_group(self.proc)
        self.sock.close()


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
        keep = keep_seconds()
        try:
            if keep is not None:
                self.servers[key] = KeptServer(python, threads, self.log_path, self.cpus, keep)
            else:
                self.servers[key] = WarmServer(python, threads, self.log_path, self.cpus)
        except (OSError, ValueError) as exc:
            self.unavailable(key, exc)

    def threads_of(self, python: str | Path) -> int | None:
        """The thread count of a fork server of `python` this run has started (the first), or None."""
        return next((t for (p, t), server in self.servers.items() if p == str(python) and server is not None), None)

    def server(self, python: str | Path, threads: int) -> WarmServer | None:
        key = (str(python), threads)
        self.spawn(python, threads)
        server = self.servers[key]
        if server is None:
            return None
        try:
            return server.wait_ready()
        except (OSError, ServerGone, ValueError) as exc:
            if isinstance(server, KeptServer):  # busy serving another run, or gone: this run starts its own
                server.kill()
                try:
                    self.servers[key] = WarmServer(python, threads, self.log_path, self.cpus)
                    return self.servers[key].wait_ready()
                except (OSError, ServerGone, ValueError) as again:
                    exc = again
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
                kill_group(pid)  # stragglers the worker left behind, or the worker itself when the run was stopped
                wait_group_gone(pid)
        wall = time.monotonic() - start
        return outcome_of(read_envelope(result_path), returncode, timed_out, timeout, wall, tail(output_path))

    def drop(self, python, threads: int) -> None:
        server = self.servers.get((str(python), threads))
        self.servers[(str(python), threads)] = None
        if server is not None:
            server.kill()

    def close(self) -> None:
        for server in self.servers.values():
            if server is not None:
                server.close()
        self.servers.clear()
