"""Latency statistics over raw samples, and the warnings that tell a reader not to trust a number."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.measure.intervals import half_width_share, median_interval

CV_WARNING = 0.10
SHORT_SAMPLE_MS = 1.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def percentiles(values: list[float]) -> dict | None:
    """p50, p90, p99 and p99.9 of sorted values (the nearest rank, as LoadGen reports them)."""
    if not values:
        return None
    at = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_9": 0.999}
    return {name: values[min(len(values) - 1, math.ceil(q * len(values)) - 1)] for name, q in at.items()}


def percentile_summary(values: list[float]) -> dict | None:
    """p50, p90, p99 and p99.9 (nearest rank), rounded; None for one that falls on an unserved query (math.inf)."""
    found = percentiles(sorted(values))
    return {k: round(v, 4) if math.isfinite(v) else None for k, v in found.items()} if found else None


def spread(values: list[float]) -> dict:
    """median, p90, min and max of some timings (None each when there are none)."""
    if not values:
        return {"median": None, "p90": None, "min": None, "max": None}
    ordered = sorted(values)
    return {"median": percentile(ordered, 50), "p90": percentile(ordered, 90), "min": ordered[0], "max": ordered[-1]}


@dataclass(frozen=True)
class Samples:
    """Latencies in ms, sorted, with the mean and the sample standard deviation (n-1) that several statistics use."""

    values: list[float]
    mean: float
    std: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Samples:
        values = sorted(samples_ms)
        n = len(values)
        mean = math.fsum(values) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(values, mean, std)


STATISTICS: dict[str, Callable[[Samples], float]] = {
    "mean": lambda s: s.mean,
    "median": lambda s: percentile(s.values, 50),
    "p90": lambda s: percentile(s.values, 90),
    "p95": lambda s: percentile(s.values, 95),
    "p99": lambda s: percentile(s.values, 99),
    "min": lambda s: s.values[0],
    "max": lambda s: s.values[-1],
    "std": lambda s: s.std,
    "cv": lambda s: s.std / s.mean if s.mean > 0 else 0.0,
    "iqr": lambda s: percentile(s.values, 75) - percentile(s.values, 25),
}
"""Every statistic of a row's latency_ms, in its order: the row, the readers' checks and the CSV columns follow it.
All are in ms but cv (std/mean, a ratio); lower is better for each."""
UNITLESS = {"cv"}


def summarize(samples_ms: Sequence[float]) -> dict:
    """Each of STATISTICS over the samples."""
    samples = Samples.of(samples_ms)
    return {name: statistic(samples) for name, statistic in STATISTICS.items()}


def latency_summary(samples_ms: Sequence[float], rounds: Sequence[Sequence[float]] | None = None) -> dict:
    """summarize() plus the median's 95% interval (median_ci, its method, n, or why there is none).

    `rounds`, when the samples come from several workers, holds each round's samples: the interval then covers the
    spread between rounds too.
    """
    return {**summarize(samples_ms), **median_interval(samples_ms, rounds)}


def ci_target(latency: dict, target: float | None) -> dict | None:
    """What adaptive stopping reached: the target half-width, the one reached (share of the median), whether met."""
    if not target:
        return None
    reached = half_width_share(latency["median"], latency.get("median_ci"))
    return {"target": target, "reached": reached, "met": reached is not None and reached <= target}


def ci_target_warnings(record: dict | None, n_samples: int) -> list[str]:
    if not record or record["met"]:
        return []
    reached = "no interval" if record["reached"] is None else f"±{record['reached']:.1%}"
    return [
        f"imprecise: the median's 95% interval reached {reached} after {n_samples} samples, not the"
        f" ±{record['target']:.1%} of measure.target_ci, before measure.max_seconds; raise max_seconds"
    ]


def throughput(median_ms: float, batch_size: int, tokens: int) -> dict:
    """Samples and (non-padding) tokens per second at the median latency."""
    seconds = median_ms / 1000
    return {"samples_per_s": batch_size / seconds, "tokens_per_s": tokens / seconds}


def stability_warnings(latency: dict, n_samples: int, min_iterations: int, judge_spread: bool = True) -> list[str]:
    warnings = []
    if judge_spread and latency["cv"] > CV_WARNING:
        warnings.append(
            f"unstable: the standard deviation is {latency['cv']:.0%} of the mean (over {CV_WARNING:.0%});"
            " rerun on a quieter machine or raise measure.min_seconds"
        )
    if latency["min"] < SHORT_SAMPLE_MS:
        warnings.append(
            f"short samples: the fastest call took {latency['min']:.3f} ms (under {SHORT_SAMPLE_MS:g} ms),"
            " where timer and scheduling noise weigh; use a larger batch or sequence"
        )
    if n_samples < min_iterations:
        warnings.append(
            f"capped: {n_samples} of {min_iterations} iterations fit in measure.max_seconds; raise it for a firmer number"
        )
    return warnings


def throughput_at(median_ms: float, row: dict) -> dict:
    """A row's throughput recomputed at another median (the merged rounds'), from its own batch and tokens."""
    tokens = row["throughput"]["tokens_per_s"] * row["latency_ms"]["median"] / 1000
    return throughput(median_ms, row["batch_size"], round(tokens))
