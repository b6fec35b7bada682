"""A run's folder: manifest.json (what, where, when) and results.jsonl (one row per case, flushed as it ends)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import BenchError
from bench.job import NOT_RUN_ON_PURPOSE
from bench.results.shape import RESULTS_SCHEMA, row_problem, type_name  # noqa: F401 (RESULTS_SCHEMA: for writers)

MANIFEST = "manifest.json"
ROWS = "results.jsonl"
ROUNDS = "rounds.jsonl"
REJECTED = "results.jsonl.rejected"
LOCK = "run.lock"
MAX_WARNINGS = 10


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._warned: set[BadLine] = set()
        self.held = None
        """the folder's and the CPUs' locks, while this process runs or resumes it"""
        self.cpus: list[int] | None = None
        """the CPUs this process's run may use (None: every CPU it may use)"""

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def rejected_path(self) -> Path:
        return self.path / REJECTED

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def jobs(self) -> Path:
        """The workers' job and result files while a case runs (removed when it ends)."""
        return self.path / "jobs"

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None

    def create(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.write_manifest(manifest)

    def read_manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise BenchError(f"{self.manifest_path}: expected a run folder with a manifest.json, got no such file")
        except OSError as exc:
            raise BenchError(f"{self.manifest_path}: expected a readable file, got {exc.strerror or exc}")
        except UnicodeDecodeError:
            raise BenchError(f"{self.manifest_path}: expected JSON, got bytes that are not UTF-8 text")
        except ValueError as exc:
            raise BenchError(f"{self.manifest_path}: expected JSON, got {str(exc)[:100]}")
        except RecursionError:
            raise BenchError(f"{self.manifest_path}: expected JSON, got nesting too deep to read")
        if not isinstance(manifest, dict):
            raise BenchError(f"{self.manifest_path}: expected a JSON object, got {type_name(manifest)}")
        return manifest

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

    def read_rows(self) -> RowsRead:
        """Every usable row and every line skipped, reading only: the file is never changed here."""
        try:
            data = self.rows_path.read_bytes()
        except FileNotFoundError:
            return RowsRead([], [])
        except OSError as exc:
            raise BenchError(f"{self.rows_path}: expected a readable file, got {exc.strerror or exc}")
        rows, bad = [], []
        lines, torn = complete_lines(data)
        for number, line in lines:
            row, problem = parse_row(line)
            if problem is None:
                rows.append(row)
            else:
                bad.append(BadLine(number, problem))
        if torn:
            bad.append(BadLine(torn[0], f"torn last line (no newline; {len(torn[1])} bytes): a write cut short"))
        return RowsRead(rows, bad)

    def rows(self) -> list[dict]:
        """Every usable row; each skipped line is said once on stderr, naming the file and the line number."""
        read = self.read_rows()
        fresh = [b for b in read.bad if b not in self._warned]
        self._warned.update(fresh)
        for bad in fresh[:MAX_WARNINGS]:
            print(f"warning: {self.rows_path}:{bad.line}: skipped: {bad.problem}", file=sys.stderr)
        if len(fresh) > MAX_WARNINGS:
            print(f"warning: {self.rows_path}: {len(fresh) - MAX_WARNINGS} more bad lines skipped", file=sys.stderr)
        return read.rows

    def repair_torn_tail(self) -> str | None:
        """For the writer only, holding the folder's lock: move a torn last line to results.jsonl.rejected.

        Appending after a torn line would glue the next row to it. What is removed is kept, never thrown away.
        """
        try:
            with self.rows_path.open("r+b") as handle:
                data = handle.read()
                if not data or data.endswith(b"\n"):
                    return None
                keep = data.rfind(b"\n") + 1
                with self.rejected_path.open("ab") as rejected:
                    rejected.write(data[keep:] + b"\n")
                    rejected.flush()
                    os.fsync(rejected.fileno())
                handle.truncate(keep)
                os.fsync(handle.fileno())
        except FileNotFoundError:
            return None
        line = data[:keep].count(b"\n") + 1
        return (
            f"{self.rows_path}:{line}: a torn last line ({len(data) - keep} bytes, no newline) was moved to"
            f" {self.rejected_path.name}; its case runs again"
        )


@dataclass(frozen=True)
class BadLine:
    line: int
    problem: str


@dataclass
class RowsRead:
    rows: list[dict]
    bad: list[BadLine]


def complete_lines(data: bytes) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """The lines that end in a newline, numbered from 1, blank ones left out; and the torn last line (its number and
    bytes), a write cut short, or None."""
    lines = data.split(b"\n")
    numbered = [(number, line) for number, line in enumerate(lines[:-1], start=1) if line.strip()]
    return numbered, (len(lines), lines[-1]) if lines[-1] else None


def parse_row(line: bytes) -> tuple[dict | None, str | None]:
    """(row, None) for a usable row, else (None, what is wrong with the line)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError as exc:
        return None, f"not JSON ({str(exc)[:80]})"
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    problem = row_problem(row)
    return (row, None) if problem is None else (None, f"not a row: {problem}")


def latest_rows(rows: list[dict]) -> list[dict]:
    """The last row per case_id, in first-seen order."""
    by_id: dict[str, dict] = {}
    for row in rows:
        by_id[row["case_id"]] = row
    return list(by_id.values())


def row_is_good(row: dict) -> bool:
    """Measured, accurate, and neither contaminated by other work nor unstable across rounds, or declined by the
    backend's maker or this CPU with a reason (status unsupported), or emulated or kept fp32 here and left out
    (not_measured): what exit 0 needs."""
    if row.get("status") in NOT_RUN_ON_PURPOSE:
        return True
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
