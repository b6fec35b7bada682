"""The steps of `bench run`, each callable on its own: load, expand, filter, claim, record, run."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from bench.results.completeness import Completeness
from bench.errors import BenchError
from bench.run.locks import Held, lock_cpus, lock_folder, parse_cpus
from bench.machine import git_state, machine_info, software_info
from bench.results.manifest import checked_for_resume
from bench.plan.matrix import baseline_notes, dropped_combinations, expand, parse_filters, select
from bench.plan.ab import with_twins
from bench.plan.preflight import check_suite
from bench.results.provenance import differences
from bench.run.quiet import QUIET_WAIT_S
from bench.results.folder import RESULTS_SCHEMA, RunDir, latest_rows, now, row_is_good
from bench.run.runner import Runner
from bench.run.shards import select_share, share_note
from bench.plan.suite import Suite
from bench.topology import available_cpus


def default_out_dir(suite_name: str) -> Path:
    return Path("results") / f"{suite_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def plan(suite: Suite, filters: list[str]):
    cases = select(expand(suite), parse_filters(filters))
    return cases, dropped_combinations(suite) + baseline_notes(cases)


def start_run(suite_path: str, out: str | None, filters: list[str], cpus_text: str | None = None,
              allow_large: bool = False, shard=None, costs_run=None, ab: str | None = None, tune: dict | None = None):
    """A new run folder, created and locked by this process, and the CPUs it may use locked machine-wide; `tune`:
    bench tune's {"mode", "budget", ...} (bench.run.tune), recorded in the manifest."""
    adjust = None
    if tune is not None:
        from bench.run.tune import tuning_suite

        def adjust(suite):
            budget = tune.get("budget") or {"p99_ms": tune["budget_p99_ms"]}  # older runs' resume
            return tuning_suite(suite, budget, users=bool(tune.get("users")))

    checked = check_suite(suite_path, filters, allow_large, adjust)
    suite, path, cases = checked.suite, checked.path, checked.cases
    notes = dropped_combinations(suite) + [f"{path}: {warning}" for warning in checked.warnings]
    section = None
    if shard is not None:
        cases, section = select_share(cases, shard, costs_run)
        notes = [*notes, share_note(section, len(cases))]
    if ab is not None:
        cases, ab_notes = with_twins(cases, checked_environment(ab))
        notes += ab_notes
    cpus = run_cpus(cpus_text, cases)
    run_dir = RunDir(Path(out) if out else default_out_dir(suite.name + (f"-{shard.tag}" if shard else "")))
    held, created = claim_new_folder(run_dir)
    try:
        held.add(lock_cpus(cpus, str(run_dir.path)))
        run_dir.create(
            {
                "schema": RESULTS_SCHEMA,
                "suite_file": str(path.resolve()),
                "suite": suite.model_dump(mode="json"),
                "filters": filters,
                "planned_cases": [c.case_id for c in cases],
                **({"shard": section} if section else {}),
                **({"ab": {"environment": ab}} if ab is not None else {}),
                **({"tune": tune} if tune is not None else {}),
                "machine": machine_info(),
                "software": software_info(),
                "git": git_state(),
                "runs": [{"started": now(), "finished": None, "cpus": cpus}],
            }
        )
    except BaseException:
        if created:
            remove_new_folder(run_dir)
        held.release()
        raise
    run_dir.held, run_dir.cpus = held, cpus
    return run_dir, cases, path.resolve().parent, notes


def checked_environment(name: str) -> str:
    """An A/B run's candidate environment: one bench knows (bench env list), built."""
    from bench.environments import environment

    try:
        env = environment(name)
    except BenchError as exc:
        raise BenchError(f"run: --ab: {exc}") from None
    if not env.built:
        raise BenchError(
            f"run: --ab: expected a built environment, got {name!r} ({env.python}); build it with: {env.build_command}"
        )
    return name


def claim_new_folder(run_dir: RunDir) -> tuple[Held, bool]:
    """Make the folder (mkdir fails if it exists: two runs cannot both create it) and lock it; refuse a used one."""
    created = True
    try:
        run_dir.path.parent.mkdir(parents=True, exist_ok=True)
        run_dir.path.mkdir()
    except FileExistsError:
        created = False
        if not run_dir.path.is_dir():
            raise BenchError(f"{run_dir.path}: expected a new folder, got a file")
    except OSError as exc:
        raise BenchError(f"{run_dir.path}: expected a folder this user can create, got {exc.strerror or exc}")
    held = lock_folder(run_dir.path)
    if run_dir.rows_path.exists() or run_dir.manifest_path.exists():
        held.release()
        raise BenchError(f"{run_dir.path}: expected a new folder, got one with results; use --resume {run_dir.path}")
    return held, created


