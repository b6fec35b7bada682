"""A warm start: one process per environment and thread count imports torch and transformers once, then forks a
fresh worker for each case. `python -m bench.worker.warm`, driven by bench.run.warm over its stdin and stdout.

Importing torch and transformers takes about 6 s of every worker's start; a forked worker starts in milliseconds
with them already imported. Nothing else is shared: the server never builds a model, never runs an operator and
never starts a thread pool, so each forked worker loads, prepares and measures its case as a fresh process would.
Thread pools read their sizes when the libraries load, so a server serves one thread count only.

The protocol, one JSON object per line:
- server → parent, once: {"ready": true, "pid": ..., "preloaded": [...], "import_s": ...}
- parent → server: {"module": ..., "argv": [...], "cpus": [...] | null, "output": PATH, "env": {...}}
- server → parent: {"pid": PID} when the worker is forked, then {"pid": PID, "returncode": N} when it has ended
  (or {"error": ...} when the server cannot fork safely: it must run a single Python thread);
- with "detach": true (a resident worker, bench.worker.resident) only {"pid": PID}; the parent watches the worker
  itself and later sends {"reap": PID}, answered with {"pid": PID, "returncode": N}.
The worker runs in a session of its own (its process group id is its pid), pinned to `cpus`, its output appended
to `output`, and dies with the server, which dies with the parent.

Kept warm (`--listen NAME --idle SECONDS`, bench.run.warm's shared servers): the server outlives the run that
started it and serves one connection at a time on the abstract Unix socket NAME, with the same protocol, the ready
line first. When a connection ends, however it ends, the workers forked for it that are still running are killed
with their groups; after SECONDS without a connection the server exits.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import runpy
import signal
import sys
import time
import traceback

from bench.orphans import die_with_parent
from bench.worker.case import HIDDEN_MODULES, START_VAR

PRELOAD = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "bench.worker.case",
    "bench.worker.workloads.forward",
    "bench.backends",
    "bench.measure.accuracy",
    "bench.measure.hidden_state",
    "bench.measure.inputs",
    "bench.measure.interference",
    "bench.measure.reference",
    "bench.measure.memory",
    "bench.measure.stats",
    "bench.measure.timing",
)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.worker.warm")
    parser.add_argument("--listen", help="serve connections on this abstract Unix socket name, outliving the parent")
    parser.add_argument("--idle", type=float, default=600.0, help="with --listen: exit after this many idle seconds")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the server ends: it closes stdin
    if args.listen is None:
        die_with_parent()
    for name in HIDDEN_MODULES:
        sys.modules.setdefault(name, None)
    started = time.perf_counter()
    gc.disable()  # the imports only build objects that live on: collecting while they run costs about 9% of them
    preloaded = [name for name in PRELOAD if imported(name)]
    gc.collect()
    gc.freeze()  # what the imports left is shared with every worker as it is: no collection dirties its pages
    gc.enable()  # a worker collects as a fresh interpreter would
    ready = {"ready": True, "pid": os.getpid(), "preloaded": preloaded, "import_s": time.perf_counter() - started}
    if args.listen is not None:
        return listen(args.listen, args.idle, ready)
    reply(ready)
    for line in sys.stdin:
        if line.strip():
            serve(json.loads(line))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the parent closed stdin: nothing to tear down, and torch's interpreter shutdown costs about 1 s


def listen(name: str, idle_s: float, ready: dict) -> int:
    """Serve connections on the abstract socket `name` one at a time until `idle_s` pass without one. The line on
    stdout says whether this server holds the name (another may have taken it first)."""
    import select
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
    except OSError as exc:
        reply({"error": f"cannot listen on {name}: {exc}"})
        return 0
    listener.listen(8)
    reply({**ready, "listening": name})
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # the starting run reads to the end of the ready line's pipe
    os.close(null)
    global REPLY_TO, CLOSE_IN_WORKERS
    while select.select([listener], [], [], idle_s)[0]:
        conn, _ = listener.accept()
        CLOSE_IN_WORKERS = [listener.fileno(), conn.fileno()]
        REPLY_TO = conn.makefile("w", encoding="utf-8")
        try:
            reply({**ready, "shared": True})
            for line in conn.makefile("r", encoding="utf-8"):
                if line.strip():
                    serve(json.loads(line), conn)
        except (OSError, ValueError):
            pass
        finally:
            end_connection(conn)
    return 0


REPLY_TO = None
"""Where replies go: stdout, or the connection being served (--listen)."""
CLOSE_IN_WORKERS: list[int] = []
"""The server's socket descriptors, which a forked worker closes first."""
FORKED: dict[int, bool] = {}
"""The workers forked for the current connection and not yet reaped (pid -> detached)."""


