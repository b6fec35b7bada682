"""A generation case: whole generate calls as the timed call (bench.measure.generation), the same loop, meter and
warm-up as any case; the row's latency is the end-to-end call, its `generation` entry the per-token figures, its
accuracy the prefill's logits and the generated tokens of one more, untimed call against eager fp32's."""

from __future__ import annotations

import os

from bench.job import Job
from bench.worker.case import effective, measure_until_clean, saved_reference, warm_up

GENERATION_FAULT_VAR = "BENCH_GENERATION_FAULT"
"""Test hook: `SUBSTRING:stop=K` or `SUBSTRING:diverge=K` (see generation_hooks)."""


def run(prepared) -> dict:
    from bench.measure.generation import GenerationCall, compare_generation, figures, raw_timings
    from bench.measure.stats import throughput
    from bench.worker.whole_calls import measured_row

    job, backend, inputs, reference = prepared.job, prepared.backend, prepared.inputs, prepared.reference
    memory, timings = prepared.memory, prepared.timings
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
    warm_up(prepared, call)
    if job.mode == "reference":
        return saved_reference(prepared, call.reference())
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
