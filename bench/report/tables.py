"""The results tables, as text cells (Markdown, HTML) and as raw values (CSV)."""

from __future__ import annotations

import csv
import io
import json

from bench.report.data import Entry, accuracy_text, groups, sort_key

FASTEST, FAILS = "★ fastest", "⚠ fails accuracy"


def number(value, digits: int = 2) -> str:
    """Fixed decimals below 100, whole numbers above: 3.14, 31.42, 314."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"


def mark(entry: Entry) -> str:
    if entry.fastest:
        return FASTEST
    if entry.beats_fastest_but_fails:
        return FAILS
    return ""


def _latency(entry: Entry, key: str):
    return entry.row["latency_ms"].get(key) if entry.ok else None


def _timing(entry: Entry, key: str):
    return (entry.row.get("timings_ms") or {}).get(key)


def _peak_mb(entry: Entry):
    return (entry.row.get("memory") or {}).get("peak_rss_mb")


def _cv(entry: Entry):
    cv = _latency(entry, "cv")
    return None if cv is None else 100 * cv


COLUMNS = (
    ("", mark),
    ("seq", lambda e: str(e.row.get("seq_len"))),
    ("batch", lambda e: str(e.row.get("batch_size"))),
    ("threads", lambda e: str(e.row.get("threads"))),
    ("padding", lambda e: f"{e.row.get('padding_ratio') or 0:g}"),
    ("backend", lambda e: str(e.row.get("backend"))),
    ("precision", lambda e: str(e.row.get("precision"))),
    ("median ms", lambda e: number(_latency(e, "median"))),
    ("p90 ms", lambda e: number(_latency(e, "p90"))),
    ("CV %", lambda e: number(_cv(e), 1)),
    ("samples/s", lambda e: number((e.row.get("throughput") or {}).get("samples_per_s"), 1)),
    ("speedup", lambda e: f"{e.speedup:.2f}x" if e.speedup else "-"),
    ("accuracy", accuracy_text),
    ("prepare ms", lambda e: number(_timing(e, "prepare"))),
    ("1st call ms", lambda e: number(_timing(e, "first_call"))),
    ("peak MB", lambda e: number(_peak_mb(e), 0)),
    ("GFLOP/s", lambda e: number(e.gflops, 1)),
    ("% peak", lambda e: number(e.pct_peak, 1)),
)


def columns(entries: list[Entry]) -> list[tuple]:
    """The table's columns; padding only when some case is padded."""
    padded = any(e.row.get("padding_ratio") for e in entries)
    return [c for c in COLUMNS if c[0] != "padding" or padded]


def by_model(entries: list[Entry]) -> dict[tuple[str, str], list[Entry]]:
    """(model, task) → its cases in table order: shape, threads, then fastest first."""
    tables: dict[tuple[str, str], list[Entry]] = {}
    for entry in sorted(entries, key=sort_key):
        tables.setdefault((str(entry.row.get("model")), str(entry.row.get("task"))), []).append(entry)
    return tables


def table_cells(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    cols = columns(entries)
    return [c[0] for c in cols], [[c[1](e) for c in cols] for e in entries]


SUMMARY_HEADER = ["model", "task", "seq", "batch", "threads", "fastest passing", "median ms", "speedup", "note"]


def summary_cells(entries: list[Entry]) -> list[list[str]]:
    """One line per shape and thread count: the fastest configuration that passes accuracy."""
    lines = []
    for members in sorted(groups(entries).values(), key=lambda m: sort_key(m[0])):
        first = members[0].row
        best = next((e for e in members if e.fastest), None)
        flagged = [e.label for e in members if e.beats_fastest_but_fails]
        note = ("faster but failing accuracy: " + ", ".join(flagged)) if flagged else ""
        shape = [str(first.get(k)) for k in ("model", "task", "seq_len", "batch_size", "threads")]
        if best is None:
            lines.append([*shape, "none passes", "-", "-", note])
        else:
            speed = f"{best.speedup:.2f}x" if best.speedup else "-"
            lines.append([*shape, best.label, number(best.median), speed, note])
    return lines


CSV_FIELDS = (
    "case_id", "model", "task", "backend", "backend_type", "precision", "seq_len", "batch_size", "threads",
    "padding_ratio", "baseline", "status", "reason",
)  # fmt: skip
CSV_LATENCY = ("median", "p90", "p95", "p99", "mean", "min", "max", "std", "cv", "iqr")


def csv_record(entry: Entry) -> dict:
    row = entry.row
    record = {k: row.get(k) for k in CSV_FIELDS}
    record.update({f"latency_{k}_ms": _latency(entry, k) for k in CSV_LATENCY})
    throughput = row.get("throughput") or {}
    accuracy = row.get("accuracy") or {}
    record.update(
        samples_per_s=throughput.get("samples_per_s"),
        tokens_per_s=throughput.get("tokens_per_s"),
        speedup=entry.speedup,
        accuracy_passed=accuracy.get("passed") if entry.ok else None,
        relative_error=accuracy.get("relative_error"),
        max_abs_diff=accuracy.get("max_abs_diff"),
        cosine=accuracy.get("cosine"),
        argmax_agreement=accuracy.get("argmax_agreement"),
        load_ms=_timing(entry, "load"),
        prepare_ms=_timing(entry, "prepare"),
        first_call_ms=_timing(entry, "first_call"),
        peak_rss_mb=_peak_mb(entry),
        flops=entry.flops,
        gflops_per_s=entry.gflops,
        peak_gflops_per_s=entry.peak_gflops,
        percent_of_peak=entry.pct_peak,
        fastest=entry.fastest,
        faster_but_fails_accuracy=entry.beats_fastest_but_fails,
        warnings=json.dumps(row.get("warnings") or []),
    )
    return record


def to_csv(entries: list[Entry]) -> str:
    records = [csv_record(e) for e in sorted(entries, key=sort_key)]
    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return out.getvalue()
