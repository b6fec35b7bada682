"""The forward pass: the model's own call on the case's inputs, the row's latency its duration."""

from __future__ import annotations

from bench.worker.case import effective, measure_until_clean, saved_reference, warm_up


def run(case) -> dict:
    warm_up(case)
    if case.job.mode == "reference":
        from bench.measure.hidden_state import accuracy_outputs

        return saved_reference(case, accuracy_outputs(case.backend)[0])
    samples_ns, interference = measure_until_clean(case.backend.run, case.job.case.measure)
    return measured_result(case, samples_ns, interference)


def checked_accuracy(case) -> dict:
    """One more call's outputs checked against eager fp32."""
    from bench.measure.accuracy import compare
    from bench.measure.hidden_state import accuracy_outputs

    outputs, not_compared = accuracy_outputs(case.backend)
    reference, settings = case.reference, case.job.case
    return compare(outputs, reference.outputs, reference.mask, settings.task, settings.tolerance, not_compared)


def measured_result(case, samples_ns: list[int], interference: dict) -> dict:
    """The worker's answer for a forward-pass case: its samples and statistics, then one more call's outputs
    checked against eager fp32, and what took effect."""
    from bench.measure.flops import try_count_flops
    from bench.measure.inputs import padding_share
    from bench.measure.interference import warnings_of
    from bench.measure.stats import ci_target, ci_target_warnings, latency_summary, stability_warnings, throughput

    job, backend, measure_cfg = case.job, case.backend, case.job.case.measure
    case.memory.looped()
    backend.after_measurement()
    accuracy = checked_accuracy(case)
    samples_ms = [ns / 1e6 for ns in samples_ns]
    latency = latency_summary(samples_ms)
    latency["ci_target"] = ci_target(latency, measure_cfg.get("target_ci"))
    tokens = int(case.inputs["attention_mask"].sum())
    return {
        "latency_ms": latency,
        "samples_ms": samples_ms,
        "throughput": throughput(latency["median"], job.case.batch_size, tokens),
        "accuracy": accuracy,
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


def resident(case):
    """What a resident worker (bench.worker.resident) calls for a forward-pass case: the backend's own call."""
    from bench.worker.workloads import ResidentCalls

    warm_ms = warm_up(case)
    stream_calls = getattr(case.backend, "stream_calls", None)
    for call in stream_calls or []:  # each infer request's first calls allocate what it keeps
        for _ in range(max(1, case.job.case.measure["warmup"])):
            call()
    return ResidentCalls(
        call=case.backend.run,
        warm_ms=warm_ms,
        result=lambda samples_ns, interference: measured_result(case, samples_ns, interference),
        accuracy=lambda: checked_accuracy(case),
        stream_calls=stream_calls,
    )
