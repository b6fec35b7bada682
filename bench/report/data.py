"""A run folder read for a report: every case with its derived figures, and what a reader must be warned about."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.results import compare
from bench.results.completeness import Completeness
from bench.backends.precision_mode import row_label
from bench.report import roofline
from bench.results.folder import RunDir, latest_rows
from bench.results.offline import single_stream, under_load
from bench.results.machines import Machine, Machines
from bench.results.rows import table_order
from bench.job import NOT_RUN_ON_PURPOSE
from bench.text import plural


@dataclass
class Entry:
    """One case (the last row of its case_id) and what the report derives from it."""

    row: dict
    comparison: compare.Speedup | None = None
    """Against the baseline of its environment at its shape: the speedup and its interval, or why there is none."""
    versus_main: compare.Speedup | None = None
    """Rows of another environment: the cross-environment ratio against main's baseline (a change of library too)."""
    flops: int | None = None
    gflops: float | None = None
    peak_gflops: float | None = None
    pct_peak: float | None = None
    fastest: bool = False
    tied: bool = False
    """Not the fastest, but its median's interval overlaps the fastest's: no measurable difference."""
    beats_fastest_but_fails: bool = False
    notes: list[str] = field(default_factory=list)
    machine: Machine | None = None
    """The machine the case was measured on; None when the rows were read without their manifest."""
    machine_label: str | None = None
    """The machine's short name when the run holds rows of several machines (plots label their series with it)."""

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok" and bool(self.row.get("latency_ms"))

    @property
    def speedup(self) -> float | None:
        return self.comparison.shown if self.comparison else None

    @property
    def distrust(self) -> list[str]:
        """Why this case is not compared (failed, fails accuracy, contaminated, unstable); empty when it is."""
        return compare.distrust_reasons(self.row)

    @property
    def median_ci(self) -> list[float] | None:
        return compare.median_ci(self.row)

    @property
    def accuracy_passed(self) -> bool:
        return self.ok and bool((self.row.get("accuracy") or {}).get("passed"))

    @property
    def median(self) -> float | None:
        return self.row["latency_ms"]["median"] if self.ok else None

    @property
    def label(self) -> str:
        """backend and what it computed (its precision mode's label): the series name in tables and plots."""
        return f"{self.row.get('backend')} {row_label(self.row)}"

    @property
    def series_label(self) -> str:
        """The label, and the machine when the run holds several: a plot's series never mixes machines."""
        return self.label if self.machine_label is None else f"{self.label} on {self.machine_label}"

    @property
    def group(self) -> tuple:
        """model, task, seq_len, batch_size, threads, padding_ratio: the shape a speedup is measured at."""
        return compare.shape_key(self.row)


@dataclass
class Report:
    path: Path
    manifest: dict
    entries: list[Entry]
    completeness: Completeness | None = None
    loaded: list[dict] = field(default_factory=list)
    """The rows measured under load (offline, server, closed loop): a section per scenario, never in the latency
    tables or the verdict (tables.load_sections)."""

    @property
    def rows(self) -> list[dict]:
        return [e.row for e in self.entries]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(str(e.row.get("model")) for e in self.entries))

    @property
    def machines(self) -> list[Machine | None]:
        """The machines the cases were measured on, in the order their first case comes."""
        return list({id(e.machine): e.machine for e in self.entries}.values())

    @property
    def several_machines(self) -> bool:
        return len(self.machines) > 1


def by_machine(entries: list[Entry]) -> list[tuple[Machine | None, list[Entry]]]:
    """(machine, its cases) per machine; one group, its machine None, when every case comes from one machine."""
    found: dict[int, tuple[Machine | None, list[Entry]]] = {}
    for entry in entries:
        found.setdefault(id(entry.machine), (entry.machine, []))[1].append(entry)
    return [(None, entries)] if len(found) < 2 else list(found.values())


def load(run_path) -> Report:
    run_dir = RunDir(Path(run_path))
    manifest = run_dir.read_manifest()
    rows = latest_rows(run_dir.rows())
    entries = annotate(single_stream(rows), manifest.get("peak"), manifest)
    completeness = Completeness.of(manifest, rows)
    return Report(run_dir.path, manifest, entries, completeness, under_load(rows))


def incomplete_notice(report: Report) -> str | None:
    """What a reader must see first when the run has planned cases without a row."""
    done = report.completeness
    if done is None or done.complete:
        return None
    runs = report.manifest.get("runs")
    stopped = isinstance(runs, list) and runs and isinstance(runs[-1], dict) and runs[-1].get("interrupted")
    missing, planned = len(done.not_run), len(done.planned or [])
    return (
        f"{'The run was interrupted: ' if stopped else ''}{missing} of {planned} planned {plural('case', planned)}"
        f" {'has' if missing == 1 else 'have'} no row (not run: {done.missing_names()}), so this report is partial."
        f" Continue with: bench run --resume {report.path}"
    )


NO_BASELINE_HERE = "no eager fp32 of its environment at this shape on its machine"
"""Why a case of a run with several machines has no speedup: baselines are never taken from another machine."""


