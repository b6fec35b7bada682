"""A pipeline case in the worker: the backend's model in transformers' pipeline with its tokenizer, whole calls on
the shipped texts as the timed call (bench.measure.pipeline), the same loop, meter and warm-up as any case."""

from __future__ import annotations

import os

from bench.job import Job
from bench.worker.case import effective, measure_until_clean, saved_reference, warm_up

PIPELINE_FAULT_VAR = "BENCH_PIPELINE_FAULT"
"""Test hook: `SUBSTRING[,...]`: a measured case whose id contains SUBSTRING has its model outputs negated."""
MAKER = "transformers.pipeline"
"""What builds the pipeline around every backend's model (the row's details say it)."""


def make_pipeline(job: Job, backend):
    """transformers' pipeline for the case's task over the backend's model and the case's tokenizer."""
    from transformers import pipeline

    from bench.measure.loading import load_config
    from bench.measure.pipeline import negate_outputs
    from bench.worker.tokenizer import pipeline_tokenizer

    case = job.case
    if backend.details.get("static_shape"):
        raise ValueError(
            "option static_shape: true fixes one batch x seq shape; a pipeline case feeds texts of several lengths"
            " (static_shape: false)"
        )
    call = getattr(backend.options, "call", "optimum")
    if call != "optimum":
        raise ValueError(
            f"option call: {call!r} times one inference; a pipeline case times whole pipeline calls of the Optimum"
            " model class (call: optimum)"
        )
    config = load_config(job.source, case.model_entry.get("config_overrides", {}))
    tokenizer, about = pipeline_tokenizer(job, config)
    pipe = pipeline(case.task, model=backend.pipeline_model(), tokenizer=tokenizer)
    backend.details["pipeline"] = {"maker": MAKER, "class": type(pipe).__name__, "tokenizer": about}
    if job.mode == "measure" and any(s in case.case_id for s in os.environ.get(PIPELINE_FAULT_VAR, "").split(",") if s):
        negate_outputs(pipe)
    return pipe


def run(prepared) -> dict:
    """The row's latency is the end-to-end call, its `pipeline` entry the per-stage figures, its accuracy the answers
    on every text against eager fp32's pipeline."""
    from bench.measure.texts import TEXT_SETS

    call = pipeline_call(prepared)
    warm_up(prepared, call)
    if prepared.job.mode == "reference":
        return saved_reference(prepared, call.answers())
    case = prepared.job.case
    samples_ns, interference = measure_until_clean(call, case.measure, cycle=len(TEXT_SETS[case.texts]))
    return measured_result(prepared, call, samples_ns, interference)


def pipeline_call(prepared):
    """One pipeline call on the next of the case's texts per call (bench.measure.pipeline.PipelineCall)."""
    from bench.measure.pipeline import PipelineCall
    from bench.measure.texts import TEXT_SETS

    job, backend = prepared.job, prepared.backend
    return PipelineCall(make_pipeline(job, backend), job.case.task, TEXT_SETS[job.case.texts], backend.generate_context)


def measured_result(prepared, call, samples_ns: list[int], interference: dict) -> dict:
    """The worker's answer for a pipeline case: the row of its last len(samples_ns) calls, its `pipeline` entry, and
    the answers on every text checked against eager fp32's."""
    from bench.measure.pipeline import figures, raw_timings
    from bench.measure.stats import throughput
    from bench.worker.whole_calls import measured_row

    backend, case = prepared.backend, prepared.job.case
    prepared.memory.looped()
    backend.after_measurement()
    tokens = call.token_counts()
    entry = figures(case.texts, tokens, raw_timings(call.records[-len(samples_ns) :]))
    row = measured_row(backend, case.measure, samples_ns, interference, prepared.memory, prepared.timings,
                       effective(backend))  # fmt: skip
    return {
        **row,
        "throughput": throughput(row["latency_ms"]["median"], 1, round(entry["tokens_median"])),
        "pipeline": entry,
        "accuracy": checked_answers(prepared, call),
    }


def checked_answers(prepared, call) -> dict:
    from bench.measure.pipeline import compare_answers
    from bench.measure.texts import TEXT_SETS

    case = prepared.job.case
    return compare_answers(call.answers(), prepared.reference.outputs, case.task, case.precision, case.tolerance,
                           TEXT_SETS[case.texts])  # fmt: skip


def resident(prepared):
    """What a resident worker (bench.worker.resident) calls for a pipeline case under load: each query one pipeline
    call on the next of the case's texts, at its own length (each stream takes the texts in turn); batched
    dynamically, one call on the texts of the queries gathered, padded to the longest (then the warm-up's calls
    are full batches, as a full call is what the run's estimates divide by the batch)."""
    from bench.measure.timing import timed
    from bench.worker.workloads import ResidentCalls

    call = pipeline_call(prepared)
    warm_ms = warm_up(prepared, call)
    case = prepared.job.case
    if case.batching:
        full = list(range(case.batch_size))
        warm_ms = [timed(lambda: call.batch(full))[1] for _ in range(max(1, case.measure["warmup"]))]
    return ResidentCalls(
        call=call,
        warm_ms=warm_ms,
        result=lambda samples_ns, interference: measured_result(prepared, call, samples_ns, interference),
        accuracy=lambda: checked_answers(prepared, call),
        batch_call=call.batch if case.batching else None,
    )
