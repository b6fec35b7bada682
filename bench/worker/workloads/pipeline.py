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
    from bench.measure.pipeline import PipelineCall, compare_answers, figures, raw_timings
    from bench.measure.stats import throughput
    from bench.measure.texts import TEXT_SETS
    from bench.worker.whole_calls import measured_row

    job, backend, inputs, reference = prepared.job, prepared.backend, prepared.inputs, prepared.reference
    memory, timings = prepared.memory, prepared.timings
    case, measure_cfg = job.case, job.case.measure
    texts = TEXT_SETS[case.texts]
    call = PipelineCall(make_pipeline(job, backend), case.task, texts, backend.generate_context)
    warm_up(prepared, call)
    if job.mode == "reference":
        return saved_reference(prepared, call.answers())
    samples_ns, interference = measure_until_clean(call, measure_cfg, cycle=len(texts))
    memory.looped()
    backend.after_measurement()
    tokens = call.token_counts()
    entry = figures(case.texts, tokens, raw_timings(call.records[-len(samples_ns) :]))
    row = measured_row(backend, measure_cfg, samples_ns, interference, memory, timings, effective(backend))
    answers = call.answers()
    return {
        **row,
        "throughput": throughput(row["latency_ms"]["median"], 1, round(entry["tokens_median"])),
        "pipeline": entry,
        "accuracy": compare_answers(answers, reference.outputs, case.task, case.precision, case.tolerance, texts),
    }
