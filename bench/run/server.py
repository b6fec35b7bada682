"""The server scenario (MLPerf's Server): queries arrive on a schedule, `rate` per second, and `streams` resident
workers serve them first come first served; each query's latency runs from the time it was *scheduled*, so a system
that falls behind cannot hide its queue (coordinated omission).

The schedule is drawn before anything is timed: seeded exponential gaps (Poisson arrivals) or equal ones, over
`measure.server_seconds`. Every stream gets it and a counter they share (a file under a lock): whenever a stream is
free it takes the next query and waits for the query's time, then calls. With identical streams that is exactly one
queue served by whichever stream frees first, and no load generator runs while they serve: the parent only waits
for their answers, so the whole machine is the system under test. A query still queued when the schedule's time has
run out twice over is left unserved, and counts as over any latency bound.

Each process round is one schedule with fresh streams (`measure.rounds` rounds); the row pools their queries
(bench.results.server judges them).

A *rate search* (`max_rate_under`, GuideLLM's way) probes rates with the same streams, each probe a schedule of its
own long enough to decide (at least DECIDING_QUERIES queries): from a start rate it doubles until a probe is not
VALID (halving instead while none is), then bisects between the highest VALID rate and the lowest that is not,
until they are `precision` apart or `max_probes` probes have run, and says which stopped it. A probe with too few
queries to know is *unresolved*, and counts as not VALID: the answer is the highest rate shown VALID.
"""

from __future__ import annotations

import math
import random
import time

from bench.job import Case
from bench.measure.stats import percentile_summary
from bench.run.offline import Load, OfflineRound
from bench.run.paired import schedule as paired_schedule

LOWEST_SHARE = 32
"""A search halving from its start rate gives up below this fraction of it."""
DECIDING_QUERIES = 600
"""A search probe lasts long enough for this many queries (early stopping needs 459 with none over the bound)..."""
LONGEST_PROBE_S = 60.0
"""... or this long (or `server_seconds`, when longer), whichever is shorter."""
START_AFTER_S = 0.05
"""The schedule starts this long after the streams are told (each must be resumed first)."""
CLOSE_MOVES = 3
"""A search with a `step` moves by it this many times the same way, then by its square each time (galloping)."""
PRECISION_SLACK = 0.002
"""Rates are rounded to 1/1000 per second: a bracket this much over the precision is within it."""
OVERRUN = 2.0
"""Queries are served until the schedule's length times this has passed; later ones are left unserved."""


def server_cases(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.server]


def schedule(cases: list[Case], done_rounds: dict[str, int], seed: int):
    """(round index, [case], [case]) per round still needed: each server case is a group of its own."""
    return paired_schedule(cases, done_rounds, seed, lambda found: [[c] for c in found], "server")


def arrival_offsets(rate: float, arrivals: str, seconds: float, rng: random.Random) -> list[int]:
    """The queries' times after the schedule's start, in ns: exponential gaps of mean 1/rate (Poisson arrivals), or
    equal gaps, over `seconds` (at least one query)."""
    if arrivals != "poisson":
        count = max(1, math.floor(seconds * rate + 1e-9))
        return [round((i + 1) / rate * 1e9) for i in range(count)]
    offsets, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t > seconds and offsets:
            return offsets
        offsets.append(round(t * 1e9))


def serve(load: Load, offsets: list[int], counter) -> dict | None:
    """Every stream serving the schedule at once; the queries served ({index: [start, end]}) and what the streams
    said, or None when a stream ended (load.failure)."""
    counter.write_bytes(bytes(8))
    seconds = offsets[-1] / 1e9
    start_ns = time.monotonic_ns() + round(START_AFTER_S * 1e9)
    command = {
        "serve": {
            "start_ns": start_ns,
            "offsets_ns": offsets,
            "deadline_ns": start_ns + round(seconds * OVERRUN * 1e9),
            "counter": str(counter),
            **batching_command(load.case),
        }
    }
    answers = load.ask_all(command)
    if answers is None:
        return None
    queries = {q[0]: (q[1], q[2]) for a in answers for q in a["queries"]}
    tokens = {q[0]: q[3] for a in answers for q in a["queries"] if len(q) > 3}  # a generation case's
    return {"start_ns": start_ns, "queries": queries, "tokens": tokens, "answers": answers}


