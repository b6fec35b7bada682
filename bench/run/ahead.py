"""Preparation ahead of measurement: the eager fp32 references and the artifacts (exports, conversions, quantized
models) that a run's cases need and the cache surely lacks, made before the run times anything, a job per CPU.

Nothing is timed while they are made, so they may use every CPU of the run: on two CPUs a cold run's exports and
references take about half the time they took one after another in the cases' own workers, which then find them
in the cache. The jobs of one backend, model and task run one after another on one CPU, since their artifacts
share an export. A job that fails leaves its cases to make what it could not in their own workers, as without this
step, except a job that hung: its cases fail with its timeout rather than hang again. The row of the first case of a
configuration says what was built ahead for it: the build's details (cache miss, export steps) and its preparation
as `timings_ms.ahead_prepare`; the configuration's other cases find it built, as they would have without this step.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.backends import BACKENDS
from bench.backends.artifacts import WITH_PAST
from bench.backends.cache import families
from bench.job import Case, Job
from bench.paths import cache_root
from bench.run.references import reference_path
from bench.run.launch import (
    WORKER, Outcome, child_command, end_detached, outcome_of, pin_and_tie, read_envelope, remove_job_folder, tail,
    worker_environment,
)  # fmt: skip
from bench.run.warm import ServerGone


@dataclass
class Task:
    """One job made ahead: a case's reference, or the artifacts of one configuration of a backend and model."""

    what: str
    builds: bool
    """True: a configuration's artifacts (mode "build"); False: a reference."""
    python: Path
    make_job: Callable[[list[int]], Job]
    cases: list[Case]
    """The cases it is made for; the first one's row carries what a build found, as its own worker's would have."""
    log_path: Path
    work_dir: Path


@dataclass
class Started:
    task: Task
    pid: int
    pidfd: int
    server: object | None
    proc: subprocess.Popen | None
    started: float = field(default_factory=time.monotonic)

    @property
    def timeout(self) -> float:
        return self.task.cases[0].measure["timeout"]


class Ahead:
    """What was made ahead, by case: the build results to merge into rows, and the jobs that timed out."""

    def __init__(self):
        self.built: dict[str, dict] = {}
        self.timed_out: dict[str, Outcome] = {}

    def failure(self, case: Case) -> Outcome | None:
        return self.timed_out.get(case.case_id)

    def attach(self, case: Case, row: dict) -> dict:
        """The row with what was built ahead for its case: the artifact cache's status as the build found it (the
        worker found the entries built), the build's other details and steps where the worker has none, and the
        build's preparation as `ahead_prepare`."""
        built = self.built.get(case.case_id)
        if built is None or row.get("status") != "ok":
            return row
        timings = dict(row.get("timings_ms") or {})
        for key, value in built["timings_ms"].items():
            if key not in ("load", "prepare", "first_call"):
                timings.setdefault(key, value)
        timings["ahead_prepare"] = built["timings_ms"].get("prepare")
        details = {**built["details"], **(row.get("details") or {}), "built_ahead_on": built["cpus"]}
        if "cache" in built["details"]:
            details["cache"] = built["details"]["cache"]
        return {**row, "timings_ms": timings, "details": details}


def tasks(runner, cases: list[Case]) -> list[list[Task]]:
    """The jobs to make ahead, as chains that run one after another: one per backend, model and task that the
    artifact cache has no entry of, and one per missing reference."""
    cached = families(cache_root())
    chains: dict[tuple, list[Task]] = {}
    configurations: dict[tuple, Task] = {}
    references: dict[Path, Task] = {}
    for case in cases:
        startable = runner.startable(case)
        if startable is None:
            continue
        env, source = startable
        path = reference_path(case, source)
        if not path.exists() and path not in references:
            references[path] = reference_task(runner, case, source, path)
        task = case.task + (WITH_PAST if case.generating else "")
        family = (case.backend_type, source.identity, task)
        if not BACKENDS[case.backend_type].builds_ahead or family in cached:
            continue
        options = json.dumps(case.backend_options, sort_keys=True)
        configuration = (case.environment, case.backend_type, options, case.precision, source.identity, task, case.seed)
        if configuration in configurations:
            configurations[configuration].cases.append(case)
            continue
        configurations[configuration] = build_task(runner, case, source, env.python)
        chains.setdefault(family, []).append(configurations[configuration])
    for chain in chains.values():  # fp32 first, in the run's order: the export others derive from is its own
        chain.sort(key=lambda task: task.cases[0].precision != "fp32")
    return [*chains.values(), *([task] for task in references.values())]


def reference_task(runner, case: Case, source, path: Path) -> Task:
    from bench.environments import environment
    from bench.job import MAIN

    def make_job(cpus):
        return runner.job(case.reference(), source, cpus, mode="reference", reference=path)

    what = f"reference of {case.model} s{case.seq_len} b{case.batch_size}"
    python = environment(MAIN).python
    return Task(what, False, python, make_job, [case], runner.log_path(case), work_dir(runner, case, "reference"))


