"""Run cases one by one, each in its own worker, and write a row for every case whatever happens to it."""

from __future__ import annotations

import itertools
import secrets
import sys
from pathlib import Path

from bench import cpu
from bench.plan import model_sources
from bench.run import closed_loop, offline, paired, rounds, server
from bench.run.ahead import Ahead, prepare_ahead
from bench.run.references import reference_path
from bench.backends import BACKENDS
from bench.environments import environment
from bench.errors import BenchError
from bench.run.launch import Outcome, launch
from bench.run.warm import WarmStarts
from bench.job import MAIN, NOT_MEASURED, UNSUPPORTED, Case, Job, Source
from bench.paths import cache_root
from bench.run.progress import Progress
from bench.run.quiet import QUIET_WAIT_S, wait_for_quiet
from bench.run.quiet import warnings_of as quiet_warnings
from bench.results.provenance import Provenance
from bench.results.folder import RESULTS_SCHEMA, RunDir
from bench.backends.threads import thread_settings
from bench.run.cpus import core_sharing, pick_cpus
from bench.topology import available_cpus

LOAD_SCENARIOS = (
    (offline.OfflineRound, offline.offline_cases, offline.schedule),
    (server.ServerRound, server.server_cases, server.schedule),
    (closed_loop.ClosedLoopRound, closed_loop.closed_loop_cases, closed_loop.schedule),
)
"""The scenarios under load: each one's process round, which of the cases are its own, and its rounds' order."""


