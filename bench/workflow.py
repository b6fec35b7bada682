"""The steps of `bench run`, each callable on its own: load, expand, filter, record, run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bench.errors import BenchError
from bench.machine import git_state, machine_info, software_info
from bench.matrix import dropped_combinations, expand, parse_filters, select
from bench.preflight import check_suite
from bench.results import RESULTS_SCHEMA, RunDir, latest_rows, now, row_is_good
from bench.runner import Runner
from bench.suite import Suite


def default_out_dir(suite_name: str) -> Path:
    return Path("results") / f"{suite_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def plan(suite: Suite, filters: list[str]):
    cases = select(expand(suite), parse_filters(filters))
    return cases, dropped_combinations(suite)


def start_run(suite_path: str, out: str | None, filters: list[str], allow_large: bool = False):
    checked = check_suite(suite_path, filters, allow_large)
    suite, path, cases = checked.suite, checked.path, checked.cases
    notes = dropped_combinations(suite) + [f"{path}: {warning}" for warning in checked.warnings]
    run_dir = RunDir(Path(out) if out else default_out_dir(suite.name))
    if run_dir.rows_path.exists():
        raise BenchError(f"{run_dir.path}: expected a new folder, got one with results; use --resume {run_dir.path}")
    run_dir.create(
        {
            "schema": RESULTS_SCHEMA,
            "suite_file": str(path.resolve()),
            "suite": suite.model_dump(mode="json"),
            "filters": filters,
            "planned_cases": [c.case_id for c in cases],
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
    done = {row["case_id"] for row in run_dir.rows()}
    manifest["runs"].append({"started": now(), "finished": None, "resumed": True})
    run_dir.write_manifest(manifest)
    return run_dir, [c for c in cases if c.case_id not in done], Path(manifest["suite_file"]).parent, notes


def execute(run_dir: RunDir, cases, suite_dir: Path, progress=None) -> list[dict]:
    rows = Runner(run_dir, suite_dir, progress).run(cases)
    manifest = run_dir.read_manifest()
    manifest["runs"][-1]["finished"] = now()
    run_dir.write_manifest(manifest)
    return rows


def all_good(run_dir: RunDir) -> bool:
    return all(row_is_good(r) for r in latest_rows(run_dir.rows()))
