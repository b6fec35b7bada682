"""The closed-loop scenario (vLLM's `bench serve --max-concurrency`, GuideLLM's concurrent streams): `concurrency`
users, each sending its next query the moment its last is answered, served first come first served by `streams`
resident workers (bench.worker.resident.serve_users).

Nobody keeps a schedule here: the load adapts to the system, a slower system being offered fewer queries, so its
latency runs from each query's *send* and its figures are never put beside the server scenario's, whose latency runs
from a schedule the system cannot slow down. Each process round starts every user at once and runs for
`measure.server_seconds`; a query sent after that is not taken. The row's `closed_loop` entry holds the queries
completed per second, the latency from the send, the wait in the queue and the calls apart, and every query's times
(bench.results.closed_loop merges rounds).
"""

from __future__ import annotations

import struct
import time

from bench.measure.stats import percentile_summary
from bench.run.offline import Load
from bench.run.paired import schedule as paired_schedule
from bench.run.server import START_AFTER_S, ServerRound


def closed_loop_cases(cases: list) -> list:
    return [c for c in cases if c.closed_loop]


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


def round_entry(case, served: dict, seconds: float) -> dict:
    """The row's `closed_loop` entry for one round (this module's docstring)."""
    start_ns, queries = served["start_ns"], served["queries"]

    def ms(ns: int) -> float:
        return round((ns - start_ns) / 1e6, 3)

    latency = [(end - sent) / 1e6 for _, sent, _, end in queries]
    span_s = (max((end for *_, end in queries), default=start_ns) - start_ns) / 1e9
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
        "concurrency": case.concurrency,
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


class ClosedLoopRound(ServerRound):
    """One process round of one closed-loop case: its streams prepared one after another, then its users run."""

    SALT = "closed-loop"

    def serve_case(self, load: Load):
        case = load.case
        seconds = case.measure.get("server_seconds", 10.0)
        served = run_users(load, case.concurrency, seconds, self.runner.job_dir(case) / "users.state")
        if served is None or not served["queries"]:
            return None

        def figures(row: dict) -> list[float]:
            row["closed_loop"] = round_entry(case, served, seconds)
            return [(end - sent) / 1e6 for _, sent, _, end in served["queries"]]

        return figures


def schedule(cases: list, done_rounds: dict[str, int], seed: int):
    """(round index, [case], [case]) per round still needed: each closed-loop case is a group of its own."""
    return paired_schedule(cases, done_rounds, seed, lambda found: [[c] for c in found], "closed-loop")
