"""A users search (`max_users_under`, GuideLLM's concurrency search): the most closed-loop users whose result is
VALID under the bounds, with the prepared streams of one closed-loop case (bench.run.closed_loop).

Each probe runs `users` users, each sending its next query the moment its last is answered, for long enough to
decide (about DECIDING_QUERIES queries, within LONGEST_PROBE_S or `measure.server_seconds`), and is judged by
bench's rule (bench.results.server) on the latency, or TTFT and TPOT, from each query's *send*. From a start (Little's
law: `streams` servers busy with calls of the fastest length keep a query's time under the budget up to
streams × budget / call users) it moves in steps of (1 + precision), squared after a few the same way (from a
suite's own `start`, it doubles, as GuideLLM does), until a probe is not VALID (down instead while none is), then bisects
between the most users shown VALID and the fewest not, until they are `precision` apart or one user apart, or
`max_probes` probes ran, and says which stopped it. A probe with too few queries to know is *unresolved* and counts
as not VALID; fewer users send no more queries a second, so a probe unresolved with none over the bound, before any
was VALID, ends the search.

What the search ranks by (bench tune) is the **goodput** at the most users VALID: the queries a second that met
every bound, over that probe, with a 95% interval from its count.
"""

from __future__ import annotations

import math

from bench.job import Case
from bench.measure.stats import percentile_summary
from bench.results.tune import duel_verdict
from bench.run.users import round_entry, run_users, send_latencies_ms, served_span_s
from bench.run.offline import Load
from bench.run.server import CLOSE_MOVES, DECIDING_QUERIES, LONGEST_PROBE_S

MOST_USERS = 1024
"""A search doubling its users stops here (a TPOT bound alone: no queue moves it, so no count of users fails it)."""
START_USERS = 4
"""GuideLLM's first concurrency, where no call has been timed."""


def modelled_users(case: Case, call_ms: float | None) -> int:
    """Little's law on a closed loop of `streams` servers busy with calls of `call_ms`: N users wait about
    (N / streams - 1) calls, so a query's time from its send stays under a p99 budget B up to streams × B / call
    users; a TTFT bound T, whose first token comes early in the call, up to streams × (T + call) / call."""
    search = case.search
    if not call_ms:
        return START_USERS
    if search.get("p99_ms"):
        budget = search["p99_ms"]
    elif search.get("ttft_ms"):
        budget = search["ttft_ms"] + call_ms
    else:
        return max(1, case.streams)
    return max(1, min(MOST_USERS, math.floor(case.streams * budget / call_ms)))


def probe_seconds(case: Case, users: int, call_ms: float) -> float:
    """Long enough for DECIDING_QUERIES queries at what the busy streams serve, within LONGEST_PROBE_S (or
    `server_seconds`, when longer)."""
    per_s = min(users, case.streams) * 1000.0 / max(call_ms, 1e-3)
    return max(case.measure.get("server_seconds", 10.0), min(DECIDING_QUERIES / per_s, LONGEST_PROBE_S))


def judged_probe(case: Case, served: dict, seconds: float, users: int) -> dict:
    """A closed-loop run judged under the case's bounds from each query's send: its record (users, result, reason,
    queries, completed and goodput a second, percentiles) and its `closed_loop` entry (`entry`)."""
    from bench.results.server import BOUNDS, bounded_figures, judge, queries_needed, search_bounds, too_few

    bounds = search_bounds(case.search)
    entry = round_entry(case, served, seconds, users)
    records = entry["records"][0]
    sent = {"scheduled_ms": records["sent_ms"], "done_ms": records["done_ms"],
            **({"first_token_ms": records["first_token_ms"]} if "first_token_ms" in records else {})}  # fmt: skip
    latencies, span_s = send_latencies_ms(served), served_span_s(served)
    figures = bounded_figures(bounds, latencies, [sent], case.new_tokens)
    judged = judge(bounds, figures, len(latencies))
    met = sum(all(figures[key][i] <= bound for key, bound in bounds.items()) for i in range(len(latencies)))
    record = {
        "users": users, "result": "unresolved" if too_few(judged) else judged["result"], "reason": judged["reason"],
        "queries": len(latencies), "seconds": round(seconds, 3), "completed_per_s": entry["completed_per_s"],
        "goodput_per_s": round(met / span_s, 3) if span_s else 0.0,
        "goodput_interval": [round(v / span_s, 3) for v in count_interval(met)] if span_s else [0.0, 0.0],
        "latency_ms": percentile_summary(latencies), "service_ms": entry["service_ms"][0],
    }  # fmt: skip
    for key in [k for k in bounds if k != "p99_ms"]:
        record[key] = percentile_summary(figures[key])
    if "bounds" in judged:
        record["bounds"] = {BOUNDS[key]: judged["bounds"][BOUNDS[key]]["result"] for key in bounds}
    if record["result"] == "unresolved":
        over = max([b["over_bound"] for b in judged.get("bounds", {}).values()] or [judged.get("over_bound", 0)])
        record["queries_needed"] = queries_needed(over)
    return {"record": record, "entry": entry, "figures": figures}


