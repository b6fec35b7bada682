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
    call = generation_call(prepared)
    warm_up(prepared, call)
    if prepared.job.mode == "reference":
        return saved_reference(prepared, call.reference())
    samples_ns, interference = measure_until_clean(call, prepared.job.case.measure)
    return measured_result(prepared, call, samples_ns, interference)


def generation_call(prepared):
    """The case's whole generate call, clocked per token (bench.measure.generation.GenerationCall)."""
    from bench.measure.generation import GenerationCall

    job, inputs = prepared.job, prepared.inputs
    stopping, processors = generation_hooks(job, int(inputs["input_ids"].shape[1]))
    return GenerationCall(
        prepared.backend.generate_model(),
        inputs,
        job.case.new_tokens,
        job.vocab["pad_token_id"],
        prepared.backend.generate_context,
        stopping,
        processors,
    )


def measured_result(prepared, call, samples_ns: list[int], interference: dict) -> dict:
    """The worker's answer for a generation case: the row of its last len(samples_ns) calls, its `generation` entry,
    and one more, untimed call checked against eager fp32."""
    from bench.measure.generation import figures, raw_timings
    from bench.measure.stats import throughput
    from bench.worker.whole_calls import measured_row

    backend, case = prepared.backend, prepared.job.case
    prepared.memory.looped()
    backend.after_measurement()
    records = call.records[-len(samples_ns):]
    token_ms, tail_ms = raw_timings(records)
    accuracy = checked_accuracy(prepared, call)
    sizes = {record.sequences for record in records}
    sequences = sizes.pop() if len(sizes) == 1 else None  # a batching server's calls carry what it gathered
    generation = {"prompt_len": case.seq_len, **figures(token_ms, tail_ms, sequences)}
    row = measured_row(backend, case.measure, samples_ns, interference, prepared.memory, prepared.timings,
                       effective(backend))  # fmt: skip
    median = row["latency_ms"]["median"]
    return {
        **row,
        "throughput": throughput(median, sequences, sequences * case.new_tokens) if sequences else None,
        "generation": generation,
        "accuracy": accuracy,
    }


def checked_accuracy(prepared, call) -> dict:
    """One more call (untimed, also returning the prefill's logits) checked against eager fp32's."""
    from bench.measure.generation import compare_generation

    case = prepared.job.case
    return compare_generation(call.reference(), prepared.reference.outputs, case.precision, case.tolerance)


def resident(prepared):
    """What a resident worker (bench.worker.resident) calls for a generation case: each query one whole generate
    call, which reports when each of its tokens came (ns before the call's end, bench.results.generation_load); with
    dynamic batching, one generate call on the queries gathered, a sequence each."""
    from bench.worker.workloads import ResidentCalls

    call = generation_call(prepared)

    def token_times() -> list[int]:
        record = call.records[-1]
        return [record.end_ns - stamp for stamp in record.stamps_ns]

    return ResidentCalls(
        call=call,
        warm_ms=warm_up(prepared, call),
        result=lambda samples_ns, interference: measured_result(prepared, call, samples_ns, interference),
        accuracy=lambda: checked_accuracy(prepared, call),
        token_times=token_times,
        batch_call=call.batch if prepared.job.case.batching else None,
    )


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