def build_task(runner, case: Case, source, python: Path) -> Task:
    def make_job(cpus):
        return runner.job(case, source, cpus, mode="build")

    what = f"{case.backend} {case.precision} of {case.model}"
    return Task(what, True, python, make_job, [case], runner.log_path(case), work_dir(runner, case, "build"))


def work_dir(runner, case: Case, mode: str) -> Path:
    return runner.job_dir(case).with_name(f"ahead-{mode}-{runner.job_dir(case).name}")


def prepare_ahead(runner, cases: list[Case]) -> Ahead:
    """Run the chains on the run's CPUs, each job pinned to one; nothing when fewer than two CPUs or jobs."""
    ahead = Ahead()
    chains = tasks(runner, cases)
    lanes = sorted(runner.cpus)
    count = sum(len(chain) for chain in chains)
    if len(lanes) < 2 or count < 2:
        return ahead
    runner.say(f"preparing ahead on CPUs {','.join(map(str, lanes))}: {count} job(s) (exports, conversions, references)")
    begun = time.monotonic()
    outcomes = run_chains(chains, lanes, runner.warm)
    failed = []
    for task, outcome in outcomes:
        if outcome.status == "ok" and task.builds:  # its first case's row says it, as its own build would have
            ahead.built[task.cases[0].case_id] = outcome.result
        elif outcome.status == "timeout":
            for case in task.cases:
                ahead.timed_out[case.case_id] = outcome
        if outcome.status != "ok":
            then = "its cases fail with it" if outcome.status == "timeout" else "left to its cases' own workers"
            failed.append(f"; {task.what} failed ({outcome.status}: {outcome.reason}), {then}")
    runner.say(f"prepared ahead in {time.monotonic() - begun:.1f} s" + "".join(failed))
    return ahead


def run_chains(chains: list[list[Task]], lanes: list[int], warm) -> list[tuple[Task, Outcome]]:
    """Each chain's jobs in order, a job on every free CPU; (task, outcome) of every job."""
    waiting = [list(chain) for chain in chains]
    running: dict[int, tuple[Started, list[Task]]] = {}
    outcomes = []
    try:
        while waiting or running:
            for cpu in [c for c in lanes if c not in running]:
                if not waiting:
                    break
                chain = waiting.pop(0)
                running[cpu] = (start(chain.pop(0), cpu, warm), chain)
            cpu, outcome = next_end(running)
            started, chain = running.pop(cpu)
            outcomes.append((started.task, outcome))
            if chain:
                waiting.insert(0, chain)
    finally:
        for started, _ in running.values():
            end(started, force=True)
    return outcomes


def start(task: Task, cpu: int, warm) -> Started:
    job = task.make_job([cpu])
    task.work_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = task.work_dir / "job.json", task.work_dir / "result.json"
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps(job.to_dict()))
    threads = job.case.process_threads
    env = worker_environment(dict(os.environ), threads)
    args = ["--job", str(job_path), "--result", str(result_path)]
    task.log_path.parent.mkdir(parents=True, exist_ok=True)
    server = warm.server(task.python, threads) if warm is not None else None
    if server is not None:
        try:
            pid = server.start_worker(WORKER, args, [cpu], task.log_path, env, detach=True)
            return Started(task, pid, os.pidfd_open(pid), server, None)
        except ServerGone:
            warm.drop(task.python, threads)
    with open(task.log_path, "ab") as output:
        proc = subprocess.Popen(
            child_command(task.python, WORKER, args[:2], result_path), env=env, stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin_and_tie([cpu]),
        )  # fmt: skip
    return Started(task, proc.pid, os.pidfd_open(proc.pid), None, proc)


def next_end(running: dict[int, tuple[Started, list[Task]]]) -> tuple[int, Outcome]:
    """(CPU, outcome) of the first running job to end, or to pass its timeout (then killed)."""
    while True:
        now = time.monotonic()
        by_fd = {started.pidfd: cpu for cpu, (started, _) in running.items()}
        for cpu, (started, _) in running.items():
            if now - started.started > started.timeout:
                return cpu, end(started, force=True, timed_out=True)
        wait = min(started.started + started.timeout for started, _ in running.values()) - now
        ready = select.select(list(by_fd), [], [], max(0.0, wait))[0]
        if ready:
            cpu = by_fd[ready[0]]
            return cpu, end(running[cpu][0])


def end(started: Started, force: bool = False, timed_out: bool = False) -> Outcome:
    """The job's outcome once it has ended (killed first with `force`), its stragglers killed and its files gone."""
    returncode = end_detached(started.pid, started.pidfd, started.proc, started.server, force)
    task = started.task
    envelope = read_envelope(task.work_dir / "result.json")
    wall = time.monotonic() - started.started
    outcome = outcome_of(envelope, returncode, timed_out, started.timeout, wall, tail(task.log_path))
    remove_job_folder(task.work_dir)
    return outcome
