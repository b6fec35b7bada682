"""Offline rows (bench.run.offline): samples per second under load with their interval, and each split of the CPUs
against its group's single-stream split, paired.

A row's throughput is the geometric mean of its rounds' median windows; its interval comes from the spread between
rounds (each round is a fresh set of processes), moderated towards the run's other offline rows as paired speedups
are (bench.measure.paired). The split ratio is the paired figure: windows of the two splits measured next to each
other in time, so the machine's drift cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.measure import paired
from bench.results.compare import distrust_reasons, without_drift

SINGLE_STREAM = "single-stream"


def is_offline(row: dict) -> bool:
    return (row.get("scenario") or SINGLE_STREAM) == "offline"


def single_stream(rows: list[dict]) -> list[dict]:
    """The rows every latency table, speedup and verdict is about: one call at a time."""
    return [r for r in rows if (r.get("scenario") or SINGLE_STREAM) == SINGLE_STREAM]


def under_load(rows: list[dict]) -> list[dict]:
    """The rows measured under load (offline, server, closed loop): each scenario's own table, apart."""
    return [r for r in rows if (r.get("scenario") or SINGLE_STREAM) != SINGLE_STREAM]


def offline_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_offline(r)]


@dataclass(frozen=True)
class Figure:
    """A ratio or a rate with its interval, or why there is none."""

    value: float | None = None
    interval: tuple[float, float] | None = None
    why_not: str | None = None

    def text(self, digits: int = 1, suffix: str = "") -> str:
        if self.value is None:
            return f"- ({self.why_not})" if self.why_not else "-"
        shown = f"{self.value:.{digits}f}{suffix}"
        if self.interval is None:
            return f"{shown} (1 round: no interval)"
        low, high = self.interval
        return f"{shown} [{low:.{digits}f}, {high:.{digits}f}]"


def window_rounds(row: dict) -> paired.Rounds | None:
    windows = (row.get("load") or {}).get("windows") or []
    logs = [[math.log(w) for w in per_round if w and w > 0] for per_round in windows]
    rounds = paired.Rounds.of(logs)
    return rounds if rounds.means else None


def throughputs(rows: list[dict]) -> dict[str, Figure]:
    """Every measured offline row's samples/s with its 95% interval."""
    found, comparisons = {}, {}
    for row in offline_rows(rows):
        reasons = without_drift(distrust_reasons(row))
        rounds = window_rounds(row) if row.get("status") == "ok" else None
        if rounds is None:
            found[row["case_id"]] = Figure(why_not=", ".join(reasons) or "not measured")
        else:
            comparisons[row["case_id"]] = rounds
    for case_id, ratio in paired.ratios(comparisons).items():
        found[case_id] = Figure(ratio.ratio, ratio.interval)
    return found


def split_ratios(rows: list[dict]) -> dict[str, Figure]:
    """Each offline row paired with its group's single-stream split: its throughput over that split's."""
    by_id = {r["case_id"]: r for r in rows}
    found, comparisons = {}, {}
    for row in offline_rows(rows):
        entry = row.get("paired") or {}
        if entry.get("role") != "configuration":
            continue
        baseline = by_id.get(entry.get("baseline"))
        reasons = without_drift(distrust_reasons(row)) + (
            without_drift(distrust_reasons(baseline)) if baseline else ["no baseline row"]
        )
        logs = entry.get("log_speedups") or []
        if reasons or not any(logs):
            found[row["case_id"]] = Figure(why_not=", ".join(reasons) or "no pairs")
            continue
        comparisons[row["case_id"]] = paired.Rounds.of(logs)
    for case_id, ratio in paired.ratios(comparisons).items():
        found[case_id] = Figure(ratio.ratio, ratio.interval)
    return found


def split_text(row: dict) -> str:
    """streams × threads per stream, and whose streams they are when the backend's own (one process)."""
    load = row.get("load") or {}
    streams = load.get("streams", row.get("streams", 1))
    own = " (OpenVINO streams)" if streams > 1 and (row.get("backend_options") or {}).get("own_streams") else ""
    return f"{streams} × {load.get('threads_per_stream', row.get('threads'))}{own}"


def latency_percentile(row: dict, name: str) -> float | None:
    """The median over rounds of a latency percentile of the calls under load."""
    import statistics

    values = [p[name] for p in (row.get("load") or {}).get("latency_ms") or [] if p and p.get(name) is not None]
    return statistics.median(values) if values else None
