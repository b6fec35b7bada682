"""Shards: a deterministic, balanced share of a suite's cases, so N machines can each run one share.

Every shard computes the same partition on its own. The cases of one shape (model, task, sequence length, batch,
threads, padding: those compared with one baseline) stay together, so every speedup is measured on one machine.
Shapes are sorted by expected cost (most expensive first, ties by their first case_id) and each goes to the
shard with the least cost so far (ties to the lowest index): greedy longest-processing-time. Costs are the `wall_s` of each case in an earlier run folder when one is given;
otherwise, and for cases that run does not have, an estimate from the case alone (see `estimate`), scaled to
seconds by the known cases when there are some. The estimate reads nothing that could differ between machines.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.job import Case
from bench.plan.model_sources import CONFIGS_DIR
from bench.results.compare import SHAPE_KEYS
from bench.results.folder import RunDir, latest_rows

METHOD = "lpt-by-shape"
DEFAULT_LAYERS = 12
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
COUNT_VARIABLE = "BENCH_SHARD_COUNT"
"""The shard count for Kubernetes Indexed Jobs (JOB_COMPLETION_INDEX gives the index only)."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str
    """Where the index came from: --shard, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX."""

    @property
    def tag(self) -> str:
        return f"shard{self.index}of{self.count}"


def parse_shard(text: str, environ=None) -> Shard:
    """`K/N` (0 <= K < N), or `auto/N`: the index from the environment, N shards."""
    index, sep, count = text.partition("/")
    if not sep or not count.isdigit() or int(count) < 1 or not (index.isdigit() or index == "auto"):
        raise BenchError(f"--shard: expected K/N with 0 <= K < N (or auto/N), got {text!r}")
    if index == "auto":
        found = from_environment(environ, count=int(count))
        if found is None:
            raise BenchError(f"--shard {text}: expected SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, got neither")
        if found.count != int(count):
            raise BenchError(f"--shard {text}: the Slurm array has {found.count} tasks, not {count}")
        return found
    if int(index) >= int(count):
        raise BenchError(f"--shard: expected K/N with 0 <= K < N, got {text!r}")
    return Shard(int(index), int(count), "--shard")


def requested(text: str | None, costs_run=None, environ=None) -> Shard | None:
    """The shard `bench run` was asked for: --shard, else the environment's; None for every case."""
    shard = parse_shard(text, environ) if text else from_environment(environ)
    if costs_run and shard is None:
        raise BenchError("--costs: expected it with a shard (it balances shards), got no --shard and no array task")
    return shard