def queries_per_call(case: Case) -> int:
    """A full call serves this many queries: the batch where the case batches dynamically, else one."""
    return case.batch_size if case.batching else 1


def batching_command(case: Case) -> dict:
    """What the streams need to batch dynamically (bench.worker.resident.serve_batches), or nothing."""
    if not case.batching:
        return {}
    return {"max_batch": case.batch_size, "max_wait_ns": round(case.batching["max_wait_ms"] * 1e6)}


def batching_entry(case: Case, served: dict) -> dict:
    """The row's record of dynamic batching: its settings and the queries each call carried."""
    if not case.batching:
        return {}
    sizes = [b for a in served["answers"] for b in a.get("batches") or []]
    return {"batching": {
        "max_batch": case.batch_size, "max_wait_ms": case.batching["max_wait_ms"],
        **padding_of(case),
        "calls": len(sizes), "mean_batch": round(sum(sizes) / len(sizes), 3) if sizes else None,
        "full_share": round(sum(b == case.batch_size for b in sizes) / len(sizes), 4) if sizes else None,
    }}  # fmt: skip


def padding_of(case: Case) -> dict:
    """What a batched call is padded to: the prepared batch, its longest text (a pipeline's), or nothing (a
    generator's prompts all have the case's length, and a call generates just the sequences gathered)."""
    if case.generating:
        return {"padded": False, "padded_to": None}
    return {"padded": True, "padded_to": "each call's longest text" if case.pipelined else "the batch size"}


def latencies_ms(offsets: list[int], served: dict) -> list[float]:
    """Each query's latency from its scheduled time, in schedule order; math.inf for a query never served."""
    start_ns, queries = served["start_ns"], served["queries"]
    return [(queries[i][1] - start_ns - o) / 1e6 if i in queries else math.inf for i, o in enumerate(offsets)]


def round_entry(case: Case, offsets: list[int], served: dict, seed_key: str, rate: float | None = None) -> dict:
    """The row's `server` entry for one round: latency percentiles from the scheduled time (None where they fall on
    unserved queries), the dispatch delay and the service time apart, the rate achieved and the queue over time."""
    start_ns, queries = served["start_ns"], served["queries"]
    delay, service = [], []
    for index, offset in enumerate(offsets):
        if index in queries:
            begin, end = queries[index]
            delay.append(max(0.0, (begin - start_ns - offset) / 1e6))
            service.append((end - begin) / 1e6)
    ends = [end for _, end in queries.values()]
    span_s = (max(ends) - start_ns) / 1e9 if ends else 0.0
    steal = [(a.get("interference") or {}).get("steal") or 0.0 for a in served["answers"]]
    return {
        "scenario": "server",
        "rate": case.rate if rate is None else rate,
        "arrivals": case.arrivals,
        "seed": seed_key,
        "streams": case.streams,
        "threads_per_stream": case.threads,
        "schedule_s": round(offsets[-1] / 1e9, 4),
        "queries": len(offsets),
        "served": len(queries),
        "achieved_per_s": round(len(queries) / span_s, 3) if span_s > 0 else 0.0,
        "latency_ms": [percentile_summary(latencies_ms(offsets, served))],
        "dispatch_delay_ms": percentile_summary(delay),
        "service_ms": percentile_summary(service),
        "queue_depth": [queue_depth(offsets, queries, start_ns)],
        "steal_shares": [[round(s, 4) for s in steal]],
        "records": [query_records(offsets, served)],
        **batching_entry(case, served),
        **generation_entry(case, offsets, served, span_s),
    }


