"""`bench tune`: the configuration that serves the most queries a second within a p99 budget, without searching
every configuration's rate.

The candidates of a shape (model, task, sequence length, batch) are the suite's server cases with a rate search
(`max_rate_under`): backends × precisions × splits of the CPUs. One process round holds them all:

1. Every candidate's streams are prepared (and paused). Their warm-up calls give each an *upper bound*: no split
   serves more than streams × 1000 / its call's ms queries a second.
2. In order of that bound, highest first, the first candidate gets a full rate search (bench.run.server). Its
   highest VALID rate is the best so far.
3. Each next candidate is **pruned** when its bound is under the best so far: it cannot serve that rate. Otherwise
   it is **challenged**: one probe at the best rate × (1 + precision). Not VALID there, it cannot beat the best by
   more than the search's precision; one more probe at the best rate itself says whether it is **tied** with it
   (VALID there too) or **behind**. VALID, it becomes the best and its search goes on from there. A candidate whose
   bound is under the challenge's rate only gets the probe at the best rate.
4. A candidate whose outputs fail the accuracy gate is never the best (each is checked before the next is tried).

A *trial* is one probe: one configuration at one offered rate. `--exhaustive` searches every candidate fully, as
`bench run` would, for the cost of the whole grid and the check that tuning picks the same winner. Each row keeps
its decision in `tune`; bench.results.tune says what won, what it cost and how sure it is.
"""

from __future__ import annotations

import dataclasses
import math
import time

from bench.job import Case
from bench.run.offline import Load
from bench.run.paired import schedule as paired_schedule
from bench.run.server import ServerRound, latencies_ms, round_entry, run_probe, search_rate

SHAPE = ("model", "task", "seq_len", "batch_size", "padding_ratio")


def tuned_cases(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.server and c.search]


def shape_of(case: Case) -> tuple:
    return tuple(getattr(case, name) for name in SHAPE)


def schedule(cases: list[Case], done_rounds: dict[str, int], seed: int):
    """(round index, group, cases that need it): a group per shape, its candidates together."""

    def by_shape(found: list[Case]) -> list[list[Case]]:
        shapes: dict[tuple, list[Case]] = {}
        for case in found:
            shapes.setdefault(shape_of(case), []).append(case)
        return list(shapes.values())

    return paired_schedule(cases, done_rounds, seed, by_shape, "tune")


TIE_RULE = "bench tune: probed at the best rate so far only, its upper bound being under the best rate × (1 + precision)"


def upper_bound(load: Load) -> float:
    """Queries a second the streams could serve at most: each busy all the time with calls as long as its warm-up's."""
    return load.case.streams * 1000.0 / max(load.call_ms, 1e-3)


@dataclasses.dataclass
class Best:
    case_id: str
    rate: float


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
                    load.prepare_s = time.monotonic() - started
                    loads.append(load)
            self.tune(loads, finish)

    def tune(self, loads: list[Load], finish) -> None:
        """The candidates tried in the order of their upper bound (this module's docstring); `finish(load, figures)`
        ends a candidate's streams and gives its row (its accuracy checked), which gets the decision in `tune`."""
        best: Best | None = None
        for order, load in enumerate(sorted(loads, key=upper_bound, reverse=True)):
            started = time.monotonic()
            decision, found, figures = self.decide(load, best)
            row = finish(load, figures)
            passed = row["status"] == "ok" and (row.get("accuracy") or {}).get("passed")
            rate = (found or {}).get("max_rate")
            leads = decision in ("searched", "beat the best")
            if passed and leads and rate is not None and (best is None or rate > best.rate):
                best = Best(load.case.case_id, rate)
            if leads and not passed:
                decision += ", but fails the accuracy gate: never the best"
            row["tune"] = {
                "order": order, "upper_bound_per_s": round(upper_bound(load), 3), "decision": decision,
                "trials": len((found or {}).get("probes") or []), "prepare_s": round(getattr(load, "prepare_s", 0.0), 3),
                "probe_s": round(time.monotonic() - started, 3), "exhaustive": self.exhaustive,
            }  # fmt: skip
            self.say(f"    tune: {load.case.case_id}: {decision} ({row['tune']['trials']} probes)"
                     + (f", best so far {best.rate:g}/s" if best else ""))

    def say(self, text: str) -> None:
        """A line as each candidate is decided: a shape's round reports its rows only at its end."""
        say = getattr(self.runner, "say", None)
        if say is not None:
            say(text)

    def decide(self, load: Load, best: Best | None):
        """(decision, what the probes found or None, what finish_with adds to the row or None)."""
        case = load.case
        seed_key = f"{self.runner.order_seed}:{self.SALT}:{self.index}:{case.case_id}"
        counter = self.runner.job_dir(case) / "queries.counter"
        if self.exhaustive or best is None:
            found, shown = search_rate(load, case, seed_key, counter)
            return "searched", found, self.figures(case, found, shown)
        if upper_bound(load) < best.rate:
            reason = f"pruned: at most {upper_bound(load):.3g}/s by its warm-up calls, under the best's {best.rate:g}/s"
            return reason, None, None
        challenge = round(best.rate * (1 + case.search["precision"]), 3)
        if upper_bound(load) >= challenge:
            found, shown = search_rate(load, case, seed_key, counter, start=challenge, challenge=True)
            if found.get("max_rate") is not None:
                return "beat the best", found, self.figures(case, found, shown)
        else:  # it cannot serve the challenge's rate: only whether it ties
            found = {"p99_ms": case.search["p99_ms"], "max_rate": None, "lowest_failing_rate": None, "probes": [],
                     "rule": TIE_RULE}  # fmt: skip
            shown = None
        probed = run_probe(load, case, best.rate, f"{seed_key}:tie", counter)
        if probed is None:
            found["stopped"] = "a stream ended"
            return "behind", found, self.figures(case, found, shown)
        record, shown = probed
        found["probes"].append(record)
        if record["result"] == "VALID":
            found["max_rate"] = best.rate
            found["stopped"] = f"VALID at the best's {best.rate:g}/s, and not shown VALID at {challenge:g}/s"
            return "tied", found, self.figures(case, found, shown)
        found["lowest_failing_rate"] = best.rate
        found["stopped"] = f"not VALID at the best's {best.rate:g}/s: {record['reason']}"
        return "behind", found, self.figures(case, found, shown)

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


def tuning_suite(suite, budget_ms: float):
    """The suite as `bench tune` runs it: every case a server rate search under p99 `budget_ms` (the suite's search
    precision and probe budget kept), in one round."""
    from bench.plan.suite import Measure, RateSearch

    given = next((lv.max_rate_under for lv in (suite.defaults, *suite.models, *suite.backends) if lv.max_rate_under), None)
    search = RateSearch(p99_ms=budget_ms, **(given.model_dump(exclude={"p99_ms", "start"}) if given else {}))
    cleared = {"scenario": None, "rates": None, "p99_ms": None, "max_rate_under": None, "concurrency": None}
    measure = (suite.defaults.measure or Measure()).model_copy(update={"rounds": 1})
    defaults = suite.defaults.model_copy(update={**cleared, "scenario": "server", "max_rate_under": search,
                                                 "measure": measure})  # fmt: skip
    return suite.model_copy(update={
        "defaults": defaults,
        "models": [m.model_copy(update=cleared) for m in suite.models],
        "backends": [b.model_copy(update=cleared) for b in suite.backends],
    })  # fmt: skip
