"""Rounds: every case measured in R fresh workers, in passes over the whole plan, each pass in its own order.

Two runs of one case on this kind of machine can land on different levels (a 2-thread case at ~160 ms in one
process and ~200 ms in the next), and one process's samples only ever see one moment. So the runner makes R
passes over the cases, shuffled per pass with a seeded order, and a case's row merges its rounds: all samples
together, each round's median kept, and a verdict on whether the rounds agree.

The machine's speed itself can drift (on a virtual machine, levels some 30% apart, switching every few seconds),
so most cases' rounds land on different levels. That drift is shared by every case: the run's pooled spread
between rounds measures it, the row's interval holds it, and only a case whose rounds disagree beyond it is
unstable.

Each finished round is appended to `rounds.jsonl` in the run folder, so a killed run resumes mid-case; the
case's row goes to `results.jsonl` when its last round ends (or at its first failed round).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict

from bench.job import NOT_RUN_ON_PURPOSE
from bench.measure.generation import merge_figures
from bench.results import generation_load
from bench.results.closed_loop import merge_closed_loop
from bench.results.server import merge_server
from bench.run.offline import merge_load, steal_warnings
from bench.run.paired import merge_entries
from bench.measure.pipeline import merge_figures as merge_pipeline_figures
from bench.measure.intervals import pooled_log_spread, with_pooled_bound
from bench.measure.stats import ci_target, ci_target_warnings, latency_summary, stability_warnings, throughput_at

UNSTABLE_MIN_GAP = 0.05
"""Rounds disagree when their medians are further apart than this share of the lowest median..."""
SPREAD_ALPHA = 0.01
"""...and, when the run's pooled spread is known, their spread exceeds it at this level (F test)."""


def pass_order(cases: list, pass_index: int, seed: int) -> list:
    """The cases of one pass in a shuffled order, the same for the same seed and pass."""
    order = list(cases)
    random.Random(f"{seed}:{pass_index}").shuffle(order)
    return order


def passes(cases: list, done_rounds: dict[str, int], seed: int):
    """Yield (pass_index, case) for every round still to run, pass after pass; one pass keeps the plan's order."""
    most = max((c.measure.get("rounds", 1) for c in cases), default=0)
    for index in range(most):
        for case in pass_order(cases, index, seed) if most > 1 else cases:
            if index < case.measure.get("rounds", 1) and index >= done_rounds.get(case.case_id, 0):
                yield index, case


