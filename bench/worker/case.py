"""The worker: one case in one fresh process. `python -m bench.worker.case --job JOB.json --result RESULT.json`.

The result travels back as one versioned envelope in the result file (bench.worker.answer), never on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from bench.job import Job
from bench.worker import allocator
from bench.worker.answer import answer

HIDDEN_MODULES = ("sklearn",)
"""transformers imports scikit-learn (and scipy.stats with it) at import time, for assisted generation only: about
2 s of every worker's start. No backend uses it, so the worker hides it before anything imports transformers."""
FAULT_VAR = "BENCH_FAULT"
"""Test hook: `SUBSTRING:abort|hang[,...]` makes a worker whose case id contains SUBSTRING crash or hang."""
START_VAR = "BENCH_START"
"""Set to "warm" in a worker forked by the fork server (bench.worker.warm); the row records how its worker started."""
DELAY_VAR = "BENCH_DELAY_MS"
"""Test hook: `SUBSTRING:MS[,...]` makes every call of a case whose id contains SUBSTRING MS ms slower;
`SUBSTRING:P%` makes it P% slower (a share of the call's own duration)."""
STALL_VAR = "BENCH_STALL"
"""Test hook: `SUBSTRING:QUERY:MS` makes the stream of a server case whose id contains SUBSTRING that serves query
number QUERY (from 0) stall MS ms, asleep, before calling: a pause such as a page-in or a collector would cause."""


def main(argv: list[str] | None = None) -> int:
    args, job = read_job(argparse.ArgumentParser(prog="python -m bench.worker.case"), argv)
    return answer(args.result, lambda: run_job(job))


