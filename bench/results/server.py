"""Server rows (bench.run.server): their queries pooled over rounds, and each result VALID or INVALID.

bench's rule, adapted from MLPerf LoadGen's and named as such: a result is VALID when its p99 latency, from each
query's scheduled time, is under the suite's bound (`p99_ms`) **with 99% confidence** by LoadGen's early-stopping
test. Counting t queries over the bound (an unserved query is over any bound) among n scheduled, the 99th
percentile is under the bound when, were 1% of all queries over it, seeing t or fewer in n would have had a chance
of at most 1% (a binomial bound). LoadGen's minimum duration (600 s) and query count are waived: the row records
how long and how many, and too few queries to decide is INVALID with that reason, as LoadGen's early stopping says
"not enough queries". Without a bound the result is not judged.
"""

from __future__ import annotations

import math
import statistics

PERCENTILE = 0.99
CONFIDENCE = 0.99


def is_server(row: dict) -> bool:
    return row.get("scenario") == "server"


def server_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_server(r)]


def early_stopping_passes(
    over: int, queries: int, percentile: float = PERCENTILE, confidence: float = CONFIDENCE
) -> bool:
    """LoadGen's early-stopping test: with `over` of `queries` over the bound, is the `percentile` latency under it
    with `confidence`? (P[Binomial(queries, 1 - percentile) <= over] <= 1 - confidence.)"""
    from scipy.stats import binom

    return queries > 0 and binom.cdf(over, queries, 1 - percentile) <= 1 - confidence


def queries_needed(over: int, percentile: float = PERCENTILE, confidence: float = CONFIDENCE) -> int:
    """The fewest queries with which `over` queries over the bound still pass early stopping."""
    low, high = over + 1, max(2 * (over + 1), 16)
    while not early_stopping_passes(over, high, percentile, confidence):
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        if early_stopping_passes(over, middle, percentile, confidence):
            high = middle
        else:
            low = middle + 1
    return high


def validity(samples_ms: list[float], queries: int, bound_ms: float | None) -> dict:
    """VALID or INVALID with the reason, by bench's rule (this module's docstring); "not judged" without a bound."""
    served = len(samples_ms)
    unserved = queries - served
    if not bound_ms:
        return {"result": "not judged", "short": "not judged (no p99_ms)", "reason": "no p99_ms bound in the suite",
                "rule": RULE}  # fmt: skip
    over = sum(1 for v in samples_ms if v > bound_ms) + unserved
    entry = {"rule": RULE, "bound_ms": bound_ms, "queries": queries, "over_bound": over, "unserved": unserved}
    if early_stopping_passes(over, queries):
        why = f"p99 under {bound_ms:g} ms with 99% confidence ({over} of {queries} queries over it)"
        return {"result": "VALID", "short": "VALID", "reason": why, **entry}
    if over > (1 - PERCENTILE) * queries:
        why = f"{over} of {queries} queries over {bound_ms:g} ms ({over / queries:.1%}; p99 allows 1%)"
        if unserved:
            why += f", {unserved} never served: the streams fell behind the offered rate"
        return {"result": "INVALID", "short": f"INVALID: {over / queries:.0%} over", "reason": why, **entry}
    needed = queries_needed(over)
    why = (f"too few queries to know: {over} of {queries} over {bound_ms:g} ms; early stopping needs at least"
           f" {needed} at that count (a longer measure.server_seconds)")  # fmt: skip
    return {"result": "INVALID", "short": f"INVALID: too few queries ({needed} needed)", "reason": why, **entry}


RULE = "bench's rule adapted from LoadGen: early stopping at p99, 99% confidence; LoadGen's 600 s minimum waived"


def merge_server(entries: list[dict], samples_ms: list[float], bound_ms: float | None) -> dict:
    """The merged row's `server`: the rounds' figures side by side, validity judged on every query of every round."""
    last = entries[-1]
    queries = sum(e["queries"] for e in entries)
    served = sum(e["served"] for e in entries)
    unserved = [math.inf] * (queries - served)
    return {
        **last,
        "seed": [e.get("seed") for e in entries],
        "queries": queries,
        "served": served,
        "achieved_per_s": statistics.median(e["achieved_per_s"] for e in entries),
        "latency_ms": [p for e in entries for p in e.get("latency_ms") or []],
        "pooled_latency_ms": percentile_summary(samples_ms + unserved),
        "dispatch_delay_ms": [e.get("dispatch_delay_ms") for e in entries],
        "service_ms": [e.get("service_ms") for e in entries],
        "queue_depth": [d for e in entries for d in e.get("queue_depth") or []],
        "max_queue_depth": max((max(d, default=0) for e in entries for d in e.get("queue_depth") or []), default=0),
        "steal_shares": [s for e in entries for s in e.get("steal_shares") or []],
        "records": [r for e in entries for r in e.get("records") or []],
        "validity": validity(samples_ms, queries, bound_ms),
        **({"search": merge_searches([e["search"] for e in entries])} if all(e.get("search") for e in entries) else {}),
    }


def merge_searches(searches: list[dict]) -> dict:
    """A rate search over rounds: each round's, and the highest rate every round showed VALID."""
    if len(searches) == 1:
        return searches[0]
    rates = [s.get("max_rate") for s in searches]
    return {**searches[-1], "rounds": searches, "max_rate": None if None in rates else min(rates)}


def percentile_summary(values: list[float]) -> dict | None:
    """p50, p90, p99 and p99.9 (nearest rank); None for one that falls on an unserved query (math.inf)."""
    from bench.measure.stats import percentiles

    found = percentiles(sorted(values))
    return {k: round(v, 4) if math.isfinite(v) else None for k, v in found.items()} if found else None


def pooled(row: dict, name: str) -> float | None:
    return ((row.get("server") or {}).get("pooled_latency_ms") or {}).get(name)
