"""Achieved GFLOP/s of a case against the machine's matmul peak at the same precision and thread count."""

from __future__ import annotations

FLOP_SHAPE_KEYS = ("model", "task", "seq_len", "batch_size")
"""What a forward pass's FLOP count depends on: not the backend, precision, threads or padding share."""


def flop_shape(row: dict) -> tuple:
    return tuple(row.get(k) for k in FLOP_SHAPE_KEYS)


def flops_by_shape(rows: list[dict]) -> dict[tuple, int]:
    """The FLOP count of each model and shape, from any row that has it (a failed case has none of its own)."""
    counts: dict[tuple, int] = {}
    for row in rows:
        if isinstance(row.get("flops"), (int, float)) and row["flops"] > 0:
            counts.setdefault(flop_shape(row), int(row["flops"]))
    return counts


def peak_gflops(peak: dict | None, precision: str, threads: int) -> float | None:
    """The probe's rate for this precision at exactly this thread count, else None (no guessing)."""
    if not peak:
        return None
    return (peak.get("gflops", {}).get(precision) or {}).get(str(threads))


def achieved_gflops(flops: int | None, median_ms: float | None) -> float | None:
    if not flops or not median_ms:
        return None
    return flops / (median_ms / 1000) / 1e9


def percent_of_peak(gflops: float | None, peak: float | None) -> float | None:
    if gflops is None or not peak:
        return None
    return 100 * gflops / peak
