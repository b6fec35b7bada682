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
GENERATION_FAULT_VAR = "BENCH_GENERATION_FAULT"
"""Test hook: `SUBSTRING:stop=K` or `SUBSTRING:diverge=K` (see generation_hooks)."""


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
    case = prepare_case(job)
    if job.case.generating:
        return run_generation(job, case.backend, case.inputs, case.reference, case.memory, case.timings)
    if job.case.pipelined:
        from bench.worker.pipeline import run_pipeline

        return run_pipeline(
            job, case.backend, case.inputs, case.reference, case.memory, case.timings, measure_until_clean, effective
        )
    warm_up(case)
    if job.mode == "reference":
        return save_reference_outputs(case)
    samples_ns, interference = measure_until_clean(case.backend.run, job.case.measure)
    return measured_result(case, samples_ns, interference)


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


def warm_up(case: PreparedCase) -> list[float]:
    """The first call (timed, recorded) and the untimed warm-up calls; their durations in ms."""
    from bench.measure.timing import timed

    _, case.timings["first_call"] = timed(case.backend.run)
    return [timed(case.backend.run)[1] for _ in range(case.job.case.measure["warmup"])]


def save_reference_outputs(case: PreparedCase) -> dict:
    from bench.measure.hidden_state import accuracy_outputs
    from bench.measure.reference import save_reference

    save_reference(case.job.reference, accuracy_outputs(case.backend)[0], case.inputs)
    return {"reference": case.job.reference, "effective": effective(case.backend)}


def measured_result(case: PreparedCase, samples_ns: list[int], interference: dict) -> dict:
    """The worker's answer for a forward-pass case: its samples and statistics, then one more call's outputs
    checked against eager fp32, and what took effect."""
    from bench.measure.accuracy import compare
    from bench.measure.flops import try_count_flops
    from bench.measure.hidden_state import accuracy_outputs
    from bench.measure.inputs import padding_share
    from bench.measure.interference import warnings_of
    from bench.measure.stats import ci_target, ci_target_warnings, latency_summary, stability_warnings, throughput

    job, backend, measure_cfg = case.job, case.backend, case.job.case.measure
    case.memory.looped()
    backend.after_measurement()
    outputs, not_compared = accuracy_outputs(backend)
    reference = case.reference
    samples_ms = [ns / 1e6 for ns in samples_ns]
    latency = latency_summary(samples_ms)
    latency["ci_target"] = ci_target(latency, measure_cfg.get("target_ci"))
    tokens = int(case.inputs["attention_mask"].sum())
    return {
        "latency_ms": latency,
        "samples_ms": samples_ms,
        "throughput": throughput(latency["median"], job.case.batch_size, tokens),
        "accuracy": compare(outputs, reference.outputs, reference.mask, job.case.task, job.case.tolerance, not_compared),
        "effective": effective(backend),
        "timings_ms": {**case.timings, **backend.timings},
        "memory": case.memory.figures(),
        "precision_mode": backend.precision_mode(),
        "padding": padding_share(case.inputs["attention_mask"]),
        "details": backend.details,
        "flops": try_count_flops(job),
        "interference": interference,
        "warnings": backend.warnings
        + stability_warnings(latency, len(samples_ms), measure_cfg["min_iterations"])
        + ci_target_warnings(latency["ci_target"], len(samples_ms))
        + warnings_of(interference),
    }


def run_generation(job: Job, backend, inputs: dict, reference, memory, timings: dict) -> dict:
    """A generation case: whole generate calls as the timed call (bench.measure.generation), the same loop, meter
    and warm-up as any case; the row's latency is the end-to-end call, its `generation` entry the per-token figures,
    its accuracy the prefill's logits and the generated tokens of one more, untimed call against eager fp32's."""
    from bench.measure.generation import GenerationCall, compare_generation, figures, raw_timings
    from bench.measure.reference import save_reference
    from bench.measure.stats import throughput
    from bench.measure.timing import timed
    from bench.worker.whole_calls import measured_row

    case, measure_cfg = job.case, job.case.measure
    stopping, processors = generation_hooks(job, int(inputs["input_ids"].shape[1]))
    call = GenerationCall(
        backend.generate_model(),
        inputs,
        case.new_tokens,
        job.vocab["pad_token_id"],
        backend.generate_context,
        stopping,
        processors,
    )
    _, timings["first_call"] = timed(call)
    for _ in range(measure_cfg["warmup"]):
        call()
    if job.mode == "reference":
        save_reference(job.reference, call.reference(), inputs)
        return {"reference": job.reference, "effective": effective(backend)}
    samples_ns, interference = measure_until_clean(call, measure_cfg)
    memory.looped()
    backend.after_measurement()
    token_ms, tail_ms = raw_timings(call.records[-len(samples_ns):])
    checked = call.reference()  # untimed: the same call, also returning the prefill's logits
    generation = {"prompt_len": case.seq_len, **figures(token_ms, tail_ms, case.batch_size)}
    row = measured_row(backend, measure_cfg, samples_ns, interference, memory, timings, effective(backend))
    return {
        **row,
        "throughput": throughput(row["latency_ms"]["median"], case.batch_size, case.batch_size * case.new_tokens),
        "generation": generation,
        "accuracy": compare_generation(checked, reference.outputs, case.precision, case.tolerance),
    }


def generation_hooks(job: Job, prompt_len: int) -> tuple[list, list]:
    """Test hook GENERATION_FAULT_VAR, on measured cases only (never on their reference): `SUBSTRING:stop=K` stops
    generate after K tokens, `SUBSTRING:diverge=K` makes token K (0-based) the second choice."""
    from bench.measure.generation import diverge_at, stop_after

    stopping, processors = [], []
    if job.mode != "measure":
        return stopping, processors
    for spec in filter(None, os.environ.get(GENERATION_FAULT_VAR, "").split(",")):
        substring, _, fault = spec.rpartition(":")
        if substring not in job.case.case_id:
            continue
        kind, _, count = fault.partition("=")
        if kind == "stop":
            stopping.append(stop_after(prompt_len, int(count)))
        elif kind == "diverge":
            processors.append(diverge_at(prompt_len, int(count)))
    return stopping, processors


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
        "layout_shift_bytes": shift_layout(),
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