def rounds_by_case(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        grouped[record["case_id"]].append(record)
    return grouped


def round_summary(row: dict, index: int) -> dict:
    """What a merged row keeps of one round."""
    latency = row.get("latency_ms") or {}
    return {
        "round": index + 1,
        "median_ms": latency.get("median"),
        "iqr_ms": latency.get("iqr"),
        "n": len(row.get("samples_ms") or []),
        "wall_s": row.get("wall_s"),
        "prepare_ms": (row.get("timings_ms") or {}).get("prepare"),
        "interference": row.get("interference"),
    }


def pooled_spread(round_records: dict[str, list[dict]], leaving_out: str | None = None) -> dict | None:
    """The machine's spread between rounds, from the ok rounds of the run's single-stream cases other than
    `leaving_out` (an offline case's latency moves with its load too).

    `round_records` maps a case to its finished rounds as the runner keeps them ({"row": ...} each);
    None when they have fewer than MIN_POOLED_DF degrees of freedom.
    """
    return pooled_log_spread(
        [(record["row"].get("latency_ms") or {}).get("median") for record in records if ok(record["row"])]
        for case_id, records in round_records.items()
        if case_id != leaving_out and not any(record["row"].get("load") for record in records)
    )


def ok(row: dict) -> bool:
    return row.get("status") == "ok" and bool(row.get("latency_ms"))


def agreement(rounds: list[dict], pooled: dict | None = None) -> dict:
    """'stable' or 'unstable' across rounds, with the levels the medians landed on when they moved.

    The medians moved when they are further apart than the widest round's own interquartile range AND more than
    UNSTABLE_MIN_GAP of the lowest median: a gap the samples inside each round cannot explain, big enough to change
    a ranking. With the run's pooled spread between rounds (`pooled`, from pooled_spread) a case is unstable only
    when they moved AND their own variance of log medians is beyond the pooled one by the F test at
    1 - SPREAD_ALPHA: drift that every case of the run shows is the machine's, and widens the interval instead.
    Without it, moved is unstable.
    """
    medians = [r["median_ms"] for r in rounds if r.get("median_ms") is not None]
    if len(medians) < 2:
        return {"verdict": "single round", "medians_ms": medians}
    low, high = min(medians), max(medians)
    spread = max((r.get("iqr_ms") or 0.0) for r in rounds)
    gap = high - low
    moved = gap > spread and gap > UNSTABLE_MIN_GAP * low
    own = statistics.stdev(math.log(m) for m in medians) if low > 0 else None
    unstable = moved and (pooled is None or own is None or beyond(own, len(medians), pooled))
    return {
        "verdict": "unstable" if unstable else "stable",
        "medians_ms": medians,
        "gap": gap / low if low > 0 else None,
        "levels_ms": [low, high] if moved else None,
        "sd_log": own,
        "pooled": pooled,
    }


def beyond(sd_log: float, rounds: int, pooled: dict) -> bool:
    """The F test: a case's variance of log round medians (rounds - 1 df) over the pooled one is too large."""
    from scipy.stats import f

    if pooled["sd_log"] <= 0:
        return sd_log > 0
    return (sd_log / pooled["sd_log"]) ** 2 > float(f.ppf(1 - SPREAD_ALPHA, rounds - 1, pooled["df"]))


def unstable_warning(verdict: dict) -> str:
    """The row's warning: where its round medians landed, against what the run's other cases showed."""
    levels = " and ".join(f"{m:.4g} ms" for m in verdict["levels_ms"])
    pooled = verdict.get("pooled")
    if pooled is None:
        return (
            f"unstable across rounds: round medians landed at {levels}; too few rounds of other cases in this run"
            " to tell this from the machine's own drift, so its median is not a single figure"
        )
    return (
        f"unstable across rounds: round medians landed at {levels} (±{verdict['sd_log']:.1%} between rounds),"
        f" more than the run's other cases' rounds disagreed (±{pooled['sd_log']:.1%} over {pooled['cases']}"
        " cases); more than the machine's drift explains, so its median is not a single figure"
    )


def merge(rows: list[dict], pooled: dict | None = None) -> dict:
    """One row from a case's rounds (in round order): samples pooled, rounds recorded, the first failure wins.

    `pooled` is the run's spread between rounds (pooled_spread): the row's interval holds its bound, and the
    rounds are judged against it.
    """
    failed = next((r for r in rows if r.get("status") != "ok"), None)
    if failed is not None:
        merged = dict(failed)
        decided = merged.get("status") in NOT_RUN_ON_PURPOSE  # before any round: the reason is not a round's
        if not decided and (len(rows) > 1 or merged.get("measure", {}).get("rounds", 1) > 1):
            merged["reason"] = f"round {rows.index(failed) + 1}: {failed.get('reason')}"
        return merged
    merged = dict(rows[-1])
    samples = [s for r in rows for s in r["samples_ms"]]
    merged["samples_ms"] = samples
    merged["round_samples_ms"] = [r["samples_ms"] for r in rows]
    latency = latency_summary(samples, merged["round_samples_ms"] if len(rows) > 1 else None)
    merged["latency_ms"] = with_pooled_bound(latency, len(rows), pooled)
    merged["latency_ms"]["ci_target"] = ci_target(merged["latency_ms"], rows[0]["measure"].get("target_ci"))
    merged["throughput"] = throughput_at(merged["latency_ms"]["median"], rows[-1]) if rows[-1].get("throughput") else None
    if all(r.get("generation") for r in rows) and len(rows) > 1:
        entries = [r["generation"] for r in rows]
        pooled_calls = merge_figures(entries, rows[-1]["batch_size"])
        merged["generation"] = {"prompt_len": entries[-1].get("prompt_len"), **pooled_calls}
    if all(r.get("pipeline") for r in rows) and len(rows) > 1:
        merged["pipeline"] = merge_pipeline_figures([r["pipeline"] for r in rows])
    if all(r.get("paired") for r in rows):
        merged["paired"] = merge_entries([r["paired"] for r in rows])
    if all(r.get("load") for r in rows):
        merged["load"] = merge_load([r["load"] for r in rows])
    if all(r.get("server") for r in rows):
        entries = [r["server"] for r in rows]
        merged["server"] = {**merge_server(entries, samples, rows[-1].get("p99_ms")),
                            **generation_load.merged_entry(entries, "scheduled_ms")}  # fmt: skip
    if all(r.get("closed_loop") for r in rows):
        entries = [r["closed_loop"] for r in rows]
        merged["closed_loop"] = {**merge_closed_loop(entries, samples),
                                 **generation_load.merged_entry(entries, "sent_ms")}  # fmt: skip
    merged["timings_ms"] = rows[0].get("timings_ms")
    merged["provenance"] = rows[0].get("provenance")
    merged["wall_s"] = round(sum(r.get("wall_s") or 0.0 for r in rows), 3)
    merged["rounds"] = [round_summary(r, i) for i, r in enumerate(rows)]
    merged["rounds_agreement"] = agreement(merged["rounds"], pooled)
    dirty = next((r for r in rows if (r.get("interference") or {}).get("contaminated")), None)
    if dirty is not None:
        merged["interference"] = dirty["interference"]
    failing = next((r for r in rows if not (r.get("accuracy") or {}).get("passed", True)), None)
    if failing is not None:
        merged["accuracy"] = failing["accuracy"]
    merged["warnings"] = pooled_warnings(rows, merged["latency_ms"], len(samples))
    loaded = merged.get("load") or merged.get("server") or merged.get("closed_loop")
    if (merged.get("scenario") or "single-stream") != "single-stream":
        # an offline row's figure is its throughput, whose interval carries the spread between rounds, a server
        # row's its latency percentiles under a load; how calls spread under load is what the load does, not a sign
        # of a bad measurement (and a candidate bench tune pruned served no query to judge)
        judged_here = set(judged(merged["latency_ms"], len(samples), rows[0]["measure"]["min_iterations"] * len(rows)))
        merged["warnings"] = [w for w in merged["warnings"] if w not in judged_here] + steal_warnings(loaded or {})
        merged["rounds_agreement"] = {"verdict": "not judged", "why": f"{merged['scenario']}: judged under load"}
    elif merged["rounds_agreement"]["verdict"] == "unstable":
        merged["warnings"].append(unstable_warning(merged["rounds_agreement"]))
    return merged


def pooled_warnings(rows: list[dict], latency: dict, n_samples: int) -> list[str]:
    """Each round's own warnings once, with the stability warnings judged again on the pooled samples.

    The pooled samples' spread is not judged once there are several rounds: it holds the drift between rounds,
    which the merged interval carries (the rounds bootstrap and the run's pooled spread); a spread no interval
    explains is what `unstable across rounds` reports.
    """
    measure = rows[0]["measure"]
    per_round = {w for r in rows for w in judged(r["latency_ms"], len(r["samples_ms"]), measure["min_iterations"])}
    kept = dict.fromkeys(w for r in rows for w in r.get("warnings") or [] if w not in per_round)
    return list(kept) + judged(latency, n_samples, measure["min_iterations"] * len(rows), len(rows) < 2)


def judged(latency: dict, n_samples: int, min_iterations: int, judge_spread: bool = True) -> list[str]:
    """The warnings the worker derives from a latency summary alone."""
    return stability_warnings(latency, n_samples, min_iterations, judge_spread) + ci_target_warnings(
        latency.get("ci_target"), n_samples
    )