def read_job(parser: argparse.ArgumentParser, argv: list[str] | None):
    """(arguments, job) of a worker's command line `--job JOB.json --result RESULT.json [its own options]`, with
    HIDDEN_MODULES hidden before anything imports transformers."""
    parser.add_argument("--job", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    for name in HIDDEN_MODULES:
        sys.modules.setdefault(name, None)
    with open(args.job) as handle:
        return args, Job.from_dict(json.load(handle))


def run_job(job: Job) -> dict:
    """Mode "measure" measures the case and "reference" computes its eager fp32 outputs; mode "build" stops once it
    is prepared, its artifacts built into the cache for the case's own worker to find (bench.run.ahead)."""
    from bench.worker.workloads import workload

    prepared = prepare_case(job)
    if job.mode == "build":
        backend = prepared.backend
        return {"timings_ms": {**prepared.timings, **backend.timings}, "details": backend.details,
                "warnings": backend.warnings, "cpus": sorted(os.sched_getaffinity(0))}  # fmt: skip
    return workload(job.case).run(prepared)


class PreparedCase:
    """A case's backend loaded and prepared, with its inputs, its reference (measure mode) and what it cost."""

    def __init__(self, job: Job, backend, inputs: dict, reference, memory, timings: dict):
        self.job, self.backend, self.inputs, self.reference = job, backend, inputs, reference
        self.memory, self.timings = memory, timings


LAYOUT_STEP, LAYOUT_STEPS = 64, 1920
"""The heap is shifted by a random multiple of 64 bytes below 120 KiB (under glibc's mmap threshold)."""
_layout_shift: bytearray | None = None


def shift_layout() -> int:
    """Move the start of everything the case allocates on the heap by a random amount, once per process.

    Workers forked from one server inherit its heap exactly, so two processes of the same case would otherwise lay
    their tensors out alike, relative to each other and to page boundaries; on a 2-vCPU EPYC VM that layout held
    one side of an A/A pair 7-9% slower in every round of a run, and the other side in the next run. Drawn afresh
    in each process, the layout's effect becomes noise between processes, which the intervals measure (Curtsinger
    and Berger's Stabilizer randomizes layout for the same reason)."""
    global _layout_shift
    if _layout_shift is None:
        _layout_shift = bytearray(LAYOUT_STEP * (int.from_bytes(os.urandom(2), "little") % LAYOUT_STEPS))
    return len(_layout_shift)


def prepare_case(job: Job) -> PreparedCase:
    """Load and prepare the case's backend (export, compile, quantize): everything before its first call."""
    inject_fault(job.case.case_id)
    allocator.apply(job.case.measure.get("allocator", "glibc"))
    shift_layout()
    from bench.backends import backend_class
    from bench.measure.inputs import make_inputs
    from bench.measure.memory import LoopMemory
    from bench.measure.reference import check_inputs, load_reference
    from bench.measure.timing import timed

    case = job.case
    backend = backend_class(case.backend_type)(job)
    inject_delay(backend, case.case_id)
    _, load_ms = timed(backend.load)
    vocab = job.vocab
    inputs = make_inputs(
        case.batch_size, case.seq_len, vocab["size"], vocab["pad_token_id"], case.padding_ratio, case.seed
    )
    reference = load_reference(job.reference) if job.mode == "measure" else None
    if reference is not None:
        check_inputs(reference, inputs, job.reference)
    _, prepare_ms = timed(lambda: backend.prepare(inputs))
    memory = LoopMemory()
    memory.prepared()
    return PreparedCase(job, backend, inputs, reference, memory, {"load": load_ms, "prepare": prepare_ms})


def warm_up(case: PreparedCase, call=None) -> list[float]:
    """The first call (timed, recorded) and the untimed warm-up calls of `call` (the backend's own by default, or a
    workload's whole call); their durations in ms."""
    from bench.measure.timing import timed

    call = call or case.backend.run
    _, case.timings["first_call"] = timed(call)
    return [timed(call)[1] for _ in range(case.job.case.measure["warmup"])]


def saved_reference(case: PreparedCase, outputs) -> dict:
    """A reference worker's answer: `outputs` saved as the eager fp32 reference of the case's inputs."""
    from bench.measure.reference import save_reference

    save_reference(case.job.reference, outputs, case.inputs)
    return {"reference": case.job.reference, "effective": effective(case.backend)}


RETRY_PAUSE_S = 2.0


def measure_until_clean(call, measure_cfg: dict, cycle: int = 1) -> tuple[list[int], dict]:
    """The timed loop inside the interference meter, measured again while contaminated, up to measure.retries times.

    A retry happens here, in the same worker, so it costs a pause and the loop: not another start, import and load.
    The samples kept are the last attempt's; the meter's entry lists every attempt's verdict.
    """
    from bench.measure.interference import assess, snapshot
    from bench.measure.timing import measure

    pinned = sorted(os.sched_getaffinity(0))
    attempts = []
    for attempt in range(1 + measure_cfg.get("retries", 0)):
        if attempt:
            time.sleep(RETRY_PAUSE_S * attempt)
        before = snapshot(pinned)
        samples_ns = measure(
            call,
            min_iterations=measure_cfg["min_iterations"],
            min_seconds=measure_cfg["min_seconds"],
            max_seconds=measure_cfg["max_seconds"],
            target_ci=measure_cfg.get("target_ci"),
            cycle=cycle,
        )
        interference = assess(before, snapshot(pinned))
        attempts.append({"contaminated": interference.get("contaminated"), "reasons": interference.get("reasons")})
        if not interference.get("contaminated"):
            break
    return samples_ns, {**interference, "attempts": attempts}


def effective(backend) -> dict:
    """What took effect in this process: the thread pools, the CPUs, the interpreter and the backend's settings."""
    from bench.machine import PACKAGES, installed_versions
    from bench.backends.threads import thread_variables
    from bench.worker.cpu_view import cpu_view

    versions = installed_versions(PACKAGES)
    backend_reported = backend.effective()
    return {
        "threads": backend_reported.get("threads", backend_reported.get("torch_threads")),
        "cpus": sorted(os.sched_getaffinity(0)),
        "pid": os.getpid(),
        "env": thread_variables(os.environ),
        "python": sys.executable,
        "start": os.environ.get(START_VAR, "cold"),
        "fork_server": os.getppid() if os.environ.get(START_VAR) == "warm" else None,
        "layout_shift_bytes": shift_layout(),
        "allocator": allocator.state(),
        "versions": versions,
        "backend": backend_reported,
        "cpu_view": cpu_view(),
    }


def inject_fault(case_id: str) -> None:
    for spec in filter(None, os.environ.get(FAULT_VAR, "").split(",")):
        substring, _, fault = spec.partition(":")
        if substring in case_id:
            _fault(fault)


def inject_delay(backend, case_id: str) -> None:
    """Wrap backend.run in a delay spent spinning, so that the CPU stays busy as a slower backend's would: a fixed
    one (`SUBSTRING:MS`) or a share of each call's own duration (`SUBSTRING:5%`: every call 5% slower, at any size)."""
    delay_s, share = 0.0, 0.0
    for spec in filter(None, os.environ.get(DELAY_VAR, "").split(",")):
        substring, _, amount = spec.rpartition(":")
        if substring in case_id:
            if amount.endswith("%"):
                share += float(amount[:-1]) / 100
            else:
                delay_s += float(amount) / 1000
    if delay_s <= 0 and share <= 0:
        return
    run = backend.run

    def delayed_run(*args, **kwargs):
        start = time.perf_counter()
        result = run(*args, **kwargs)
        deadline = time.perf_counter() + delay_s + share * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
        return result

    backend.run = delayed_run


def query_stall(case_id: str) -> tuple[int, float] | None:
    """(query index, seconds) that STALL_VAR asks of this case's server streams, or None."""
    for spec in filter(None, os.environ.get(STALL_VAR, "").split(",")):
        substring, query, ms = spec.rsplit(":", 2)
        if substring in case_id:
            return int(query), float(ms) / 1000
    return None


def _fault(fault: str) -> None:
    if fault == "abort":
        os.kill(os.getpid(), signal.SIGABRT)
    if fault == "hang":
        import subprocess

        # a grandchild the timeout must kill too; orphaned (its worker killed some other way), it ends on its own
        orphan_check = "import os, time\nparent = os.getppid()\nwhile os.getppid() == parent: time.sleep(0.5)"
        subprocess.Popen([sys.executable, "-c", orphan_check])
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
