"""`bench tune`: the configuration that serves the most queries a second within a p99 budget, without searching
every configuration's rate.

The candidates of a shape (model, task, sequence length, batch) are the suite's server cases with a rate search
(`max_rate_under`): backends × precisions × splits of the CPUs. One process round holds them all:

1. Every candidate's streams are prepared (and paused). One stream then calls alone for a short block
   (BOUND_SECONDS, at least BOUND_CALLS calls): its fastest call gives the candidate an *upper bound*, since no split
   serves more than streams × 1000 / that call's ms queries a second. (The warm-up calls do not: a few calls after
   the first ran up to 1.6× slower than the same backend's calls under load on an AMX Xeon.)
2. In order of that bound, highest first, the first candidate gets a rate search (bench.run.server) that starts at
   the rate a queueing model gives its streams and fastest call (`first_guess`), and moves in steps of
   (1 + precision): near the answer, two or three probes bracket it.
   Its highest VALID rate is the best so far.
3. Each next candidate is **pruned** when its bound is under the best so far: it cannot serve that rate. When its
   bound is under the best × (1 + precision), it cannot beat the best by more than the search's precision, and costs
   no probe either (CLOSE). Otherwise it is **challenged**: one probe at the best × (1 + precision). VALID, it becomes
   the best and its search goes on from there; not VALID, it is CLOSE too. Which of the close ones is ahead, no probe
   of one at a time can say on a drifting machine: the duel asks the closest.
4. A candidate whose outputs fail the accuracy gate is never the best (each is checked before the next is tried).
5. The **duel**: the winner and the runner-up, both still running, serve one probe's length of queries each at the
   winner's rate, cut in `bench tune --duel-pairs` segments (8) of seeded schedules; the two serve each segment by
   turns, the first alternating. The ratio of their p99s, segment by segment, cancels the machine's drift that
   separates two searches minutes apart, and short segments cancel more of it than whole probes: the winner is *ahead*
   when the interval of the runner-up's p99 over its own lies above 1, *tied* when it holds 1, and *behind* when it
   lies below (the rates' ranking and the paired test disagree; the table says so). It counts two trials: one probe's
   length at one rate for each side, judged VALID or not over its segments together.

`--objective latency` or `memory` with `--rate R` asks another question: of the configurations that serve R queries
a second within the budget, which has the lowest p99, or the least resident memory (the streams' RSS once prepared)?
A candidate whose bound is under R is pruned; every other one serves the same seeded schedule at R once, and the
winner is the one VALID there, within the gate, lowest on the objective. A latency winner duels the next lowest.

`--users` asks what a client of fixed concurrency asks: the candidates are closed-loop cases whose users are searched
under the budget from each query's send (bench.run.users_search), ranked by their goodput at their most users VALID.
A candidate is pruned when its bound is under the lower end of the best goodput's 95% interval (by its count), not
ahead by more than the precision when under the best × (1 + precision), else searched from its own Little's-law
start; the duel runs the winner's users on both by turns and compares goodputs.

A *trial* is one probe: one configuration at one offered rate (or one users count). `--exhaustive` searches every candidate fully, as
`bench run` would, for the cost of the whole grid and the check that tuning picks the same winner. Each row keeps
its decision in `tune`; bench.results.tune says what won, what it cost and how sure it is.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time

from bench.job import Case
from bench.results.tune import CLOSE, duel_verdict
from bench.run.offline import Load
from bench.run.paired import schedule as paired_schedule
from bench.run.queueing import modelled_rate
from bench.run import server
from bench.run.server import (
    ServerRound, arrival_offsets, latencies_ms, probe_seconds, query_records, queries_per_call, round_entry, run_probe,
    search_rate,
)  # fmt: skip

SHAPE = ("model", "task", "seq_len", "batch_size", "padding_ratio")
RATE, LATENCY = "rate", "latency"
AT_RATE_RULE = "one probe at the asked rate, the same seeded schedule for every candidate"


def tuned_cases(cases: list[Case]) -> list[Case]:
    return [c for c in cases if (c.server or c.closed_loop) and c.search]


def shape_of(case: Case) -> tuple:
    """What the candidates serve: a dynamically batched case serves queries of one sample, as batch 1 does."""
    return tuple(1 if name == "batch_size" and case.batching else getattr(case, name) for name in SHAPE)


def schedule(cases: list[Case], done_rounds: dict[str, int], seed: int):
    """(round index, group, cases that need it): a group per shape, its candidates together."""

    def by_shape(found: list[Case]) -> list[list[Case]]:
        shapes: dict[tuple, list[Case]] = {}
        for case in found:
            shapes.setdefault(shape_of(case), []).append(case)
        return list(shapes.values())

    return paired_schedule(cases, done_rounds, seed, by_shape, "tune")


FIRST_SHARE = 0.9
"""With a TPOT bound alone, which no queue moves, the first search starts at this share of the upper bound."""


def first_guess(load: Load) -> float:
    """Where the first candidate's search starts: the modelled rate (`modelled_rate`) of its streams with their fastest
    call, within its upper bound; half the bound when the call alone exceeds the budget. A generation search's
    budget for the whole request is its TTFT bound plus the call (what follows the first token is part of a call);
    with a TPOT bound alone, at FIRST_SHARE of the bound."""
    case, bound = load.case, upper_bound(load)
    call_ms = max(load.fastest_ms or load.call_ms, 1e-3)
    search = case.search
    if search.get("p99_ms"):
        budget_ms = search["p99_ms"]
    elif search.get("ttft_ms"):
        budget_ms = search["ttft_ms"] + call_ms
    else:
        return round(bound * FIRST_SHARE, 3)
    modelled = modelled_rate(case.streams, call_ms, budget_ms)
    return round(min(bound, modelled * queries_per_call(case)) if modelled else bound / 2, 3)


BOUND_SECONDS = 0.25
BOUND_CALLS = 5


def upper_bound(load: Load) -> float:
    """Queries a second the streams could serve at most: each busy all the time with calls as fast as the fastest
    timed alone (the warm-up's median until then), each call a full batch where the case batches dynamically."""
    return load.case.streams * queries_per_call(load.case) * 1000.0 / max(load.fastest_ms or load.call_ms, 1e-3)


def time_fastest_call(load: Load) -> None:
    """A block of calls on the first stream alone, at least BOUND_CALLS and BOUND_SECONDS: its fastest call is
    `load.fastest_ms` (a stream that ends sets `load.failure`)."""
    from bench.run.resident import WorkerEnded

    calls = max(BOUND_CALLS, math.ceil(BOUND_SECONDS * 1000 / max(load.call_ms, 1e-3)))
    try:
        samples_ns = load.streams[0].block(calls, 1)["samples_ns"]
    except WorkerEnded as exc:
        load.failure = exc
        return
    load.fastest_ms = min(samples_ns) / 1e6 if samples_ns else None


@dataclasses.dataclass
class Best:
    case_id: str
    rate: float
    """The highest VALID rate; a users search's goodput at its most users VALID."""
    users: int | None = None
    floor: float | None = None
    """A users search's goodput's lower 95% bound (by its count): what prunes against it."""


@dataclasses.dataclass
class Tried:
    """A candidate as decided: its streams still running until every candidate is (the duel may need them)."""

    load: Load
    order: int
    decision: str
    found: dict | None
    figures: object
    seconds: float
    passed: bool | None
    """The accuracy gate, checked once decided (None: pruned, or a stream ended)."""

    @property
    def rate(self) -> float | None:
        """The highest VALID rate, or a users search's goodput at its most users VALID: what ranks candidates."""
        found = self.found or {}
        return found.get("goodput_per_s") if "max_users" in found else found.get("max_rate")


class TuneRound(ServerRound):
    """One shape's candidates tuned in one round (this module's docstring); `exhaustive` searches each fully."""

    SALT = "tune"
    exhaustive = False

    def measure(self, startable: list) -> None:
        supports = {case.case_id: support for case, support, _ in startable}
        loads: list[Load] = []

        def finish(load: Load, figures) -> dict:
            self.finish_with(load, supports, figures)
            return self.rows[load.case.case_id]

        with self.unfinished_ended(loads):
            for case, _, (env, job, layout) in startable:
                started = time.monotonic()
                load = self.prepare(case, env, job, layout)
                if load is not None:
                    loads.append(load)
                    time_fastest_call(load)
                    load.prepare_s = time.monotonic() - started
            self.tune(loads, finish)

    def tune(self, loads: list[Load], finish) -> None:
        """The candidates tried in the order of their upper bound, then the winner's duel with the runner-up (this
        module's docstring); `finish(load, figures)` ends a candidate's streams and gives its row, which gets the
        decision in `tune`."""
        if self.objective != RATE:
            return self.tune_at_rate(loads, finish)
        best: Best | None = None
        tried: list[Tried] = []
        for order, load in enumerate(sorted(loads, key=upper_bound, reverse=True)):
            started = time.monotonic()
            decision, found, figures = self.decide(load, best)
            checked = not decision.startswith("pruned") and load.failure is None
            entry = Tried(load, order, decision, found, figures, 0.0, load.accuracy_passed() if checked else None)
            entry.seconds = time.monotonic() - started
            leads = decision in ("searched", "beat the best")
            if entry.passed and leads and entry.rate is not None and (best is None or entry.rate > best.rate):
                best = Best(load.case.case_id, entry.rate, (found or {}).get("max_users"),
                            ((found or {}).get("goodput_interval") or [None])[0])
            if leads and entry.passed is False:
                entry.decision += ", but fails the accuracy gate: never the best"
            tried.append(entry)
            self.say(f"    tune: {load.case.case_id}: {entry.decision} ({len((found or {}).get('probes') or [])} probes)"
                     + (f", best so far {best.rate:g}/s" if best else ""))  # fmt: skip
        duel = self.duel(tried, best) if best and self.runner.duel_pairs else None
        self.finish_all(tried, best, duel, finish)

    def finish_all(self, tried: list[Tried], best: Best | None, duel: dict | None, finish) -> None:
        """Every candidate's streams ended and its row given its decision in `tune` (the winner's the duel too)."""
        for entry in tried:
            row = finish(entry.load, entry.figures)
            row["tune"] = {
                "order": entry.order, "upper_bound_per_s": round(upper_bound(entry.load), 3),
                "decision": entry.decision, "trials": len((entry.found or {}).get("probes") or []),
                "fastest_call_ms": round(entry.load.fastest_ms, 4) if entry.load.fastest_ms else None,
                "prepare_s": round(getattr(entry.load, "prepare_s", 0.0), 3), "probe_s": round(entry.seconds, 3),
                "exhaustive": self.exhaustive, "objective": self.objective,
                "rss_mb": round(getattr(entry.load, "rss_mb", 0.0) or 0.0, 1),
                **({"rate": self.runner.tune_rate} if self.objective != RATE else {}),
            }  # fmt: skip
            if duel and best and entry.load.case.case_id == best.case_id:
                row["tune"]["duel"] = duel

    @property
    def objective(self) -> str:
        return getattr(self.runner, "tune_objective", None) or RATE

    def tune_at_rate(self, loads: list[Load], finish) -> None:
        """--objective latency or memory at the asked rate (this module's docstring): each candidate whose bound
        reaches the rate serves the same seeded schedule at it once; the winner is the one VALID there within the gate
        with the lowest p99 (latency) or the least resident memory (memory), and a latency winner duels the next."""
        rate = self.runner.tune_rate
        tried: list[Tried] = []
        for order, load in enumerate(sorted(loads, key=upper_bound, reverse=True)):
            started = time.monotonic()
            decision, found, figures = self.probe_at(load, rate)
            checked = found is not None and load.failure is None
            entry = Tried(load, order, decision, found, figures, 0.0, load.accuracy_passed() if checked else None)
            entry.seconds = time.monotonic() - started
            if entry.passed is False:
                entry.decision += ", but fails the accuracy gate: never the best"
            tried.append(entry)
            self.say(f"    tune: {load.case.case_id}: {entry.decision}")
        ranked = sorted((t for t in tried if t.passed and t.rate is not None), key=self.at_rate_key)
        best = Best(ranked[0].load.case.case_id, rate) if ranked else None
        duel = None
        if best and self.objective == LATENCY and self.runner.duel_pairs and len(ranked) > 1:
            duel = self.duel(tried, best, ranked[1])
        self.finish_all(tried, best, duel, finish)

    def at_rate_key(self, entry: Tried) -> tuple:
        """bench.results.tune's order, on a candidate before it has a row."""
        from bench.results.tune import objective_key

        p99 = (((entry.found or {}).get("probes") or [{}])[-1].get("latency_ms") or {}).get("p99")
        return objective_key(p99, getattr(entry.load, "rss_mb", None), self.objective)

    def probe_at(self, load: Load, rate: float):
        """(decision, what the probe found or None, what finish_with adds to the row or None) at the asked rate."""
        case = load.case
        if not self.exhaustive and upper_bound(load) < rate:
            return f"pruned: at most {upper_bound(load):.3g}/s by its fastest call, under the {rate:g}/s asked", None, None
        found = {"p99_ms": case.search["p99_ms"], "max_rate": None, "lowest_failing_rate": None, "probes": [],
                 "rule": AT_RATE_RULE}  # fmt: skip
        counter = self.runner.job_dir(case) / "queries.counter"
        probed = run_probe(load, case, rate, f"{self.runner.order_seed}:{self.SALT}:{self.index}:at-rate", counter)
        if probed is None:
            found["stopped"] = "a stream ended"
            return "a stream ended", found, None
        record, shown = probed
        found["probes"].append(record)
        valid = record["result"] == "VALID"
        found["max_rate" if valid else "lowest_failing_rate"] = rate
        found["stopped"] = f"{record['result']} at the asked {rate:g}/s: {record['reason']}"
        return f"{record['result']} at {rate:g}/s", found, self.figures(case, found, shown)

    def duel(self, tried: list[Tried], best: Best, runner_up: Tried | None = None) -> dict | None:
        """The winner against the runner-up (the other candidate within the gate with the highest VALID rate, else the
        highest bound) at the winner's rate: each serves one probe's length of queries in all, cut in `duel_pairs`
        segments of their own seeded schedules, and the two serve each segment by turns. The runner-up's p99 over the
        winner's, segment by segment, with a t interval of their log ratios; each side judged VALID or not over its
        segments together. The p99 is the first figure the search bounds: the latency from the scheduled time, else
        (a generation search) the TTFT, else the TPOT."""
        from bench.measure.stats import percentile_summary
        from bench.results.server import BOUNDS, bounded_figures, judge, search_bounds

        winner = next(t for t in tried if t.load.case.case_id == best.case_id)
        others = [t for t in tried if t is not winner and t.passed and t.load.failure is None]
        if not others:
            return None
        other = runner_up or max(others, key=lambda t: (t.rate or 0.0, upper_bound(t.load)))
        case, started = winner.load.case, time.monotonic()
        if case.closed_loop:
            from bench.run import users_search

            entry = users_search.duel(winner.load, other.load, best.users, self.runner.duel_pairs, self.users_state)
            entry["seconds"] = round(time.monotonic() - started, 3)
            return entry
        bounds = search_bounds(case.search)
        compared = next(iter(bounds))
        seed_key = f"{self.runner.order_seed}:{self.SALT}:{self.index}:duel"
        count = self.runner.duel_pairs
        seconds = probe_seconds(case, best.rate) / count
        entry = {"against": other.load.case.case_id, "rate": best.rate, "segment_s": round(seconds, 3), "pairs": [],
                 "trials": 0,
                 "rule": "one probe's length of queries a side, cut in segments of seeded schedules that the two serve by"
                         " turns, the first alternating; p99 from the scheduled time; the interval a t interval of the"
                         " segments' log ratios"}  # fmt: skip
        if compared != "p99_ms":
            entry["figure"] = BOUNDS[compared]

        def p99(latencies: list[float], records: list[dict]) -> tuple[float | None, dict]:
            """The compared figure's p99 over these queries, and every bounded figure (for judging)."""
            figures = bounded_figures(bounds, latencies, records, case.new_tokens)
            values = latencies if compared == "p99_ms" else figures[compared]
            return (percentile_summary(values) or {}).get("p99"), figures

        pooled = {"winner": ([], []), "runner-up": ([], [])}
        for number in range(count):
            offsets = arrival_offsets(best.rate, case.arrivals, seconds, random.Random(f"{seed_key}:{number}"))
            pair = {"first": "winner" if number % 2 == 0 else "runner-up"}
            for side, contender in ((("winner", winner), ("runner-up", other))[:: 1 if number % 2 == 0 else -1]):
                counter = self.runner.job_dir(contender.load.case) / "queries.counter"
                served = server.serve(contender.load, offsets, counter)
                if served is None:
                    entry["stopped"] = f"a stream of the {side} ended"
                    break
                latencies, records = latencies_ms(offsets, served), query_records(offsets, served)
                pooled[side][0].extend(latencies)
                pooled[side][1].append(records)
                pair[side] = {"p99_ms": p99(latencies, [records])[0], "queries": len(offsets)}
            if "stopped" in entry:
                break
            entry["pairs"].append(pair)
        entry["sides"] = {}
        for side, (latencies, records) in pooled.items():
            if records:
                value, figures = p99(latencies, records)
                judged = judge(bounds, figures, len(latencies))
                entry["sides"][side] = {"p99_ms": value, "result": judged["result"], "reason": judged["reason"],
                                        "queries": len(latencies)}  # fmt: skip
        entry["trials"] = len(entry["sides"])  # each side: one probe's length at one rate
        entry["seconds"] = round(time.monotonic() - started, 3)
        logs = [math.log(p["runner-up"]["p99_ms"] / p["winner"]["p99_ms"]) for p in entry["pairs"]
                if p["winner"]["p99_ms"] and p["runner-up"]["p99_ms"]]  # fmt: skip
        if len(logs) < 2:
            pairs = entry["pairs"]
            if pairs and all(p["winner"]["p99_ms"] and p["runner-up"]["p99_ms"] is None for p in pairs):
                entry["verdict"], entry["why"] = "ahead", "the runner-up left queries unserved in every pair: the winner is ahead"
            else:
                entry["verdict"] = "too few pairs with both p99s served to compare"
            return entry
        return duel_verdict(entry, logs, better="lower")

    def say(self, text: str) -> None:
        """A line as each candidate is decided: a shape's round reports its rows only at its end."""
        say = getattr(self.runner, "say", None)
        if say is not None:
            say(text)

    def decide(self, load: Load, best: Best | None):
        """(decision, what the probes found or None, what finish_with adds to the row or None)."""
        case = load.case
        if case.closed_loop:
            return self.decide_users(load, best)
        seed_key = f"{self.runner.order_seed}:{self.SALT}:{self.index}:{case.case_id}"
        counter = self.runner.job_dir(case) / "queries.counter"
        precision = case.search["precision"]
        if self.exhaustive:
            found, shown = search_rate(load, case, seed_key, counter)
            return "searched", found, self.figures(case, found, shown)
        if best is None:
            found, shown = search_rate(load, case, seed_key, counter, start=first_guess(load), step=1 + precision)
            return "searched", found, self.figures(case, found, shown)
        if upper_bound(load) < best.rate:
            reason = f"pruned: at most {upper_bound(load):.3g}/s by its fastest call, under the best's {best.rate:g}/s"
            return reason, None, None
        challenge = round(best.rate * (1 + precision), 3)
        if upper_bound(load) < challenge:
            return (f"{CLOSE}: at most {upper_bound(load):.3g}/s by its fastest call, under the best's {best.rate:g}/s"
                    f" x {1 + precision:g}"), None, None  # fmt: skip
        found, shown = search_rate(load, case, seed_key, counter, start=challenge, challenge=True, step=1 + precision)
        if found.get("max_rate") is not None:
            return "beat the best", found, self.figures(case, found, shown)
        return f"{CLOSE}: not VALID at the best's {best.rate:g}/s x {1 + precision:g}", found, self.figures(case, found, shown)

    def users_state(self, load: Load):
        return self.runner.job_dir(load.case) / "users.state"

    def decide_users(self, load: Load, best: Best | None):
        """A closed-loop candidate (bench tune --users): pruned when its bound is under the lower 95% bound of the best
        goodput so far, not ahead by more than the precision when under the best × (1 + precision), else its users
        searched (from the best's users, where there is a best) and ranked by its goodput at its most users VALID."""
        from bench.run.users import users_figures
        from bench.run.users_search import search_users

        precision = load.case.search["precision"]
        bound = upper_bound(load)
        if best is not None and not self.exhaustive:
            floor = best.floor if best.floor is not None else best.rate
            if bound < floor:
                return (f"pruned: at most {bound:.3g}/s by its fastest call, under the best's goodput {best.rate:.4g}/s"
                        f" (at least {floor:.4g}/s, 95%)"), None, None  # fmt: skip
            if bound < best.rate * (1 + precision):
                return (f"{CLOSE}: at most {bound:.3g}/s by its fastest call, under the best's goodput {best.rate:.4g}/s"
                        f" x {1 + precision:g}"), None, None  # fmt: skip
        found, shown = search_users(load, self.users_state(load))
        goodput = found.get("goodput_per_s")
        if best is None or self.exhaustive:
            decision = "searched"
        elif goodput is not None and goodput > best.rate:
            decision = "beat the best"
        else:
            decision = f"searched: goodput not above the best's {best.rate:.4g}/s"
        return decision, found, users_figures(found, shown)

    def figures(self, case: Case, found: dict, shown):
        """What finish_with adds to the row: the shown probe's figures and the search, as a server row has them."""
        if shown is None:
            return None
        offsets, served, seed = shown

        def add(row: dict) -> list[float]:
            rate = found.get("max_rate") or found["probes"][-1]["rate"]
            row["server"] = round_entry(case, offsets, served, seed, rate)
            row["server"]["search"] = found
            return [v for v in latencies_ms(offsets, served) if math.isfinite(v)]

        return add


class ExhaustiveRound(TuneRound):
    """Every candidate of the shape searched fully: the whole grid's cost, and its winner to check tuning against."""

    exhaustive = True


def tuning_suite(suite, budget: dict[str, float], users: bool = False):
    """The suite as `bench tune` runs it: every case a server rate search under the `budget` (bench.cli.tune: p99_ms,
    or ttft_ms and tpot_ms; the suite's search precision and probe budget kept), in one round; with `users`, a
    closed-loop users search under it instead (bench.run.users_search)."""
    from bench.errors import BenchError
    from bench.plan.suite import GenerationSlo, Measure, RateSearch, UsersSearch

    bounded = [key for key in ("ttft_ms", "tpot_ms") if key in budget]
    for model in suite.models if bounded else []:
        if not (model.task == "text-generation" and (model.generate or suite.defaults.generate) is not None):
            raise BenchError(f"tune: --budget: {bounded[0]} bounds the tokens of text generation cases (generate), and"
                             f" model {model.name!r} generates nothing: give p99_ms=MS for it")  # fmt: skip
    levels = (suite.defaults, *suite.models, *suite.backends)
    given = next((lv.max_rate_under or lv.max_users_under for lv in levels if lv.max_rate_under or lv.max_users_under),
                 None)  # fmt: skip
    kept = given.model_dump(exclude={"p99_ms", "ttft_ms", "tpot_ms", "start"}) if given else {}
    cleared = {"scenario": None, "rates": None, "p99_ms": None, "max_rate_under": None, "max_users_under": None,
               "concurrency": None, **({"dynamic_batching": None} if users else {})}  # a closed loop batches nothing
    measure = (suite.defaults.measure or Measure()).model_copy(update={"rounds": 1})
    searched = ({"scenario": "closed-loop", "max_users_under": UsersSearch(**budget, **kept)} if users
                else {"scenario": "server", "max_rate_under": RateSearch(**budget, **kept)})
    if users and bounded and not any(lv.slo for lv in levels):  # goodput: the requests within the budget
        searched["slo"] = GenerationSlo(**{key: budget[key] for key in bounded})
    defaults = suite.defaults.model_copy(update={**cleared, **searched, "measure": measure})
    return suite.model_copy(update={
        "defaults": defaults,
        "models": [m.model_copy(update=cleared) for m in suite.models],
        "backends": [b.model_copy(update=cleared) for b in suite.backends],
    })  # fmt: skip
