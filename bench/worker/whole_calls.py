"""The row of a case whose timed call is a whole user-level call (a generate call, a pipeline call): what every such
row carries beside its own entry (bench.worker.workloads.generate, bench.worker.workloads.pipeline)."""

from __future__ import annotations


def measured_row(backend, measure_cfg: dict, samples_ns: list[int], interference: dict, memory, timings: dict,
                 effective: dict) -> dict:  # fmt: skip
    """Latency over the whole calls, what took effect, memory, timings and the warnings of the measurement."""
    from bench.measure.interference import warnings_of
    from bench.measure.stats import ci_target, ci_target_warnings, latency_summary, stability_warnings

    samples_ms = [ns / 1e6 for ns in samples_ns]
    latency = latency_summary(samples_ms)
    latency["ci_target"] = ci_target(latency, measure_cfg.get("target_ci"))
    return {
        "latency_ms": latency,
        "samples_ms": samples_ms,
        "effective": effective,
        "timings_ms": {**timings, **backend.timings},
        "memory": memory.figures(),
        "precision_mode": backend.precision_mode(),
        "padding": 0.0,
        "details": backend.details,
        "flops": None,
        "interference": interference,
        "warnings": backend.warnings
        + stability_warnings(latency, len(samples_ms), measure_cfg["min_iterations"])
        + ci_target_warnings(latency["ci_target"], len(samples_ms))
        + warnings_of(interference),
    }
