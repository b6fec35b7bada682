"""A run's folder: manifest.json (what, where, when) and results.jsonl (one row per case, flushed as it ends)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import BenchError

RESULTS_SCHEMA = 1
MANIFEST = "manifest.json"
ROWS = "results.jsonl"
ROUNDS = "rounds.jsonl"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def create(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.write_manifest(manifest)

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise BenchError(f"{self.manifest_path}: expected a run folder with a manifest.json, got no such file")
        except json.JSONDecodeError as exc:
            raise BenchError(f"{self.manifest_path}: expected JSON, got {exc}")

    def write_manifest(self, manifest: dict) -> None:
        tmp = self.manifest_path.with_suffix(".json.partial")
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, self.manifest_path)

    def append(self, row: dict) -> None:
        """One line, written whole, flushed and synced: a killed parent loses no finished case."""
        append_line(self.rows_path, row)

    def append_round(self, record: dict) -> None:
        """A finished round of a case measured in several rounds, kept until the case's row is written."""
        append_line(self.path / ROUNDS, record)

    def round_records(self) -> list[dict]:
        """Every complete round record; a line that is not one is skipped."""
        records = []
        path = self.path / ROUNDS
        for line in path.read_bytes().splitlines(keepends=True) if path.exists() else []:
            try:
                record = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                record = None
            if isinstance(record, dict) and {"case_id", "round", "row"} <= record.keys():
                records.append(record)
        return records

    def rows(self) -> list[dict]:
        """Every complete row; a torn last line (the writer was killed mid-write) is dropped from the file."""
        if not self.rows_path.exists():
            return []
        data = self.rows_path.read_bytes()
        rows, good_length = [], 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn line")
                rows.append(json.loads(line))
                good_length += len(line)
            except ValueError:
                break
        if good_length != len(data):
            with self.rows_path.open("r+b") as handle:
                handle.truncate(good_length)
        return rows


def latest_rows(rows: list[dict]) -> list[dict]:
    """The last row per case_id, in first-seen order."""
    by_id: dict[str, dict] = {}
    for row in rows:
        by_id[row["case_id"]] = row
    return list(by_id.values())


def row_is_good(row: dict) -> bool:
    """Measured, accurate, and neither contaminated by other work nor unstable across rounds: what exit 0 needs."""
    return (
        row.get("status") == "ok"
        and bool((row.get("accuracy") or {}).get("passed"))
        and not (row.get("interference") or {}).get("contaminated")
        and (row.get("rounds_agreement") or {}).get("verdict") != "unstable"
    )


def append_line(path: Path, record: dict) -> None:
    line = json.dumps(record, default=str) + "\n"
    with path.open("a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