class Runner:
    """Holds what cases share within a run: resolved model sources, the CPUs the machine allows (with their
    physical places) and how long to wait for them to be quiet before a case."""

    def __init__(
        self,
        run_dir: RunDir,
        suite_dir: Path,
        progress: Progress | None = None,
        quiet_wait: float = QUIET_WAIT_S,
        warm_start: bool = True,
        emulated: bool = False,
        memory_budget_mb: float | None = None,
        before_cases=None,
    ):
        """`before_cases(warm)`: what runs once the references and artifacts are made ahead and before the first
        case, given the run's fork servers (the CLI's matmul peak probe)."""
        self.run_dir = run_dir
        self.before_cases = before_cases
        self.suite_dir = suite_dir
        self.progress = progress or Progress(stream=sys.stderr)
        self.cpus = available_cpus(within=run_dir.cpus)
        self.quiet_wait = quiet_wait
        self.warm_start = warm_start
        self.emulated = emulated
        self.memory_budget_mb = memory_budget_mb or paired.default_memory_budget_mb()
        self.flags = cpu.cpu_flags()
        self.views: dict[str, dict] = {}
        """each environment's library views as last written to the manifest: it is read and written only on news"""
        self.warm: WarmStarts | None = None
        self.ahead = Ahead()
        manifest = run_dir.read_manifest() if run_dir.manifest_path.exists() else {}
        self.provenance = Provenance(manifest)
        self.order_seed = self.recorded_order_seed(manifest)
        self.tune_mode = (manifest.get("tune") or {}).get("mode")
        """bench tune's: "tune" or "exhaustive" (bench.run.tune), else None"""
        self.duel_pairs = (manifest.get("tune") or {}).get("duel_pairs", 8)
        """bench tune's: the segments the winner and the runner-up serve by turns (bench.run.tune)"""
        self.tune_objective = (manifest.get("tune") or {}).get("objective") or "rate"
        self.tune_rate = (manifest.get("tune") or {}).get("rate")
        """bench tune's: what the winner is best at, and the rate a latency or memory objective is asked at"""
        self._sources: dict[str, Source | model_sources.SourceUnavailable] = {}

    def run(self, cases: list[Case]) -> list[dict]:
        """R passes over the cases (R = each case's measure.rounds), each pass shuffled; a row per case at its end."""
        self.warm = WarmStarts(self.run_dir.logs / "warm-start.log", self.say, sorted(self.cpus)) if self.warm_start else None
        try:
            if self.warm is not None:
                keys = self.server_keys(cases)
                self.warm.prestart(keys)
                if len(keys) < len(self.cpus):
                    import scipy.stats  # noqa: F401  (merging rows needs it: on a CPU the servers leave free)
            self.ahead = prepare_ahead(self, cases)
            if self.before_cases is not None:
                self.before_cases(self.warm)
            return self.passes(cases)
        finally:
            if self.warm is not None:
                self.warm.close()

    def passes(self, cases: list[Case]) -> list[dict]:
        done = rounds.rounds_by_case(self.run_dir.round_records())
        counts = {k: len(v) for k, v in done.items()}
        fresh = [c for c in cases if not paired.pairable(c) and not c.under_load]
        pairing = [c for c in cases if paired.pairable(c)]
        todo = list(rounds.passes(fresh, counts, seed=self.order_seed))
        group_rounds = [(paired.PairedRound, *entry) for entry in paired.schedule(pairing, counts, self.order_seed)]
        for round_class, cases_of, schedule in self.load_scenarios():
            group_rounds += [(round_class, *entry) for entry in schedule(cases_of(cases), counts, self.order_seed)]
        finished, rows = set(), []
        self.progress.start(len(todo) + sum(len(needed) for *_, needed in group_rounds))
        try:
            for index, case in todo:
                if case.case_id in finished:
                    self.progress.case_skipped()
                    continue
                self.progress.case_started(case, index)
                started = self.provenance.at_start()
                rows += self.record(case, index, {**self.run_case(case), "provenance": started}, done, finished)
            more = paired.more_rounds(pairing, done, finished, self.progress.more)
            more = ((paired.PairedRound, *entry) for entry in more)
            for kind, index, group, needed in itertools.chain(group_rounds, more):
                for _ in [c for c in needed if c.case_id in finished]:
                    self.progress.case_skipped()
                group = [c for c in group if c.case_id not in finished]
                needed = [c for c in needed if c.case_id not in finished]
                started = self.provenance.at_start()
                for case, row in kind(self, group, needed, index).run():
                    self.progress.case_started(case, index)
                    rows += self.record(case, index, {**row, "provenance": started}, done, finished)
        finally:
            rows += [self.merge(case, done, finished) for case in complete(cases, done, finished)]
        self.progress.finish()
        return rows

    def load_scenarios(self) -> tuple:
        """LOAD_SCENARIOS, with bench tune's round in place of the server and closed-loop scenarios' when the run tunes
        (its cases are all searches under the budget: bench.run.tune.tuning_suite)."""
        if self.tune_mode is None:
            return LOAD_SCENARIOS
        from bench.run import tune

        tuning = (tune.ExhaustiveRound if self.tune_mode == "exhaustive" else tune.TuneRound, tune.tuned_cases, tune.schedule)
        return tuple(tuning if entry[0] is server.ServerRound else entry for entry in LOAD_SCENARIOS
                     if entry[0] is not closed_loop.ClosedLoopRound)

    def record(self, case: Case, index: int, row: dict, done: dict, finished: set) -> list[dict]:
        """A round's row kept (rounds.jsonl when the case has several); the case's merged row when it is complete."""
        row = self.ahead.attach(case, row)
        record = {"case_id": case.case_id, "round": index, "row": row}
        if case.measure.get("rounds", 1) > 1:
            self.run_dir.append_round(record)
        done[case.case_id].append(record)
        self.progress.case_finished(row)
        if case.measure.get("rounds", 1) == 1 or row["status"] != "ok":
            return [self.merge(case, done, finished)]
        return []

    def recorded_order_seed(self, manifest: dict) -> int:
        """The seed of every pass order of the run: drawn when the run starts, kept in the manifest for a resume."""
        seed = manifest.get("order_seed")
        if not isinstance(seed, int) and self.run_dir.manifest_path.exists():
            seed = secrets.randbits(32)
            self.run_dir.write_manifest({**manifest, "order_seed": seed})
        return seed if isinstance(seed, int) else secrets.randbits(32)

    def merge(self, case: Case, done: dict, finished: set) -> dict:
        """The case's row from its rounds, judged against the spread between rounds of the run's other cases."""
        pooled = rounds.pooled_spread(done, leaving_out=case.case_id)
        merged = rounds.merge([record["row"] for record in done[case.case_id]], pooled)
        self.run_dir.append(merged)
        finished.add(case.case_id)
        return merged

    def run_case(self, case: Case) -> dict:
        """The case's row, with the tier its precision runs in on this CPU (bench.cpu)."""
        support = cpu.support(case.backend_type, case.precision, self.flags, case.backend_options)
        return self.settled(support, self.decided_row(case, support) or self.measured_row(case))

    def decided_row(self, case: Case, support: cpu.Support) -> dict | None:
        """A row with no worker: the CPU cannot run the precision, or only emulates it or the library would keep fp32,
        and the run did not ask (`--emulated`)."""
        if support.tier == cpu.UNSUPPORTED:
            return make_row(case, Outcome(UNSUPPORTED, support.reason, None, None, 0.0, ""))
        left_out = None if self.emulated else cpu.not_measured_reason(support)
        if left_out:
            return make_row(case, Outcome(NOT_MEASURED, left_out, None, None, 0.0, ""))
        return None

    def settled(self, support: cpu.Support, row: dict) -> dict:
        if row.get("effective"):
            self.record_view(row["environment"], row["effective"].get("cpu_view"))
        row["cpu_support"], warnings = cpu.settled(support, row, self.flags)
        row["warnings"] += warnings
        return row

    def record_view(self, environment_name: str, view: dict | None) -> None:
        """The manifest's machine.cpu.library_views: what each environment's libraries said of the CPU."""
        known = self.views.get(environment_name) or {}
        merged = {**known, **{k: v for k, v in (view or {}).items() if not (isinstance(v, dict) and "error" in v)}}
        if merged == known:
            return
        self.views[environment_name] = merged
        manifest = self.run_dir.read_manifest()
        manifest.setdefault("machine", {}).setdefault("cpu", {}).setdefault("library_views", {}).update(self.views)
        self.run_dir.write_manifest(manifest)

    def measured_row(self, case: Case) -> dict:
        ready = self.ready_to_start(case)
        if isinstance(ready, dict):
            return ready
        env, job, cpus = ready
        quiet = self.wait_for_quiet(cpus)
        outcome = launch(
            env.python, job, cpus, case.measure["timeout"], self.log_path(case), self.job_dir(case), self.warm
        )
        return self.worker_row(case, outcome, cpus, quiet)

    def worker_row(self, case: Case, outcome: Outcome, cpus: list[int], quiet: dict | None) -> dict:
        row = make_row(case, outcome, cpus, quiet)
        sharing = core_sharing(cpus, self.cpus)
        if sharing:
            row["warnings"].append(sharing)
        return row

    def ready_to_start(self, case: Case):
        """(environment, job, cpus) for the case's worker, its reference computed; or the row saying why not."""
        source = self.source(case)
        if isinstance(source, model_sources.SourceUnavailable):
            return make_row(case, Outcome(source.status, str(source), None, None, 0.0, ""))
        try:
            env = environment(case.environment)
        except BenchError as exc:
            return make_row(case, Outcome("error", str(exc), None, None, 0.0, ""))
        if not env.built:
            reason = f"environment {env.name!r} is not built ({env.python}); build it with: {env.build_command}"
            return make_row(case, Outcome("unavailable", reason, None, None, 0.0, ""))
        cpus = pick_cpus(case.threads, self.cpus)
        if cpus is None:
            reason = f"needs {case.threads} CPUs; this run may use {len(self.cpus)}"
            return make_row(case, Outcome("unavailable", reason, None, None, 0.0, ""))
        hung = self.ahead.failure(case)
        if hung is not None:
            return make_row(case, hung, cpus)
        job = self.job(case, source, cpus, mode="measure")
        reference = Path(job.reference)
        if not reference.exists():
            failure = self.make_reference(case, source, cpus, reference)
            if failure is not None:
                return make_row(case, failure, cpus)
        return env, job, cpus

    def server_keys(self, cases: list[Case]) -> list[tuple[str, int]]:
        """(interpreter, threads) of the fork servers the cases will use: their environment's, and main's for the
        references, for every case that will start a worker."""
        keys = []
        for case in cases:
            startable = self.startable(case)
            if startable is None:
                continue
            env, source = startable
            wanted = [(str(env.python), case.process_threads)]
            if not reference_path(case, source).exists():
                wanted.append((str(environment(MAIN).python), case.threads))
            for key in wanted:
                if key not in keys:
                    keys.append(key)
        return keys

    def startable(self, case: Case):
        """(environment, model source) of a case that will start a worker, or None: the CPU decides its row, or its
        environment or model is not there, or the run has too few CPUs for it."""
        support = cpu.support(case.backend_type, case.precision, self.flags, case.backend_options)
        if self.decided_row(case, support) is not None or pick_cpus(case.threads, self.cpus) is None:
            return None
        try:
            env = environment(case.environment)
        except BenchError:
            return None
        source = self.source(case)
        if not env.built or isinstance(source, model_sources.SourceUnavailable):
            return None
        return env, source

    def wait_for_quiet(self, cpus: list[int]) -> dict:
        if self.warm is not None:
            self.warm.settle()  # a server still importing is the run's own load, not another process's
        return wait_for_quiet(cpus, self.quiet_wait, self.say)

    def say(self, text: str) -> None:
        print(text, file=self.progress.stream, flush=True)

    def make_reference(self, case: Case, source: Source, cpus, path: Path) -> Outcome | None:
        """The eager fp32 outputs for this model and inputs, computed once in `main` and shared by every env."""
        job = self.job(case.reference(), source, cpus, mode="reference", reference=path)
        python = environment(MAIN).python
        outcome = launch(python, job, cpus, case.measure["timeout"], self.log_path(case), self.job_dir(case), self.warm)
        if outcome.status == "ok" and path.exists():
            return None
        outcome.reason = f"the eager fp32 reference could not be computed: {outcome.reason}"
        outcome.status = "error" if outcome.status == "ok" else outcome.status
        return outcome

    def source(self, case: Case):
        if case.model not in self._sources:
            from bench.plan.suite import ModelEntry

            entry = ModelEntry.model_validate(case.model_entry)
            try:
                source = model_sources.resolve(entry, self.suite_dir, case.seed)
                model_sources.read_config(source, entry.config_overrides)
                self._sources[case.model] = source
            except model_sources.SourceUnavailable as exc:
                self._sources[case.model] = exc
        return self._sources[case.model]

    def job(self, case: Case, source: Source, cpus: list[int], mode: str, reference: Path | None = None) -> Job:
        """What the worker is given; the reference file is the case's own unless `reference` names another."""
        return Job(
            mode=mode,
            case=case,
            source=source,
            vocab=vocab_of(source, case.model_entry.get("config_overrides", {})),
            thread_settings=thread_settings(BACKENDS[case.backend_type].thread_family, case.process_threads,
                                            case.streams if case.own_streams else 1),  # fmt: skip
            cpus=cpus,
            reference=str(reference or reference_path(case, source)),
            cache_dir=str(cache_root()),
        )

    def log_path(self, case: Case) -> Path:
        return self.run_dir.logs / f"{case.case_id}.log"

    def job_dir(self, case: Case) -> Path:
        return self.run_dir.jobs / case.case_id


