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

from bench.measure.stats import percentile_summary

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

BOUNDS = {"p99_ms": "latency", "ttft_ms": "TTFT", "tpot_ms": "TPOT"}
"""What a rate search may bound at p99, as said: each query's latency from its scheduled time, and for a generation
case its time to first token (from the scheduled time) and its time per output token after the first."""


def search_bounds(search: dict | None) -> dict[str, float]:
    """A rate search's bounds, in BOUNDS' order."""
    return {key: search[key] for key in BOUNDS if (search or {}).get(key)}


def bounds_text(search: dict) -> str:
    """`p99 ≤ 100 ms`, or for a generation search `TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99`."""
    bounds = search_bounds(search)
    if list(bounds) == ["p99_ms"]:
        return f"p99 ≤ {bounds['p99_ms']:g} ms"
    return ", ".join(f"{BOUNDS[key]} ≤ {value:g} ms" for key, value in bounds.items()) + " at p99"


def judge(bounds: dict[str, float], served: dict[str, list[float]], queries: int) -> dict:
    """`validity` of each bounded figure (BOUNDS: its values over the queries served) and the result of all: VALID when
    every one is, INVALID when one is shown over its bound, else too few queries to know. One bound is `validity`'s
    answer itself; several are each judged as LoadGen judges TTFT and TPOT, and the answer has them in `bounds`."""
    if list(bounds) == ["p99_ms"]:
        return validity(served["p99_ms"], queries, bounds["p99_ms"])
    each = {BOUNDS[key]: validity(served[key], queries, bound) for key, bound in bounds.items()}
    shown = {label: v for label, v in each.items() if v["result"] == "INVALID" and not too_few(v)}
    if all(v["result"] == "VALID" for v in each.values()):
        result, short, parts = "VALID", "VALID", each
    elif shown:
        label, first = next(iter(shown.items()))
        result, short, parts = "INVALID", f"INVALID: {label} {first['short'].removeprefix('INVALID: ')}", shown
    else:
        needed = max(queries_needed(v["over_bound"]) for v in each.values() if too_few(v))
        result, short = "INVALID", f"INVALID: too few queries ({needed} needed)"
        parts = {label: v for label, v in each.items() if too_few(v)}
    reason = "; ".join(f"{label}: {v['reason']}" for label, v in parts.items())
    return {"result": result, "short": short, "reason": reason, "rule": RULE, "queries": queries,
            "bounds": {label: {k: v[k] for k in ("result", "bound_ms", "over_bound", "unserved")}
                       for label, v in each.items()}}  # fmt: skip


def too_few(judged: dict) -> bool:
    return judged["short"].startswith("INVALID: too few")


def bounded_figures(bounds: dict[str, float], latencies_ms: list[float], records: list[dict], new_tokens: int):
    """Each bounded figure's values over the queries served (math.inf for a latency never served is left out): the
    latency from the scheduled time, and from the records (bench.run.server.query_records) TTFT and TPOT."""
    from bench.results.generation_load import query_figures

    found = {"p99_ms": [v for v in latencies_ms if math.isfinite(v)]}
    if "ttft_ms" in bounds or "tpot_ms" in bounds:
        found["ttft_ms"], found["tpot_ms"] = [], []
        for record in records:
            ttft, tpot, _ = query_figures(
                record["scheduled_ms"], record.get("first_token_ms") or [None] * len(record["scheduled_ms"]),
                record["done_ms"], new_tokens,
            )  # fmt: skip
            found["ttft_ms"] += ttft
            found["tpot_ms"] += tpot
    return found


def merge_server(entries: list[dict], samples_ms: list[float], bound_ms: float | None) -> dict:
    """The merged row's `server`: the rounds' figures side by side, validity judged on every query of every round
    (a rate search's rows against the search's bounds)."""
    last = entries[-1]
    queries = sum(e["queries"] for e in entries)
    served = sum(e["served"] for e in entries)
    unserved = [math.inf] * (queries - served)
    records = [r for e in entries for r in e.get("records") or []]
    bounds = search_bounds(last.get("search"))
    if set(bounds) - {"p99_ms"}:
        new_tokens = (last.get("generation") or {}).get("new_tokens") or 0
        judged = judge(bounds, bounded_figures(bounds, samples_ms, records, new_tokens), queries)
    else:
        judged = validity(samples_ms, queries, bound_ms)
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
        "records": records,
        "validity": judged,
        **({"search": merge_searches([e["search"] for e in entries])} if all(e.get("search") for e in entries) else {}),
    }


def merge_searches(searches: list[dict]) -> dict:
    """A rate search over rounds: each round's, and the highest rate every round showed VALID."""
    if len(searches) == 1:
        return searches[0]
    rates = [s.get("max_rate") for s in searches]
    return {**searches[-1], "rounds": searches, "max_rate": None if None in rates else min(rates)}


def pooled(row: dict, name: str) -> float | None:
    return ((row.get("server") or {}).get("pooled_latency_ms") or {}).get(name)
