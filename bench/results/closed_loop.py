"""Closed-loop rows (bench.run.closed_loop): their queries pooled over rounds. Their latency runs from each query's
send, not from a schedule, so they are shown apart from server rows and never judged VALID or INVALID."""

from __future__ import annotations

import statistics

from bench.measure.stats import percentile_summary


def is_closed_loop(row: dict) -> bool:
    return row.get("scenario") == "closed-loop"


def closed_loop_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_closed_loop(r)]


def merge_closed_loop(entries: list[dict], samples_ms: list[float]) -> dict:
    """The merged row's `closed_loop`: the rounds' figures side by side, the percentiles over every round's queries."""

    def per_round(name: str) -> list:
        return [value for e in entries for value in e.get(name) or []]

    return {
        **entries[-1],
        "completed": sum(e["completed"] for e in entries),
        "completed_per_s": statistics.median(e["completed_per_s"] for e in entries),
        "latency_ms": per_round("latency_ms"),
        "pooled_latency_ms": percentile_summary(samples_ms),
        "mean_latency_ms": per_round("mean_latency_ms"),
        "wait_ms": per_round("wait_ms"),
        "service_ms": per_round("service_ms"),
        "steal_shares": per_round("steal_shares"),
        "records": per_round("records"),
    }


def pooled_latency(row: dict) -> dict:
    """Latency percentiles from the send over every round (a one-round row's own)."""
    entry = row.get("closed_loop") or {}
    return entry.get("pooled_latency_ms") or next(iter(entry.get("latency_ms") or []), None) or {}