def count_interval(count: int) -> tuple[float, float]:
    """A 95% interval of the mean of a Poisson count seen as `count` (the exact chi-square one): how far a goodput
    measured over one probe can be from the rate it estimates, by counting alone. A closed loop counts more evenly
    than Poisson, so it is wide for that; the machine's drift between probes is not in it (docs/scenarios.md)."""
    from scipy.stats import chi2

    low = chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
    return low, chi2.ppf(0.975, 2 * count + 2) / 2


def run_probe(load: Load, users: int, state, seconds: float | None = None) -> dict | None:
    """One probe at `users` (judged_probe's answer), None when a stream ended."""
    case = load.case
    seconds = seconds or probe_seconds(case, users, load.fastest_ms or load.call_ms)
    served = run_users(load, users, seconds, state)
    if served is None:
        return None
    return judged_probe(case, served, seconds, users)


def search_users(load: Load, state, start: int | None = None) -> tuple[dict, dict | None]:
    """The search (this module's docstring): what it found, every probe included, and the `closed_loop` entry of the
    probe a row shows (the most users VALID, else the last). `start`: the first users (default: the suite's, else
    `modelled_users`)."""
    from bench.results.server import queries_needed

    case = load.case
    search = case.search
    users = start or search.get("start") or modelled_users(case, load.fastest_ms or load.call_ms)
    factor = 2.0 if search.get("start") and not start else 1 + search["precision"]
    probes: list[dict] = []
    low, high, best, last, stopped, moves = None, None, None, None, None, 0
    while len(probes) < search["max_probes"]:
        probed = run_probe(load, users, state)
        if probed is None:
            stopped = "a stream ended"
            break
        record, last = probed["record"], probed["entry"]
        probes.append(record)
        if record["result"] == "VALID":
            low, best = users, last
        else:
            high = users if high is None else min(high, users)
        if low is None and record["result"] == "unresolved" and record["queries_needed"] <= queries_needed(0):
            stopped = (f"unresolved at {users} users: {record['queries']} queries in the longest probe allowed, none"
                       " over the bound, and fewer users send no more; a longer measure.server_seconds can decide it")  # fmt: skip
            break
        if low is None and record["result"] != "VALID" and users == 1:
            stopped = f"{'unresolved' if record['result'] == 'unresolved' else 'not VALID'} with one user: {record['reason']}"
            break
        if high is None or low is None:
            moves += 1
            factor = factor**2 if moves > CLOSE_MOVES and factor < 2 else factor
        if high is None:
            if users >= MOST_USERS:
                stopped = f"VALID at {users} users, the most searched"
                break
            users = min(max(users + 1, math.floor(users * factor)), MOST_USERS)
        elif low is None:
            users = max(1, min(users - 1, math.ceil(users / factor)))
        elif high - low <= max(1.0, search["precision"] * low):
            stopped = (f"the most users VALID and the fewest not are {'one user' if high - low == 1 else 'within'}"
                       f" {'apart' if high - low == 1 else format(search['precision'], '.0%')}")  # fmt: skip
            break
        else:
            users = (low + high) // 2
    else:
        stopped = f"{search['max_probes']} probes (max_probes) ran before the users were within {search['precision']:.0%}"
    shown = next((p for p in probes if p["users"] == low and p["result"] == "VALID"), None)
    found = {
        **{k: search[k] for k in ("p99_ms", "ttft_ms", "tpot_ms") if search.get(k)},
        "max_users": low, "lowest_failing_users": high,
        "goodput_per_s": shown["goodput_per_s"] if shown else None,
        "goodput_interval": shown["goodput_interval"] if shown else None,
        "stopped": stopped, "probes": probes, "from": "send",
        "rule": ("doubling users from the suite's start" if factor == 2.0 else
                 f"steps of x{1 + search['precision']:g} from a start near the answer (squared after {CLOSE_MOVES} the"
                 " same way)") + ", then bisection (GuideLLM's concurrency search), each probe judged by bench's rule"
                " from each query's send; an unresolved probe counts as not VALID",
    }  # fmt: skip
    if best is None and probes:
        found["why_none"] = f"no probe was VALID, down to {probes[-1]['users']} users: {probes[-1]['reason']}"
    return found, best or last


