"""`bench history [RESULTS_DIR]`: every run of each case over time, with the steps where its latency changed for good.

The runs are the folders of RESULTS_DIR that hold a manifest.json, ordered by the time they started. A case's
series is kept per kind of machine (bench.results.identity): runs on different machines are different histories.

A step is a lasting change. At run i, take the level before it: the trusted runs since the last step (at most the
last STEP_LOOKBACK of them). Run i starts a step up when its median and the next run's (STEP_CONFIRM runs in all)
are each above every one of those runs' 95% intervals and at least the threshold above the level's median (down:
the mirror image); the step's size is the median of those runs against the level's. A single outlying run is not
a step; a change in the latest run alone is not one yet. Runs that must not be compared (contaminated, unstable,
failed) are shown but neither make nor break a step.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.results.compare import distrust_reasons, median_ci, measured
from bench.errors import BenchError
from bench.results.identity import kind_key, machine_identity
from bench.results.regression import THRESHOLD
from bench.results.folder import MANIFEST
from bench.results.rows import matches
from bench.results.run_files import Run, load_run

STEP_CONFIRM = 2
STEP_LOOKBACK = 5


@dataclass
class Point:
    """One run of one case."""

    run: Run
    order: int
    row: dict
    step: float | None = None  # the relative change of a step that starts here

    @property
    def median(self) -> float | None:
        return self.row["latency_ms"]["median"] if measured(self.row) else None

    @property
    def interval(self) -> list[float] | None:
        return median_ci(self.row)

    @property
    def usable(self) -> bool:
        return not distrust_reasons(self.row) and self.interval is not None


@dataclass
class Series:
    case_id: str
    machine: str
    points: list[Point] = field(default_factory=list)


def find_runs(results_dir: Path) -> tuple[list[Run], list[str]]:
    """The run folders directly under results_dir, oldest first, and a note for each one that cannot be read."""
    if not results_dir.is_dir():
        raise BenchError(f"{results_dir}: expected a folder of run folders, got no such folder")
    runs, notes = [], []
    for folder in sorted(p for p in results_dir.iterdir() if (p / MANIFEST).is_file()):
        try:
            run = load_run(folder)
            machine_identity(run.manifest.get("machine"), str(run.path / MANIFEST))
            runs.append(run)
        except BenchError as exc:
            notes.append(f"skipped: {exc}")
    runs.sort(key=lambda run: (run.started or "", run.name))
    return runs, notes


def collect(runs: list[Run], filters: dict[str, set[str]], threshold: float = THRESHOLD) -> list[Series]:
    """One series per case and kind of machine, in the runs' order, with its steps marked."""
    found: dict[tuple[str, str], Series] = {}
    for order, run in enumerate(runs):
        key = kind_key(run.manifest.get("machine"), str(run.path / MANIFEST))
        for row in run.rows:
            if matches(row, filters):
                series = found.setdefault((row["case_id"], key), Series(row["case_id"], key))
                series.points.append(Point(run, order, row))
    for series in found.values():
        mark_steps(series.points, threshold)
    return sorted(found.values(), key=lambda s: (s.case_id, s.machine))


def mark_steps(points: list[Point], threshold: float) -> None:
    """Set `step` on the point where each lasting change starts (see the module's description)."""
    usable = [p for p in points if p.usable]
    start = 0
    for i in range(1, len(usable) - STEP_CONFIRM + 1):
        level = usable[max(start, i - STEP_LOOKBACK) : i]
        window = [p.median for p in usable[i : i + STEP_CONFIRM]]
        change = step_between(level, window, threshold)
        if change is not None:
            usable[i].step = change
            start = i


def step_between(level: list[Point], window: list[float], threshold: float) -> float | None:
    """The relative change from the level to the window, when every run of the window is a step away from it."""
    before = statistics.median(p.median for p in level)
    top, bottom = max(p.interval[1] for p in level), min(p.interval[0] for p in level)
    if all(m > top and m >= before * (1 + threshold) for m in window):
        return statistics.median(window) / before - 1
    if all(m < bottom and m <= before / (1 + threshold) for m in window):
        return statistics.median(window) / before - 1
    return None