def annotate(rows: list[dict], peak: dict | None, manifest: dict | None = None) -> list[Entry]:
    """Every row's entry. With the manifest, rows are placed on their machines: speedups, fastest and % of peak are
    figured within each machine, against its own baselines and its own peak; without it, all are one machine's."""
    if manifest is None:
        return annotate_machine(rows, peak)
    machines = Machines(manifest, peak)
    grouped = machines.group(rows)
    entries: dict[int, Entry] = {}
    for key, members in grouped.items():
        machine = machines.known[key]
        for entry in annotate_machine(members, machine.peak):
            entry.machine = machine
            if len(grouped) > 1:
                entry.machine_label = machine.short
                refuse_missing_baseline(entry)
            entries[id(entry.row)] = entry
    return [entries[id(row)] for row in rows]


def refuse_missing_baseline(entry: Entry) -> None:
    if entry.comparison is None and entry.ok:
        entry.comparison = compare.Speedup(refused=NO_BASELINE_HERE)


def annotate_machine(rows: list[dict], peak: dict | None) -> list[Entry]:
    """The entries of rows of one machine, against its baselines and its peak."""
    comparisons, across = compare.speedups(rows), compare.speedups_vs_main(rows)
    counts = roofline.flops_by_shape(rows)
    entries = []
    for row in rows:
        entry = Entry(row, comparison=comparisons[row["case_id"]], versus_main=across[row["case_id"]])
        entry.flops = counts.get(roofline.flop_shape(row))
        entry.gflops = roofline.achieved_gflops(entry.flops, entry.median)
        entry.peak_gflops = roofline.peak_gflops(peak, str(row.get("precision")), row.get("threads"))
        if not entry.distrust:
            entry.pct_peak = roofline.percent_of_peak(entry.gflops, entry.peak_gflops)
            entry.notes += roofline.rating_notes(row, entry.pct_peak)
        entries.append(entry)
    mark_fastest(entries)
    return entries


def groups(entries: list[Entry]) -> dict[tuple, list[Entry]]:
    by_group: dict[tuple, list[Entry]] = {}
    for entry in entries:
        by_group.setdefault(entry.group, []).append(entry)
    return by_group


def mark_fastest(entries: list[Entry]) -> None:
    """Per shape and thread count, the fastest trusted case and those tied with it; a faster failing one is flagged."""
    for members in groups(entries).values():
        by_row = {id(e.row): e for e in members}
        best_row, tied_rows = compare.fastest_or_tied([e.row for e in members])
        best = by_row[id(best_row)] if best_row is not None else None
        if best is not None:
            best.fastest = True
        for row in tied_rows:
            by_row[id(row)].tied = True
        for entry in members:
            if entry.ok and not entry.accuracy_passed and (best is None or entry.median < best.median):
                entry.beats_fastest_but_fails = True


def sort_key(entry: Entry) -> tuple:
    return table_order(entry.row)


def accuracy_text(entry: Entry) -> str:
    """pass, FAIL with what failed, or the case's status when it has no measurement."""
    if not entry.ok:
        return str(entry.row.get("status"))
    accuracy = entry.row.get("accuracy") or {}
    if accuracy.get("passed"):
        return "pass"
    return "FAIL: " + ("; ".join(accuracy.get("failures") or []) or "no accuracy recorded")


@dataclass
class Warnings:
    failed: list[tuple[str, str, str]]
    """(case_id, status, reason)"""
    accuracy: list[tuple[str, str]]
    faster_but_failing: list[tuple[str, str]]
    untrusted: list[tuple[str, str]]
    """(case_id, why): measured and accurate, but not compared"""
    measurement: list[tuple[str, str]]
    """(case_id, warning): unstable, capped or short samples, threads not as asked"""
    stderr_tails: dict[str, str]
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    """(case_id, reason): the backend's maker declines the model or task, or this CPU cannot run or only emulates
    the precision"""


def collect_warnings(entries: list[Entry]) -> Warnings:
    found = Warnings([], [], [], [], [], {})
    for entry in entries:
        row, case_id = entry.row, str(entry.row.get("case_id"))
        if row.get("status") in NOT_RUN_ON_PURPOSE:
            found.unsupported.append((case_id, str(row.get("reason") or "no reason recorded")))
        elif not entry.ok:
            found.failed.append((case_id, str(row.get("status")), str(row.get("reason") or "no reason recorded")))
            if row.get("stderr_tail"):
                found.stderr_tails[case_id] = str(row["stderr_tail"])
        elif not entry.accuracy_passed:
            found.accuracy.append((case_id, accuracy_text(entry)))
        elif entry.distrust:
            why = ", ".join(entry.distrust)
            found.untrusted.append((case_id, f"{why}: no speedup, not ranked, no % of peak"))
        if entry.beats_fastest_but_fails:
            found.faster_but_failing.append(
                (case_id, "faster than every passing configuration of its shape, but fails accuracy: not ranked")
            )
        found.measurement += [(case_id, str(w)) for w in row.get("warnings") or []]
        found.measurement += [(case_id, f"% of peak: {note}") for note in entry.notes]
    return found