def complete(cases: list[Case], done: dict, finished: set) -> list[Case]:
    """Cases with all their rounds measured and no row yet. A case of several rounds gets its row once every pass
    is over (or the run is interrupted), when the spread between rounds of all the other cases is known."""
    return [
        case
        for case in cases
        if case.case_id not in finished and len(done.get(case.case_id, [])) >= case.measure.get("rounds", 1)
    ]


def vocab_of(source: Source, overrides: dict) -> dict:
    config = model_sources.read_config(source, overrides)
    return {"size": config["vocab_size"], "pad_token_id": config.get("pad_token_id")}


def make_row(case: Case, outcome: Outcome, cpus: list[int] | None = None, quiet_check: dict | None = None) -> dict:
    row = {
        "schema": RESULTS_SCHEMA,
        "case_id": case.case_id,
        "status": outcome.status,
        "reason": outcome.reason,
        "suite": case.suite,
        "model": case.model,
        "task": case.task,
        "backend": case.backend,
        "backend_type": case.backend_type,
        "backend_options": case.backend_options,
        "environment": case.environment,
        "precision": case.precision,
        "seq_len": case.seq_len,
        "batch_size": case.batch_size,
        "threads": case.threads,
        "padding_ratio": case.padding_ratio,
        **({"new_tokens": case.new_tokens} if case.generating else {}),
        **({"texts": case.texts} if case.pipelined else {}),
        **({"pair_of": case.pair_of} if case.pair_of else {}),
        **({"scenario": case.scenario, "streams": case.streams} if case.under_load else {}),
        **({"rate": case.rate, "arrivals": case.arrivals, "p99_ms": case.p99_ms or None} if case.server else {}),
        **({"search": case.search} if case.search else {}),
        **({"batching": case.batching} if case.batching else {}),
        **({"slo": case.slo} if case.slo else {}),
        **({"concurrency": case.concurrency} if case.closed_loop else {}),
        "baseline": case.is_baseline and not case.pair_of,
        "pinned_cpus": cpus,
        "measure": case.measure,
        "wall_s": round(outcome.wall_s, 3),
        "returncode": outcome.returncode,
        "stderr_tail": outcome.stderr_tail or None,
        "quiet_check": quiet_check,
    }
    result = outcome.result or {}
    for key in ("latency_ms", "samples_ms", "throughput", "accuracy", "effective", "timings_ms", "memory",
                "padding", "details", "flops", "interference", "precision_mode"):  # fmt: skip
        row[key] = result.get(key)
    if case.generating:
        row["generation"] = result.get("generation")
    if case.pipelined:
        row["pipeline"] = result.get("pipeline")
    row["warnings"] = (
        list(result.get("warnings", []))
        + effect_warnings(case, cpus, result.get("effective"))
        + quiet_warnings(quiet_check)
    )
    return row


def effect_warnings(case: Case, cpus, effective: dict | None) -> list[str]:
    """A mismatch between what was asked and what took effect is said in the row."""
    if not effective:
        return []
    warnings = []
    if effective.get("threads") is not None and effective["threads"] != case.process_threads:
        warnings.append(f"asked for {case.process_threads} threads, the backend reports {effective['threads']}")
    if cpus is not None and effective.get("cpus") != cpus:
        warnings.append(f"pinned to CPUs {cpus}, the worker ran on {effective.get('cpus')}")
    return warnings
