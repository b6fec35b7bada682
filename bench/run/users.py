"""A closed loop's parts (bench.run.closed_loop, bench.run.users_search): `users` users served by a load's prepared
streams for a while, the row's `closed_loop` entry of such a run, and what a round adds to its row."""

from __future__ import annotations

import struct
import time

from bench.measure.stats import percentile_summary
from bench.run.offline import Load
from bench.run.server import START_AFTER_S


def run_users(load: Load, users: int, seconds: float, state) -> dict | None:
    """Every stream serving `users` users at once for `seconds`: each query's (user, sent, start, end) in the order
    sent, and what the streams said; None when a stream ended (load.failure)."""
    start_ns = time.monotonic_ns() + round(START_AFTER_S * 1e9)
    state.write_bytes(struct.pack(f"<{users}q", *[start_ns] * users))
    spec = {"users": users, "end_ns": start_ns + round(seconds * 1e9), "state": str(state)}
    answers = load.ask_all({"users": spec})
    if answers is None:
        return None
    found = sorted((q for a in answers for q in a["queries"]), key=lambda q: (q[1], q[0]))
    queries = [tuple(q[:4]) for q in found]
    tokens = [q[4] for q in found if len(q) > 4]  # a generation case's, in the queries' order
    return {"start_ns": start_ns, "queries": queries, "tokens": tokens, "answers": answers}


def send_latencies_ms(served: dict) -> list[float]:
    """Each query's latency from its send, in milliseconds, unrounded."""
    return [(end - sent) / 1e6 for _, sent, _, end in served["queries"]]


def served_span_s(served: dict) -> float:
    """From the run's start to its last answer, in seconds."""
    start_ns = served["start_ns"]
    return (max((end for *_, end in served["queries"]), default=start_ns) - start_ns) / 1e9


def round_entry(case, served: dict, seconds: float, users: int | None = None) -> dict:
    """The row's `closed_loop` entry for one round (this module's docstring); `users`: a users search's probe's, in
    place of the case's `concurrency`."""
    start_ns, queries = served["start_ns"], served["queries"]

    def ms(ns: int) -> float:
        return round((ns - start_ns) / 1e6, 3)

    latency, span_s = send_latencies_ms(served), served_span_s(served)
    steal = [(a.get("interference") or {}).get("steal") or 0.0 for a in served["answers"]]
    records = {
        "user": [q[0] for q in queries], "sent_ms": [ms(q[1]) for q in queries],
        "dispatch_ms": [ms(q[2]) for q in queries], "done_ms": [ms(q[3]) for q in queries],
    }  # fmt: skip
    tokens = served.get("tokens")
    generation = {}
    if tokens:
        from bench.results import generation_load

        records["first_token_ms"] = [ms(times[0]) for times in tokens]
        generation = {"generation": generation_load.entry(
            records["sent_ms"], records["first_token_ms"], records["done_ms"], generation_load.token_gaps_ms(tokens),
            case.new_tokens, case.batch_size, span_s, case.slo, "send",
        )}  # fmt: skip
    return {
        "scenario": "closed-loop",
        "concurrency": users or case.concurrency,
        "streams": case.streams,
        "threads_per_stream": case.threads,
        "seconds": seconds,
        "completed": len(queries),
        "completed_per_s": round(len(queries) / span_s, 3) if span_s > 0 else 0.0,
        "latency_ms": [percentile_summary(latency)],
        "mean_latency_ms": [round(sum(latency) / len(latency), 4) if latency else None],
        "wait_ms": [percentile_summary([(begin - sent) / 1e6 for _, sent, begin, _ in queries])],
        "service_ms": [percentile_summary([(end - begin) / 1e6 for *_, begin, end in queries])],
        "steal_shares": [[round(s, 4) for s in steal]],
        "records": [records],
        **generation,
    }


def users_figures(found: dict | None, entry: dict | None):
    """What finish_with adds to a closed-loop row: the `closed_loop` entry of the run shown (with the users search that
    found it), its queries' latencies from the send as the row's samples; None when nothing was served."""
    if entry is None or not entry["completed"]:
        return None

    def figures(row: dict) -> list[float]:
        row["closed_loop"] = {**entry, **({"search": found} if found is not None else {})}
        if found is not None:  # the users of the run shown, as a case of that many users has them
            row["concurrency"] = entry["concurrency"]
        records = entry["records"][0]
        return [done - sent for sent, done in zip(records["sent_ms"], records["done_ms"])]

    return figures