def query_records(offsets: list[int], served: dict) -> dict:
    """Every query's scheduled, dispatch and completion time, in ms from the schedule's start (None: never served)."""
    start_ns, queries = served["start_ns"], served["queries"]

    def times(which: int) -> list[float | None]:
        return [round((queries[i][which] - start_ns) / 1e6, 3) if i in queries else None for i in range(len(offsets))]

    records = {"scheduled_ms": [round(o / 1e6, 3) for o in offsets], "dispatch_ms": times(0), "done_ms": times(1)}
    tokens = served.get("tokens")
    if tokens:
        records["first_token_ms"] = [round((tokens[i][0] - start_ns) / 1e6, 3) if i in tokens else None
                                     for i in range(len(offsets))]  # fmt: skip
    return records


def generation_entry(case: Case, offsets: list[int], served: dict, span_s: float) -> dict:
    """A generation case's TTFT, TPOT, tokens/s and goodput from the scheduled times (bench.results.generation_load)."""
    from bench.results import generation_load

    if not served.get("tokens"):
        return {}
    records = query_records(offsets, served)
    gaps = generation_load.token_gaps_ms(list(served["tokens"].values()))
    return {"generation": generation_load.entry(
        records["scheduled_ms"], records["first_token_ms"], records["done_ms"], gaps, case.new_tokens,
        1 if case.batching else case.batch_size, span_s, case.slo, "scheduled time",
    )}  # fmt: skip


QUEUE_STEP_S = 0.1


def queue_depth(offsets: list[int], queries: dict, start_ns: int) -> list[int]:
    """Queries arrived but not yet started, every QUEUE_STEP_S from the schedule's start until the last has started
    (or the schedule's length times OVERRUN, for queries never served)."""
    from bisect import bisect_right

    starts = sorted(begin - start_ns for begin, _ in queries.values())  # each at or after its query's time
    horizon = max(starts, default=0)
    horizon = max(horizon, offsets[-1] * OVERRUN if len(starts) < len(offsets) else 0)
    step = round(QUEUE_STEP_S * 1e9)
    arrived = sorted(offsets)
    return [bisect_right(arrived, t) - bisect_right(starts, t) for t in range(0, int(horizon) + step, step)]


class ServerRound(OfflineRound):
    """One process round of one server case: its streams prepared one after another, then one schedule served."""

    SALT = "server"

    @staticmethod
    def baseline_of(group: list[Case]) -> Case | None:
        return None

    def measure(self, startable: list) -> None:
        supports = {case.case_id: support for case, support, _ in startable}
        for case, _, (env, job, layout) in startable:
            load = self.prepare(case, env, job, layout)
            if load is None:
                continue
            with self.unfinished_ended([load]):
                figures = self.serve_case(load)
            self.finish_with(load, supports, figures)

    def serve_case(self, load: Load):
        """The case's schedule served (or its rate searched) by the prepared streams: what finish_with adds to its
        row, or None when the streams did not get to serve."""
        case = load.case
        seed_key = f"{self.runner.order_seed}:{self.SALT}:{self.index}:{case.case_id}"
        counter = self.runner.job_dir(case) / "queries.counter"
        found = None
        if case.search:
            found, shown = search_rate(load, case, seed_key, counter)
            offsets, served, seed_key = shown or (None, None, seed_key)
        else:
            seconds = case.measure.get("server_seconds", 10.0)
            offsets = arrival_offsets(case.rate, case.arrivals, seconds, random.Random(seed_key))
            served = serve(load, offsets, counter)
        if served is None or not offsets:
            return None

        def figures(row: dict) -> list[float]:
            shown_rate = (found.get("max_rate") or found["probes"][-1]["rate"]) if found else case.rate
            row["server"] = round_entry(case, offsets, served, seed_key, shown_rate)
            if found is not None:
                row["server"]["search"] = found
            return [v for v in latencies_ms(offsets, served) if math.isfinite(v)]

        return figures

    def finish_with(self, load: Load, supports, figures=None) -> None:
        """The case's row from its streams' outcomes; `figures(row)` adds the scenario's entry to a measured row and
        returns the latencies that are its samples (None: the streams did not get to serve)."""
        from bench.measure.stats import latency_summary, stability_warnings

        case = load.case
        outcome, speaking = load.end()
        row = self.row(case, outcome, None, load.layout, supports.get(case.case_id), speaking)
        if row["status"] == "ok" and figures is not None:
            spread = stability_warnings(outcome.result["latency_ms"], len(outcome.result["samples_ms"]),
                                        case.measure["min_iterations"])  # fmt: skip
            row["warnings"] = [w for w in row["warnings"] if w not in spread]  # queueing spreads latency: the load
            samples_ms = [round(v, 4) for v in figures(row)]
            row["samples_ms"] = samples_ms
            row["latency_ms"] = latency_summary(samples_ms) if samples_ms else row["latency_ms"]
            row["throughput"] = None
        self.rows[case.case_id] = row


