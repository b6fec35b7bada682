"""The offline scenario (MLPerf's Offline): `streams` workers of a case call back to back at once, each pinned to
`threads` CPUs of its own; the figure is the samples per second they complete together under that load.

A *stream* is a resident worker (bench.worker.resident). A *window* resumes every stream of a case, lets each call
from the moment it hears of the window (the ramp) until a call ends past the window's end, and stops them again.
Only the window counts: each call adds the share of its duration that falls inside it, so the ramp before and the
tail after are left out and a stream busy through the whole window counts exactly its work. The calls that lie
wholly inside are the case's latency under load.

A *group* is one model, backend, precision and shape at its different splits of the CPUs (1 stream × 2 threads,
2 streams × 1 thread, ...). With more than one split, the one with a single stream (the most threads) is the
group's baseline, and windows are paired as single-stream blocks are (bench.run.paired): B X1 B X2 ... B, in a fresh
balanced order per pass, one split running at a time, `measure.rounds` fresh processes per split. The row's
`paired` entry is then the split's log throughput ratio to the baseline's, and its interval comes from the same
two-level model (bench.measure.paired).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

from bench.job import Case
from bench.measure.stats import percentiles
from bench.run.cpus import pick_cpus
from bench.run.launch import Outcome
from bench.run.paired import PairedRound, cold_by_request, discard_job, pass_blocks, round_entry
from bench.run.paired import schedule as paired_schedule
from bench.run.resident import Resident, WorkerEnded

MIN_WINDOW_CALLS = 5
"""A window lasts at least this many calls of one stream (and `measure.block_seconds`)."""
RAMP_CALLS = 2
"""Each stream calls for about this many calls before the window opens, at least RAMP_MIN_S."""
RAMP_MIN_S = 0.05


def offline_cases(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.offline]


def groups(cases: list[Case]) -> list[list[Case]]:
    """The offline cases by everything but their split of the CPUs; the single-stream split with the most threads
    first (the group's baseline when it has more than one split)."""
    found: dict[tuple, list[Case]] = defaultdict(list)
    for case in cases:
        found[group_key(case)].append(case)
    return [sorted(group, key=lambda c: (c.streams, -c.threads)) for group in found.values()]


def group_key(case: Case) -> tuple:
    return (case.environment, case.model, case.backend, case.precision, case.seq_len, case.batch_size,
            case.padding_ratio)  # fmt: skip


def baseline_of(group: list[Case]) -> Case | None:
    return group[0] if len(group) > 1 and group[0].streams == 1 else None


def schedule(cases: list[Case], done_rounds: dict[str, int], seed: int):
    """(round index, group, cases that still need this round), groups shuffled per round from the run's seed."""
    return paired_schedule(cases, done_rounds, seed, groups, "offline")


def stream_cpus(case: Case, run_cpus) -> list[list[int]] | None:
    """Each stream process's CPUs: `streams` slices of `threads` CPUs, chosen as a case of streams × threads would
    be; one slice of them all where the streams are the backend's own (one process)."""
    cpus = pick_cpus(case.streams * case.threads, run_cpus)
    if cpus is None:
        return None
    if case.own_streams:
        return [cpus]
    return [cpus[i * case.threads : (i + 1) * case.threads] for i in range(case.streams)]


def window_work(calls_ns: list[list[int]], start_ns: int, end_ns: int) -> float:
    """Calls completed inside [start, end]: each call counts the share of its duration that falls inside."""
    work = 0.0
    for begin, end in calls_ns:
        inside = min(end, end_ns) - max(begin, start_ns)
        if inside > 0 and end > begin:
            work += inside / (end - begin)
    return work


class Load:
    """A case's streams in the current round: what bench.run.paired.run_passes drives as one member (a block is a
    window; `worker` answers for the CPU time of all its streams)."""

    def __init__(self, case: Case, streams: list[Resident], ready: list[dict], layout: list[list[int]]):
        self.case, self.streams, self.layout = case, streams, layout
        self.worker = self
        self.call_ms = max(r["call_ms"] for r in ready)
        self.fastest_ms: float | None = None
        """The fastest call of one stream timed alone, when bench tune asked for it (bench.run.tune)."""
        call_s = self.call_ms / 1000
        self.window_s = max(case.measure.get("block_seconds", 0.2), MIN_WINDOW_CALLS * call_s)
        self.ramp_s = max(RAMP_MIN_S, RAMP_CALLS * call_s)
        self.rss_mb = sum(r.get("rss_mb") or 0.0 for r in ready)
        self.calls = MIN_WINDOW_CALLS
        self.blocks: list[dict] = []
        self.latencies_ns: list[int] = []
        self.idle_cpu_s = 0.0
        self.idle_s = 0.0
        self.failure: WorkerEnded | None = None
        self.turn = 0
        self.prepared_on = layout[0]
        self.relayout = False
        """A window's streams keep their heap layout (bench.worker.heap_layout redraws only before paired blocks)."""

    def cpu_s(self) -> float | None:
        readings = [s.cpu_s() for s in self.streams]
        return None if None in readings else sum(readings)

    def ask_all(self, command: dict) -> list[dict] | None:
        """Every stream resumed and given `command` at once, their answers, every stream stopped again; None (and
        `failure`) when one ended."""
        try:
            for stream in self.streams:
                stream.resume()
                stream.send(command)
            return [stream.read() for stream in self.streams]
        except WorkerEnded as exc:
            self.failure = exc
            return None
        finally:
            for stream in self.streams:
                if stream.conn is not None:
                    stream.pause()

    def end(self) -> tuple[Outcome, list[int]]:
        """Every stream finished (or, after a failure, ended), and the outcome that speaks for the case: the first
        that failed, else the one with the worst accuracy; with that stream's CPUs."""
        if self.failure is not None:
            outcomes = [stream.failed(self.failure) for stream in self.streams]
        else:
            outcomes = [stream.finish() for stream in self.streams]
        failed = [o for o in outcomes if o.status != "ok"]
        outcome = failed[0] if failed else worst_accuracy(outcomes)
        return outcome, self.layout[outcomes.index(outcome)]

    def accuracy_passed(self) -> bool | None:
        """Whether every stream's outputs pass the accuracy gate now, the streams kept (None: a stream ended)."""
        answers = self.ask_all({"check": True})
        return None if answers is None else all(a["accuracy"].get("passed") for a in answers)

    def block(self) -> dict | None:
        start = time.monotonic()
        start_ns = time.monotonic_ns() + int(self.ramp_s * 1e9)
        end_ns = start_ns + int(self.window_s * 1e9)
        answers = self.ask_all({"window": {"start_ns": start_ns, "end_ns": end_ns}})
        if answers is None:
            return None
        work = sum(window_work(a["calls_ns"], start_ns, end_ns) for a in answers)
        samples_per_s = work * self.case.batch_size / self.window_s
        record = {
            "start": start,
            "end": time.monotonic(),
            "wall": time.time(),
            "median_ms": 1000 / samples_per_s if samples_per_s > 0 else math.inf,  # what run_passes pairs
            "samples_per_s": samples_per_s,
            "canary_ms": [],
            "contaminated": any((a.get("interference") or {}).get("contaminated") for a in answers),
            "steal": max(((a.get("interference") or {}).get("steal") or 0.0 for a in answers), default=0.0),
        }
        self.blocks.append(record)
        for answer in answers:
            self.latencies_ns += answer["samples_ns"]
        return record if samples_per_s > 0 else None

    def load_entry(self) -> dict:
        clean = [w["samples_per_s"] for w in self.blocks if not w["contaminated"]]
        latencies = sorted(ns / 1e6 for ns in self.latencies_ns)
        return {
            "scenario": "offline",
            "streams": self.case.streams,
            "threads_per_stream": self.case.threads,
            "stream_cpus": self.layout,
            "window_s": round(self.window_s, 4),
            "ramp_s": round(self.ramp_s, 4),
            "windows": [[round(w["samples_per_s"], 4) for w in self.blocks]],
            "contaminated_windows": sum(w["contaminated"] for w in self.blocks),
            "steal_shares": [[round(w["steal"], 4) for w in self.blocks]],
            "samples_per_s": statistics.median(clean) if clean else None,
            "calls": len(latencies),
            "latency_ms": [percentiles(latencies)],
        }


class OfflineRound(PairedRound):
    """One process round of one offline group: fresh streams for each split, prepared one split at a time, then the
    windows (paired where the group has a baseline)."""

    SALT = "offline-pairs"

    @staticmethod
    def baseline_of(group: list[Case]) -> Case | None:
        return baseline_of(group)

    def placed(self, case: Case, ready):
        """(environment, job, each stream's CPUs), or the row saying why not."""
        if isinstance(ready, dict):
            return ready
        layout = stream_cpus(case, self.runner.cpus)
        if layout is None:
            reason = f"needs {case.streams * case.threads} CPUs ({case.streams} streams × {case.threads} threads);"
            outcome = Outcome("unavailable", f"{reason} this run may use {len(self.runner.cpus)}", None, None, 0.0, "")
            return self.runner.worker_row(case, outcome, [], None)
        env, job, _ = ready
        return env, job, layout

    def cpus_of(self, startable: list) -> list[int]:
        return sorted({c for *_, (_, _, layout) in startable for slice_ in layout for c in slice_})

    def measure(self, startable: list) -> None:
        loads: list[Load] = []
        supports = {case.case_id: support for case, support, _ in startable}
        with self.unfinished_ended(loads):
            for case, _, (env, job, layout) in startable:
                load = self.prepare(case, env, job, layout)
                if load is not None:
                    loads.append(load)
            baseline = next((m for m in loads if m.case is self.baseline_case), None)
            found = pass_blocks(baseline, [m for m in loads if m is not baseline] if baseline else loads, self.rng)
            for load in loads:
                pairs = None if load is baseline else found.get(load.case.case_id, [] if baseline else None)
                self.finish(load, pairs, supports)

    @contextmanager
    def unfinished_ended(self, loads: list[Load]):
        """Around a round's work on `loads` (which may still grow): whatever stops it, Ctrl-C included, kills the
        streams of every load that has no row yet, which no later step would end."""
        try:
            yield
        except BaseException:
            for load in loads:
                if load.case.case_id not in self.rows:
                    for stream in load.streams:
                        stream.end(force=True)
            raise

    def prepare(self, case: Case, env, job, layout: list[list[int]]) -> Load | None:
        """The case's streams, prepared one after another (the first builds what the cache keeps, the others load it),
        each on its own CPUs and stopped when ready; None (and the row) if one fails."""
        import dataclasses

        runner = self.runner
        warm = None if cold_by_request(case.case_id) else runner.warm
        streams, ready = [], []
        for number, cpus in enumerate(layout):
            work_dir = runner.job_dir(case) / f"stream-{number}"
            stream = Resident(env.python, dataclasses.replace(job, cpus=cpus), work_dir, runner.log_path(case), warm)
            streams.append(stream)
            try:
                ready.append(stream.ready())
                stream.pause()
            except WorkerEnded as exc:
                outcome = stream.failed(exc)
                for other in streams[:-1]:
                    other.end(force=True)
                self.rows[case.case_id] = self.row(case, outcome, None, layout)
                return None
            except BaseException:  # Ctrl-C or SIGTERM while it prepares: no round will end these
                for other in streams:
                    other.end(force=True)
                raise
        return Load(case, streams, ready, layout)

    def finish(self, load: Load, pairs: list | None, supports: dict) -> None:
        case = load.case
        outcome, speaking = load.end()
        entry = round_entry(load, pairs, self.baseline_case.case_id if self.baseline_case else None,
                            self.runner.order_seed) if self.baseline_case else None  # fmt: skip
        row = self.row(case, outcome, entry, load.layout, supports.get(case.case_id), speaking)
        if row["status"] == "ok":
            from bench.measure.stats import latency_summary, stability_warnings

            spread = stability_warnings(outcome.result["latency_ms"], len(outcome.result["samples_ms"]),
                                        case.measure["min_iterations"])  # fmt: skip
            row["warnings"] = [w for w in row["warnings"] if w not in spread]  # under load, calls spread: not a flaw
            samples_ms = [ns / 1e6 for ns in load.latencies_ns]
            row["samples_ms"] = samples_ms
            row["latency_ms"] = latency_summary(samples_ms) if samples_ms else row["latency_ms"]
            row["load"] = load.load_entry()
            row["throughput"] = None  # measured under load: load.samples_per_s, never batch ÷ median
        self.rows[case.case_id] = row

    def row(self, case: Case, outcome, entry: dict | None, layout, support=None, speaking=None) -> dict:
        """The case's row; `speaking`: the CPUs of the stream whose envelope it carries (the first by default)."""
        from bench import cpu

        runner = self.runner
        discard_job(runner, case)
        row = runner.worker_row(case, outcome, speaking or (layout or [[]])[0], self.quiet)
        row["pinned_cpus"] = sorted(c for slice_ in layout or [] for c in slice_)
        if entry is not None:
            row["paired"] = entry
        support = support or cpu.support(case.backend_type, case.precision, runner.flags, case.backend_options)
        return runner.settled(support, row)


def steal_warnings(load: dict) -> list[str]:
    """Steal under load is part of what the machine serves (bench.measure.interference): said, never refused."""
    from bench.measure.interference import STEAL_SHARE_MAX

    shares = [s for per_round in load.get("steal_shares") or [] for s in per_round]
    if not shares or statistics.median(shares) <= STEAL_SHARE_MAX:
        return []
    return [
        f"under load the hypervisor took {statistics.median(shares):.0%} of the CPUs as steal time (median of"
        f" {len(shares)} readings, up to {max(shares):.0%}): the figures include it, and another VM may see less"
    ]


def worst_accuracy(outcomes: list) -> object:
    """The stream whose outputs agreed least with eager fp32 speaks for the case (any stream failing fails it)."""

    def badness(outcome) -> tuple:
        accuracy = (outcome.result or {}).get("accuracy") or {}
        return (not accuracy.get("passed", True), accuracy.get("relative_error") or 0.0)

    return max(outcomes, key=badness)


def merge_load(entries: list[dict]) -> dict:
    """The merged row's `load`: each round's windows (their samples/s) and latency percentiles, the median window
    (bench.results.offline gives it its interval)."""
    last = entries[-1]
    windows = [per_round for e in entries for per_round in e.get("windows") or []]
    return {
        **last,
        "windows": windows,
        "contaminated_windows": sum(e.get("contaminated_windows") or 0 for e in entries),
        "steal_shares": [per_round for e in entries for per_round in e.get("steal_shares") or []],
        "samples_per_s": statistics.median(w for per_round in windows for w in per_round) if any(windows) else None,
        "calls": sum(e.get("calls") or 0 for e in entries),
        "latency_ms": [p for e in entries for p in e.get("latency_ms") or []],
    }