def end_connection(conn) -> None:
    """The connection has ended: its workers still running end with it, and are reaped."""
    global REPLY_TO
    for pid in list(FORKED):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        FORKED.pop(pid, None)
    try:
        REPLY_TO.close()
    except (OSError, AttributeError):
        pass
    REPLY_TO = None
    conn.close()


def imported(name: str) -> bool:
    """Import `name` if this environment has it; a worker that needs a missing one fails there, with its message."""
    try:
        __import__(name)
        return True
    except Exception:
        traceback.print_exc()
        return False


def serve(request: dict, conn=None) -> None:
    """Fork a worker for `request` and report its end; a detached one (a resident worker) is reported on a later
    {"reap": PID} request instead, once the parent has seen it end. Serving a connection (`conn`), a worker still
    running when the connection ends is killed instead."""
    if "reap" in request:
        _, status = os.waitpid(request["reap"], 0)
        FORKED.pop(request["reap"], None)
        reply({"pid": request["reap"], "returncode": os.waitstatus_to_exitcode(status)})
        return
    threads = python_threads()
    if threads != 1:
        reply({"error": f"the fork server runs {threads} Python threads: a fork could copy a lock one of them holds"})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    leads_read, leads_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(leads_read)
        become_worker(request, leads_write)
    os.close(leads_write)
    os.read(leads_read, 1)  # end of file once the worker leads its own group, so killing the group kills it
    os.close(leads_read)
    FORKED[pid] = bool(request.get("detach"))
    reply({"pid": pid})
    if request.get("detach"):
        return
    if conn is not None and not wait_or_hang_up(pid, conn):
        return  # the connection ended while its worker ran: end_connection kills and reaps it
    _, status = os.waitpid(pid, 0)
    FORKED.pop(pid, None)
    reply({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def wait_or_hang_up(pid: int, conn) -> bool:
    """Wait for the worker to end (True) or the connection to end first (False)."""
    import select
    import socket

    pidfd = os.pidfd_open(pid)
    try:
        while True:
            readable = select.select([pidfd, conn], [], [])[0]
            if pidfd in readable:
                return True
            if not conn.recv(1, socket.MSG_PEEK):
                return False
            select.select([pidfd], [], [])  # a request sent early waits for this worker's end
            return True
    finally:
        os.close(pidfd)


def python_threads() -> int:
    """Threads the interpreter runs. Native pools are not counted: with more than one thread, importing torch starts
    OpenMP's, which wait idle on a futex and which a forked child does not inherit; a Python thread could hold the
    import lock or a logging lock that the child would find taken forever."""
    import threading

    return threading.active_count()


def become_worker(request: dict, leads: int) -> None:
    """In the forked child: the setup a fresh worker gets from the launcher, then `python -m MODULE ARGV`. Closing
    `leads` tells the server this worker leads its own session and group. Never returns."""
    code = 1
    atexit._clear()  # the server's exit handlers are not the worker's; the worker's own run before it exits
    try:
        for fd in CLOSE_IN_WORKERS:
            os.close(fd)
        os.setsid()
        os.close(leads)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        if request.get("cpus") is not None:
            os.sched_setaffinity(0, request["cpus"])
        die_with_parent()
        redirect_output(request["output"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[START_VAR] = "warm"
        sys.argv = [request["module"], *request["argv"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what the worker registered (a private inductor cache folder, ...)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def redirect_output(path: str) -> None:
    """Standard input from /dev/null, standard output and error appended to `path`: the server's pipes are closed."""
    null = os.open(os.devnull, os.O_RDONLY)
    output = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(null)
    os.close(output)


def reply(message: dict) -> None:
    target = REPLY_TO or sys.__stdout__
    target.write(json.dumps(message) + "\n")
    target.flush()


if __name__ == "__main__":
    raise SystemExit(main())