def duel(winner: Load, other: Load, users: int, count: int, state_of) -> dict:
    """bench tune's duel of a users search (bench.run.tune): the winner and the runner-up run `users` users by turns,
    one probe's length in all a side cut in `count` segments, the first to run alternating; the runner-up's goodput
    over the winner's, segment by segment, with a t interval of their log ratios (below 1: the winner is ahead). Each
    side is judged VALID or not over its segments together. `state_of(load)`: its users' state file."""
    from bench.results.server import judge, search_bounds

    case = winner.case
    seconds = probe_seconds(case, users, winner.fastest_ms or winner.call_ms) / count
    entry = {"against": other.case.case_id, "users": users, "figure": "goodput", "segment_s": round(seconds, 3),
             "pairs": [], "trials": 0,
             "rule": "one probe's length of closed-loop users a side, cut in segments the two run by turns, the first"
                     " alternating; goodput (queries a second meeting every bound, from the send); the interval a t"
                     " interval of the segments' log ratios"}  # fmt: skip
    bounds = search_bounds(case.search)
    pooled: dict[str, dict[str, list[float]]] = {"winner": {}, "runner-up": {}}
    for number in range(count):
        pair = {"first": "winner" if number % 2 == 0 else "runner-up"}
        for side, load in (("winner", winner), ("runner-up", other))[:: 1 if number % 2 == 0 else -1]:
            probed = run_probe(load, users, state_of(load), seconds)
            if probed is None:
                entry["stopped"] = f"a stream of the {side} ended"
                break
            pair[side] = {key: probed["record"][key] for key in ("goodput_per_s", "completed_per_s", "queries")}
            for key, values in probed["figures"].items():
                pooled[side].setdefault(key, []).extend(values)
        if "stopped" in entry:
            break
        entry["pairs"].append(pair)
    entry["sides"] = {}
    for side, figures in pooled.items():
        if figures:
            judged = judge(bounds, figures, len(figures["p99_ms"]))
            entry["sides"][side] = {"result": judged["result"], "reason": judged["reason"],
                                    "queries": len(figures["p99_ms"])}  # fmt: skip
    entry["trials"] = len(entry["sides"])
    return paired_verdict(entry)


def paired_verdict(entry: dict) -> dict:
    """The duel's ratio, interval and verdict from its pairs' goodputs (a segment where either served none is left
    out; where only the runner-up's were none, every time, the winner is ahead)."""
    pairs = entry["pairs"]
    logs = [math.log(p["runner-up"]["goodput_per_s"] / p["winner"]["goodput_per_s"]) for p in pairs
            if p["winner"]["goodput_per_s"] and p["runner-up"]["goodput_per_s"]]  # fmt: skip
    if len(logs) < 2:
        if pairs and all(p["winner"]["goodput_per_s"] and not p["runner-up"]["goodput_per_s"] for p in pairs):
            entry["verdict"], entry["why"] = "ahead", "the runner-up's goodput was none in every pair: the winner is ahead"
        else:
            entry["verdict"] = "too few pairs with both goodputs above none to compare"
        return entry
    return duel_verdict(entry, logs, better="higher")
