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
"""

from __future__ import annotations

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


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the server ends: it closes stdin
    die_with_parent()
    for name in HIDDEN_MODULES:
        sys.modules.setdefault(name, None)
    started = time.perf_counter()
    preloaded = [name for name in PRELOAD if imported(name)]
    gc.collect()
    gc.freeze()  # what the imports left is shared with every worker as it is: no collection dirties its pages
    reply({"ready": True, "pid": os.getpid(), "preloaded": preloaded, "import_s": time.perf_counter() - started})
    for line in sys.stdin:
        if line.strip():
            serve(json.loads(line))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the parent closed stdin: nothing to tear down, and torch's interpreter shutdown costs about 1 s


def imported(name: str) -> bool:
    """Import `name` if this environment has it; a worker that needs a missing one fails there, with its message."""
    try:
        __import__(name)
        return True
    except Exception:
        traceback.print_exc()
        return False


def serve(request: dict) -> None:
    """Fork a worker for `request` and report its end; a detached one (a resident worker) is reported on a later
    {"reap": PID} request instead, once the parent has seen it end."""
    if "reap" in request:
        _, status = os.waitpid(request["reap"], 0)
        reply({"pid": request["reap"], "returncode": os.waitstatus_to_exitcode(status)})
        return
    threads = python_threads()
    if threads != 1:
        reply({"error": f"the fork server runs {threads} Python threads: a fork could copy a lock one of them holds"})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        become_worker(request)
    reply({"pid": pid})
    if request.get("detach"):
        return
    _, status = os.waitpid(pid, 0)
    reply({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def python_threads() -> int:
    """Threads the interpreter runs. Native pools are not counted: with more than one thread, importing torch starts
    OpenMP's, which wait idle on a futex and which a forked child does not inherit; a Python thread could hold the
    import lock or a logging lock that the child would find taken forever."""
    import threading

    return threading.active_count()


def become_worker(request: dict) -> None:
    """In the forked child: the setup a fresh worker gets from the launcher, then `python -m MODULE ARGV`. Never returns."""
    code = 1
    try:
        os.setsid()
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
    sys.__stdout__.write(json.dumps(message) + "\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    raise SystemExit(main())
