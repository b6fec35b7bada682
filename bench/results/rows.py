"""How every table lists rows: shape by shape, each shape in a chosen order, and each row's sample count."""

from __future__ import annotations

from bench.plan.matrix import _text
from bench.results.compare import shape_key

NUMERIC_SHAPE = ("seq_len", "batch_size", "threads", "padding_ratio")


def median_or_last(row: dict) -> float:
    """The row's median latency; infinity for a row without one, so it sorts last."""
    return row["latency_ms"]["median"] if row.get("status") == "ok" and row.get("latency_ms") else float("inf")


def preparation_ms(row: dict) -> float | None:
    """What preparing the row's case took: its worker's `prepare`, and what the run built ahead for it
    (bench.run.ahead) when it did."""
    timings = row.get("timings_ms") or {}
    if timings.get("prepare") is None:
        return None
    return timings["prepare"] + (timings.get("ahead_prepare") or 0.0)


SORT_KEYS = {
    "speed": median_or_last,
    "backend": lambda r: (str(r.get("backend")), str(r.get("precision"))),
    "precision": lambda r: (str(r.get("precision")), median_or_last(r)),
    "environment": lambda r: (str(r.get("environment")), median_or_last(r)),
    "prepare": lambda r: preparation_ms(r) or float("inf"),
    "memory": lambda r: (r.get("memory") or {}).get("peak_rss_mb") or float("inf"),
}
"""--sort: the order of the rows within each shape."""


def table_order(row: dict) -> tuple:
    """Model and task by name, then sequence length, batch, threads and padding by size; fastest first within a
    shape, rows without a median last."""
    return (str(row.get("model")), str(row.get("task")), *(row.get(k) or 0 for k in NUMERIC_SHAPE), median_or_last(row))


def by_shape(rows: list[dict]) -> list[list[dict]]:
    """The rows grouped by the shape a speedup is measured at, the shapes in the order of table_order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(shape_key(row), []).append(row)
    order = sorted(groups, key=lambda k: (*map(str, k[:2]), *(v or 0 for v in k[2:])))
    return [groups[k] for k in order]


def ordered(rows: list[dict], sort: str = "speed") -> list[dict]:
    """Shape by shape, each shape's rows in --sort order."""
    return [row for members in by_shape(rows) for row in sorted(members, key=SORT_KEYS[sort])]


def count_text(row: dict) -> str:
    """n=<samples>, and the rounds when the row merges several."""
    rounds = row.get("round_samples_ms")
    several = isinstance(rounds, list) and len(rounds) > 1
    return f"n={len(row.get('samples_ms') or [])}" + (f", {len(rounds)} rounds" if several else "")


def matches(row: dict, filters: dict[str, set[str]]) -> bool:
    """Whether the row passes every parsed --filter: values of one field are alternatives, fields must all match."""
    return all(_text(row.get(key)) in values for key, values in filters.items())
