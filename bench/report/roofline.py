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


PADDING_SKIPPING_BACKENDS = ("bettertransformer",)
"""Backends that skip the padded tokens: FLOPs counted on the padded shape overstate what they compute."""


def mixed(row: dict) -> bool:
    """int8 rows are mixed: only the weight matmuls run in int8, attention stays in floating point, yet they are
    rated against the int8 × int8 peak."""
    return row.get("precision") == "int8"


def rating_notes(row: dict, pct: float | None) -> list[str]:
    """What the reader must know before trusting a case's % of peak; empty when nothing is off."""
    notes = []
    if pct is not None and pct > 100:
        notes.append(
            f"{pct:.0f}% of the peak is impossible: a measurement problem (the probe ran while the CPUs were busy,"
            " or the FLOPs are overcounted)"
        )
    if row.get("backend_type") in PADDING_SKIPPING_BACKENDS and (row.get("padding_ratio") or 0) > 0:
        notes.append("FLOPs counted on the padded shape; this backend skips padding, so its rate reads high")
    return notes