def remove_new_folder(run_dir: RunDir) -> None:
    """Undo a refused start: the folder this process made, if nothing but its lock and logs is in it."""
    try:
        run_dir.lock_path.unlink(missing_ok=True)
        if run_dir.logs.is_dir():
            run_dir.logs.rmdir()
        run_dir.path.rmdir()
    except OSError:
        pass


def run_cpus(cpus_text: str | None, cases) -> list[int]:
    """The CPUs this run may use: --cpus, else every CPU this process may use."""
    allowed = available_cpus()
    if cpus_text is None:
        return sorted(allowed)
    cpus = parse_cpus(cpus_text, set(allowed))
    widest = max((c.threads for c in cases), default=1)
    if widest > len(cpus):
        raise BenchError(
            f"--cpus: expected at least {widest} CPUs (the most threads a case uses), got {len(cpus)};"
            f" give more CPUs or --filter threads=..."
        )
    return cpus


def resume_run(run_path: str, filters: list[str], cpus_text: str | None = None, force: bool = False):
    """The cases of a run folder that have no row yet, with the folder and the CPUs locked for this process."""
    run_dir = RunDir(Path(run_path))
    run_dir.read_manifest()  # not a run folder: said before anything is written into it
    held = lock_folder(run_dir.path)
    try:
        manifest, suite = checked_for_resume(run_dir)
        changed = differences(manifest)
        if changed and not force:
            raise BenchError(
                f"{run_dir.manifest_path}: refusing to resume a run measured elsewhere or on other software"
                f" ({'; '.join(changed)}): its rows could not be compared; give --force to resume anyway"
            )
        cases, notes = plan(suite, manifest.get("filters", []) + filters)
        if "ab" in manifest:
            cases, _ = with_twins(cases, manifest["ab"]["environment"])
        if "shard" in manifest or "ab" in manifest:
            share = set(manifest.get("planned_cases", []))
            cases = [c for c in cases if c.case_id in share]
        cpus = run_cpus(cpus_text, cases)
        held.add(lock_cpus(cpus, str(run_dir.path)))
        repaired = run_dir.repair_torn_tail()
        notes += [repaired] if repaired else []
        shutil.rmtree(run_dir.jobs, ignore_errors=True)  # left by a run that was killed mid-case
        done = {row["case_id"] for row in run_dir.rows()}
        manifest["runs"].append({"started": now(), "finished": None, "resumed": True, "cpus": cpus,
                                 **({"forced_despite": changed} if changed else {})})  # fmt: skip
        run_dir.write_manifest(manifest)
    except BaseException:
        held.release()
        raise
    run_dir.held, run_dir.cpus = held, cpus
    return run_dir, [c for c in cases if c.case_id not in done], Path(manifest["suite_file"]).parent, notes


def execute(
    run_dir: RunDir,
    cases,
    suite_dir: Path,
    progress=None,
    quiet_wait: float = QUIET_WAIT_S,
    warm_start: bool = True,
    emulated: bool = False,
    memory_budget_mb: float | None = None,
    before_cases=None,
) -> list[dict]:
    runner = Runner(run_dir, suite_dir, progress, quiet_wait, warm_start, emulated, memory_budget_mb, before_cases)
    rows = runner.run(cases)
    record_end(run_dir)
    return rows


def record_end(run_dir: RunDir, interrupted: bool = False) -> None:
    """The run's `finished` time in the manifest, and `interrupted: true` when it was stopped (Ctrl-C)."""
    manifest = run_dir.read_manifest()
    manifest["runs"][-1]["finished"] = now()
    if interrupted:
        manifest["runs"][-1]["interrupted"] = True
    run_dir.write_manifest(manifest)


def all_good(run_dir: RunDir) -> bool:
    """Every planned case has a row, ok and accurate."""
    rows = latest_rows(run_dir.rows())
    return Completeness.of(run_dir.read_manifest(), rows).complete and all(row_is_good(r) for r in rows)
