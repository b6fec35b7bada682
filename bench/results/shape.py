"""Whether a parsed line of results.jsonl is a row the readers can use: the keys they index, of the types they need."""

from __future__ import annotations

import math

from bench.measure.stats import STATISTICS

RESULTS_SCHEMA = 1

TEXT_KEYS = ("case_id", "status", "model", "task", "backend", "precision")
INTEGER_KEYS = ("seq_len", "batch_size", "threads")
OPTIONAL_TYPES = {
    "reason": (str,),
    "warnings": (list,),
    "accuracy": (dict,),
    "throughput": (dict,),
    "timings_ms": (dict,),
    "memory": (dict,),
    "precision_mode": (dict,),
    "cpu_support": (dict,),
    "samples_ms": (list,),
    "latency_ms": (dict,),
}
MEASURED_LATENCIES = ("median", "p90")
EXPECTED = {str: "a string", list: "a list", dict: "an object"}


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def type_name(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number" if math.isfinite(value) else "NaN or infinity"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def given(row: dict, key: str) -> str:
    if key not in row:
        return "no such key"
    return "an empty string" if row[key] == "" else type_name(row[key])


def row_problem(row) -> str | None:
    """None for a usable row, else what is wrong with it, in a few words."""
    if not isinstance(row, dict):
        return f"expected an object, got {type_name(row)}"
    if row.get("schema") != RESULTS_SCHEMA:
        got = repr(row["schema"])[:20] if "schema" in row else "no such key"
        return f"schema: expected {RESULTS_SCHEMA}, got {got}"
    for key in TEXT_KEYS:
        if not isinstance(row.get(key), str) or not row[key]:
            return f"{key}: expected a non-empty string, got {given(row, key)}"
    for key in INTEGER_KEYS:
        if not is_integer(row.get(key)):
            return f"{key}: expected an integer, got {given(row, key)}"
    if row.get("padding_ratio") is not None and not is_number(row["padding_ratio"]):
        return f"padding_ratio: expected a number, got {type_name(row['padding_ratio'])}"
    for key, types in OPTIONAL_TYPES.items():
        if row.get(key) is not None and not isinstance(row[key], types):
            return f"{key}: expected {EXPECTED[types[0]]} or null, got {type_name(row[key])}"
    if row["status"] != "ok":
        return None
    return measured_problem(row) or accuracy_problem(row.get("accuracy") or {})


def measured_problem(row: dict) -> str | None:
    """An `ok` row carries finite latencies (a positive median and p90) and finite samples."""
    latency = row.get("latency_ms") or {}
    for key in MEASURED_LATENCIES:
        if not is_number(latency.get(key)) or latency[key] <= 0:
            return f"latency_ms.{key}: expected a positive number in an ok row, got {type_name(latency.get(key))}"
    for key in STATISTICS:
        if latency.get(key) is not None and not is_number(latency[key]):
            return f"latency_ms.{key}: expected a number, got {type_name(latency[key])}"
    interval = latency.get("median_ci")
    pair = isinstance(interval, list) and len(interval) == 2 and all(map(is_number, interval))
    if interval is not None and not pair:
        return f"latency_ms.median_ci: expected [low, high] or null, got {type_name(interval)}"
    if not all(is_number(v) for v in row.get("samples_ms") or []):
        return "samples_ms: expected finite numbers"
    for key, value in (row.get("throughput") or {}).items():
        if value is not None and not is_number(value):
            return f"throughput.{key}: expected a number, got {type_name(value)}"
    return None


def accuracy_problem(accuracy: dict) -> str | None:
    """The figures the tables print, when the comparison produced figures (NaN is a figure: it is reported)."""
    if not isinstance(accuracy.get("failures") or [], list):
        return f"accuracy.failures: expected a list, got {type_name(accuracy['failures'])}"
    for key in ("relative_error", "max_abs_diff", "cosine", "argmax_agreement"):
        value = accuracy.get(key)
        if value is not None and not isinstance(value, (int, float)):
            return f"accuracy.{key}: expected a number, got {type_name(value)}"
    return None