def from_environment(environ=None, count: int | None = None) -> Shard | None:
    """The shard of a Slurm array task or a Kubernetes Indexed Job's pod; None outside both."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        return slurm_shard(env)
    if "JOB_COMPLETION_INDEX" in env:
        index = _integer(env, "JOB_COMPLETION_INDEX")
        if count is None:
            if COUNT_VARIABLE not in env:
                raise BenchError(
                    f"JOB_COMPLETION_INDEX={index} is set but the shard count is not: give --shard auto/N"
                    f" or set {COUNT_VARIABLE} (or --shard 0/1 to run every case)"
                )
            count = _integer(env, COUNT_VARIABLE)
        if not 0 <= index < count:
            raise BenchError(f"JOB_COMPLETION_INDEX: expected an index from 0 to {count - 1}, got {index}")
        return Shard(index, count, "JOB_COMPLETION_INDEX")
    return None


def slurm_shard(env) -> Shard:
    """Task ids need not start at 0 or be consecutive (--array=1-7:2): the index is the task's rank in the array."""
    task, count = _integer(env, "SLURM_ARRAY_TASK_ID"), _integer(env, "SLURM_ARRAY_TASK_COUNT")
    low = _integer(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
    step = _integer(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    index = (task - low) // max(step, 1)
    if not 0 <= index < count:
        raise BenchError(
            f"SLURM_ARRAY_TASK_ID: expected a task of an array of {count} (from {low}, step {step}), got {task}"
        )
    return Shard(index, count, "SLURM_ARRAY_TASK_ID")


def _integer(env, name: str) -> int:
    value = str(env[name]).strip()
    if not value.isdigit():
        raise BenchError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def layers(case: Case) -> int:
    """Layers of the case's model, from its config overrides or a shipped config; DEFAULT_LAYERS otherwise."""
    entry = case.model_entry
    sources = [entry.get("config_overrides") or {}]
    shipped = CONFIGS_DIR / str(entry.get("config")) / "config.json"
    if entry.get("config") and shipped.is_file():
        sources.append(json.loads(shipped.read_text()))
    for source in sources:
        for key in LAYER_KEYS:
            if isinstance(source.get(key), int) and source[key] > 0:
                return source[key]
    return DEFAULT_LAYERS


def estimate(case: Case) -> float:
    """Tokens × layers per thread, times rounds: a relative cost, not seconds."""
    rounds = case.measure.get("rounds", 1)
    return rounds * case.seq_len * case.batch_size * layers(case) / case.threads


def known_costs(run_path) -> dict[str, float]:
    """The wall time of each case of an earlier run folder (its last row per case)."""
    run_dir = RunDir(Path(run_path))
    run_dir.read_manifest()
    rows = latest_rows(run_dir.rows())
    timed = [r for r in rows if isinstance(r.get("wall_s"), (int, float)) and r["wall_s"] > 0]
    return {r["case_id"]: float(r["wall_s"]) for r in timed}


def costs(cases: list[Case], known: dict[str, float] | None = None) -> dict[str, float]:
    """Each case's expected cost: its known wall time, else its estimate in the known cases' scale."""
    known = {k: v for k, v in (known or {}).items() if k in {c.case_id for c in cases}}
    estimates = {c.case_id: estimate(c) for c in cases}
    scale = statistics.median(known[k] / estimates[k] for k in known) if known else 1.0
    return {c.case_id: known.get(c.case_id, estimates[c.case_id] * scale) for c in cases}


def shapes(cases: list[Case]) -> list[list[Case]]:
    """The cases grouped by the shape a speedup is measured at; an offline case with the other splits of its group,
    whose windows are paired with each other (bench.run.offline)."""
    from bench.run.offline import group_key

    grouped: dict[tuple, list[Case]] = {}
    for case in cases:
        key = (case.scenario, *group_key(case)) if case.under_load else tuple(getattr(case, k) for k in SHAPE_KEYS)
        grouped.setdefault(key, []).append(case)
    return list(grouped.values())


def partition(cases: list[Case], count: int, cost: dict[str, float]) -> list[list[Case]]:
    """Greedy longest-processing-time over shapes: the same cases give the same shares, whatever their order."""
    shares: list[list[Case]] = [[] for _ in range(count)]
    loads = [0.0] * count
    units = [(sum(cost[c.case_id] for c in group), min(c.case_id for c in group), group) for group in shapes(cases)]
    for unit_cost, _, group in sorted(units, key=lambda unit: (-unit[0], unit[1])):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        shares[lightest] += group
        loads[lightest] += unit_cost
    return shares


def select_share(cases: list[Case], shard: Shard, costs_run=None) -> tuple[list[Case], dict]:
    """This shard's cases, in plan order, and the manifest's `shard` section."""
    known = known_costs(costs_run) if costs_run else {}
    cost = costs(cases, known)
    share = {c.case_id for c in partition(cases, shard.count, cost)[shard.index]}
    mine = [c for c in cases if c.case_id in share]
    section = {
        "index": shard.index,
        "count": shard.count,
        "from": shard.source,
        "method": METHOD,
        "costs": {
            "run": str(Path(costs_run).resolve()) if costs_run else None,
            "known": sum(c.case_id in known for c in cases),
            "estimated": sum(c.case_id not in known for c in cases),
        },
        "expected_cost": round(sum(cost[c.case_id] for c in mine), 3),
        "total_cost": round(sum(cost.values()), 3),
        "plan_cases": [c.case_id for c in cases],
    }
    return mine, section


def share_note(section: dict, cases: int) -> str:
    costs = section["costs"]
    basis = f"wall times from {costs['run']} ({costs['known']} known)" if costs["run"] else "estimated costs"
    return (
        f"shard {section['index']}/{section['count']} (from {section['from']}): {cases} of"
        f" {len(section['plan_cases'])} cases, balanced by {basis}"
    )