def probe_seconds(case: Case, rate: float) -> float:
    """A search probe's schedule length: long enough to decide at `rate` (DECIDING_QUERIES), within LONGEST_PROBE_S."""
    return max(case.measure.get("server_seconds", 10.0), min(DECIDING_QUERIES / rate, LONGEST_PROBE_S))


def run_probe(load: Load, case: Case, rate: float, probe_seed: str, counter) -> tuple[dict, tuple] | None:
    """One probe of a rate search: a schedule at `rate` long enough to decide, served and judged; its record and the
    (offsets, served, seed) a row can show; None when a stream ended."""
    from bench.results.server import BOUNDS, bounded_figures, judge, queries_needed, search_bounds, too_few

    bounds = search_bounds(case.search)
    offsets = arrival_offsets(rate, case.arrivals, probe_seconds(case, rate), random.Random(probe_seed))
    served = serve(load, offsets, counter)
    if served is None:
        return None
    latencies = latencies_ms(offsets, served)
    figures = bounded_figures(bounds, latencies, [query_records(offsets, served)], case.new_tokens)
    judged = judge(bounds, figures, len(offsets))
    record = {
        "rate": rate, "result": "unresolved" if too_few(judged) else judged["result"], "reason": judged["reason"],
        "queries": len(offsets), "served": len(served["queries"]),
        "achieved_per_s": round(len(served["queries"]) / max(offsets[-1] / 1e9, 1e-9), 3),
        "latency_ms": percentile_summary(latencies),
        "service_ms": percentile_summary([(end - begin) / 1e6 for begin, end in served["queries"].values()]),
    }  # fmt: skip
    for key in [k for k in bounds if k != "p99_ms"]:  # a generation search's: over the queries served
        record[key] = percentile_summary(figures[key])
    if "bounds" in judged:
        record["bounds"] = {BOUNDS[key]: judged["bounds"][BOUNDS[key]]["result"] for key in bounds}
    if record["result"] == "unresolved":  # what a probe at this count over the bound would need to decide
        over = max([b["over_bound"] for b in judged.get("bounds", {}).values()] or [judged.get("over_bound", 0)])
        record["queries_needed"] = queries_needed(over)
    return record, (offsets, served, probe_seed)


