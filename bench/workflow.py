"""The steps of `bench run`, each callable on its own: load, expand, filter, record, run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bench.errors import BenchError
from bench.machine import git_state, machine_info, software_info
from bench.matrix import dropped_combinations, expand, parse_filters, select
from bench.quiet import QUIET_WAIT_S
from bench.results import RESULTS_SCHEMA, RunDir, latest_rows, now, row_is_good
from bench.runner import Runner
from bench.shards import select_share, share_note
from bench.suite import Suite, load_suite


def default_out_dir(suite_name: str) -> Path:
    return Path("results") / f"{suite_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def plan(suite: Suite, filters: list[str]):
    cases = select(expand(suite), parse_filters(filters))
    return cases, dropped_combinations(suite)


def start_run(suite_path: str, out: str | None, filters: list[str], shard=None, costs_run=None):
    suite, path = load_suite(suite_path)
    cases, notes = plan(suite, filters)
    section = None
    if shard is not None:
        cases, section = select_share(cases, shard, costs_run)
        notes = [*notes, share_note(section, len(cases))]
    run_dir = RunDir(Path(out) if out else default_out_dir(suite.name + (f"-{shard.tag}" if shard else "")))
    if run_dir.rows_path.exists():
        raise BenchError(f"{run_dir.path}: expected a new folder, got one with results; use --resume {run_dir.path}")
    run_dir.create(
        {
            "schema": RESULTS_SCHEMA,
            "suite_file": str(path.resolve()),
            "suite": suite.model_dump(mode="json"),
            "filters": filters,
            "planned_cases": [c.case_id for c in cases],
            **({"shard": section} if section else {}),
            "machine": machine_info(),
            "software": software_info(),
            "git": git_state(),
            "runs": [{"started": now(), "finished": None}],
        }
    )
    return run_dir, cases, path.resolve().parent, notes


def resume_run(run_path: str, filters: list[str]):
    run_dir = RunDir(Path(run_path))
    manifest = run_dir.read_manifest()
    suite = Suite.model_validate(manifest["suite"])
    cases, notes = plan(suite, manifest.get("filters", []) + filters)
    if "shard" in manifest:
        share = set(manifest.get("planned_cases", []))
        cases = [c for c in cases if c.case_id in share]
    done = {row["case_id"] for row in run_dir.rows()}
    manifest["runs"].append({"started": now(), "finished": None, "resumed": True})
    run_dir.write_manifest(manifest)
    return run_dir, [c for c in cases if c.case_id not in done], Path(manifest["suite_file"]).parent, notes


def execute(run_dir: RunDir, cases, suite_dir: Path, progress=None, quiet_wait: float = QUIET_WAIT_S) -> list[dict]:
    rows = Runner(run_dir, suite_dir, progress, quiet_wait).run(cases)
    manifest = run_dir.read_manifest()
    manifest["runs"][-1]["finished"] = now()
    run_dir.write_manifest(manifest)
    return rows


def all_good(run_dir: RunDir) -> bool:
    return all(row_is_good(r) for r in latest_rows(run_dir.rows()))
