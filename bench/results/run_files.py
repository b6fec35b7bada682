"""A run folder read strictly, for the commands that compare or keep runs (compare, history, export, baseline save).

Like every reader they never write, and may read a folder a run is still appending to: a torn last line is left
alone and skipped. Unlike `bench show` and `bench report`, which skip a damaged line with a warning, they refuse a
folder with one (a comparison must not quietly lose a case), naming the file, the line and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.results.folder import RunDir, complete_lines, latest_rows


@dataclass(frozen=True)
class Run:
    path: Path
    manifest: dict
    rows: list[dict]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def started(self) -> str | None:
        runs = self.manifest.get("runs") or [{}]
        return runs[0].get("started") if isinstance(runs[0], dict) else None

    @property
    def commit(self) -> str | None:
        return (self.manifest.get("git") or {}).get("commit")

    @property
    def dirty(self) -> bool:
        return bool((self.manifest.get("git") or {}).get("dirty"))

    def by_case(self) -> dict[str, dict]:
        return {row["case_id"]: row for row in self.rows}


def load_run(path) -> Run:
    """The manifest and the latest row of each case; bad input raises a BenchError naming file and field."""
    folder = RunDir(Path(path))
    return Run(folder.path, folder.read_manifest(), latest_rows(read_rows(folder.rows_path)))


def read_rows(path: Path) -> list[dict]:
    """Every complete row; a torn last line is skipped (not repaired), any other bad line is an error."""
    if not path.exists():
        raise BenchError(f"{path}: expected the run's rows, got no such file")
    rows = []
    for number, line in complete_lines(path.read_bytes())[0]:
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BenchError(f"{path}: line {number}: expected a JSON row, got {exc}") from None
        check_row(row, f"{path}: line {number}")
        rows.append(row)
    return rows


def check_row(row, where: str) -> None:
    """The fields a comparison reads: case_id, status, and for a measured row its samples and median."""
    if not isinstance(row, dict) or not isinstance(row.get("case_id"), str):
        raise BenchError(f"{where}: case_id: expected a row with a case id, got {str(row)[:80]!r}")
    if row.get("status") != "ok":
        return
    where = f"{where} ({row['case_id']})"
    median = (row.get("latency_ms") or {}).get("median") if isinstance(row.get("latency_ms"), dict) else None
    if not positive(median):
        raise BenchError(f"{where}: latency_ms.median: expected a latency in ms above 0, got {median!r}")
    samples = row.get("samples_ms")
    if not isinstance(samples, list) or not samples or not all(positive(s) for s in samples):
        raise BenchError(f"{where}: samples_ms: expected a list of latencies in ms above 0, got {str(samples)[:80]}")
    rounds = row.get("round_samples_ms")
    if rounds is not None and not (
        isinstance(rounds, list) and all(isinstance(r, list) and all(positive(s) for s in r) for r in rounds)
    ):
        raise BenchError(f"{where}: round_samples_ms: expected one list of latencies per round, got {str(rounds)[:80]}")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