def search_rate(load: Load, case: Case, seed_key: str, counter, start: float | None = None,
                challenge: bool = False, step: float | None = None) -> tuple[dict, tuple | None]:  # fmt: skip
    """A rate search with the prepared streams (this module's docstring): what it found (every probe included), and
    the (offsets, served, seed) of the probe the row shows: the highest VALID one, else the last. `start`: the first
    rate (default: the suite's, else half what the warm-up calls say the streams serve); `challenge`: stop at once
    when that first rate is not VALID (bench tune asks whether a configuration beats the best so far); `step`: for a
    start already close to the answer, move by this factor instead of doubling or halving, and by its square after
    CLOSE_MOVES moves the same way (bench tune starts from a measured bound)."""
    search = case.search
    bound = search.get("p99_ms")
    capacity = case.streams * queries_per_call(case) * 1000.0 / max(load.call_ms, 1e-3)
    rate = start or search.get("start") or max(0.1, round(capacity / 2, 1))
    seconds = case.measure.get("server_seconds", 10.0)
    probes: list[dict] = []
    best, last, low, high, stopped = None, None, None, None, None
    factor, moves = step or 2.0, 0
    while len(probes) < search["max_probes"]:
        probed = run_probe(load, case, rate, f"{seed_key}:{len(probes)}", counter)
        if probed is None:
            stopped = "a stream ended"
            break
        record, last = probed
        probes.append(record)
        valid = record["result"] == "VALID"
        service = record["service_ms"]
        if valid:
            low, best = rate, last
        else:
            high = rate if high is None else min(high, rate)
        if challenge and not probes[1:] and not valid:
            stopped = f"{record['result']} at {rate:g}/s, the rate it had to beat: {record['reason']}"
            break
        if bound and low is None and not valid and service and service["p99"] > bound:
            # a query's latency is at least its call's: no rate can bring p99 under the bound
            stopped = f"the calls alone take {service['p99']:.1f} ms at p99, over the {bound:g} ms bound: no rate is VALID"
            break
        tpot = (record.get("tpot_ms") or {}).get("p99")
        if search.get("tpot_ms") and low is None and (record.get("bounds") or {}).get("TPOT") == "INVALID" \
                and tpot and tpot > search["tpot_ms"]:  # fmt: skip
            # a request's time per token is its own call's pace: no queue, so no lower rate, changes it
            stopped = (f"the calls' own time per output token is {tpot:.1f} ms at p99, over the {search['tpot_ms']:g} ms"
                       " bound, and a lower rate does not change it: no rate is VALID")  # fmt: skip
            break
        if low is None and record["result"] == "unresolved" and DECIDING_QUERIES / rate > max(seconds, LONGEST_PROBE_S):
            stopped = (f"unresolved at {rate:g}/s: {record['queries']} queries in the longest probe allowed, and lower"
                       " rates would have fewer; a longer measure.server_seconds can decide them")  # fmt: skip
            break
        if step and (high is None or low is None):
            moves += 1
            factor = factor**2 if moves > CLOSE_MOVES else factor
        if high is None:
            rate = round(rate * factor, 3)
        elif low is None:
            if rate / factor < probes[0]["rate"] / LOWEST_SHARE:
                stopped = f"no rate down to 1/{LOWEST_SHARE} of the first was VALID"
                break
            rate = round(rate / factor, 3)
        elif (high - low) / low <= search["precision"] + PRECISION_SLACK:
            stopped = f"the highest VALID rate and the lowest not are within {search['precision']:.0%}"
            break
        else:
            rate = round((low + high) / 2, 3)
    else:
        stopped = f"{search['max_probes']} probes (max_probes) ran before the rates were within {search['precision']:.0%}"
    found = {
        "p99_ms": bound, **{k: search[k] for k in ("ttft_ms", "tpot_ms") if search.get(k)},
        "max_rate": low, "lowest_failing_rate": high, "stopped": stopped, "probes": probes,
        "rule": (f"steps of x{step:g} from a start near the answer (squared after {CLOSE_MOVES} the same way)" if step
                 else "doubling from the start rate") + ", then bisection (GuideLLM's search); an unresolved probe counts"
                " as not VALID",
    }  # fmt: skip
    if best is None and probes:
        found["why_none"] = f"no probe was VALID, down to {probes[-1]['rate']:g}/s: {probes[-1]['reason']}"
    return found, best or last
