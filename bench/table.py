"""The results table that `bench show` prints: one line per case, speedup over eager fp32 at the same shape."""

from __future__ import annotations

from bench.results import row_is_good

SHAPE_KEYS = ("model", "task", "seq_len", "batch_size", "threads", "padding_ratio")
COLUMNS = (
    "model", "backend", "precision", "seq", "batch", "threads", "status",
    "median ms", "p90 ms", "samples/s", "speedup", "accuracy",
)  # fmt: skip


def shape_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in SHAPE_KEYS)


def baselines(rows: list[dict]) -> dict[tuple, float]:
    """Median latency of the eager fp32 case per shape."""
    return {shape_key(r): r["latency_ms"]["median"] for r in rows if r.get("baseline") and r["status"] == "ok"}


def speedup(row: dict, base: dict[tuple, float]) -> float | None:
    reference = base.get(shape_key(row))
    if reference is None or row["status"] != "ok":
        return None
    return reference / row["latency_ms"]["median"]


def accuracy_text(row: dict) -> str:
    """The verdict, the gated relative error, top-1 agreement, and whether the hidden state went uncompared."""
    accuracy = row.get("accuracy")
    if not accuracy:
        return "-"
    if accuracy.get("relative_error") is None:
        return "pass" if accuracy.get("passed") else "FAIL " + "; ".join(accuracy.get("failures", []))
    text = f"{'pass' if accuracy['passed'] else 'FAIL'} err {accuracy['relative_error']:.1e}"
    if accuracy.get("argmax_agreement") is not None:
        text += f" top1 {accuracy['argmax_agreement']:.0%}"
    if accuracy.get("not_compared"):
        text += " (no hidden state)"
    return text


def table_rows(rows: list[dict]) -> list[list[str]]:
    base = baselines(rows)
    lines = []
    for row in sorted(rows, key=lambda r: (*map(str, shape_key(r)[:2]), *shape_key(r)[2:], r["backend"], r["precision"])):
        ok = row["status"] == "ok"
        factor = speedup(row, base)
        lines.append([
            row["model"], row["backend"], row["precision"], str(row["seq_len"]), str(row["batch_size"]),
            str(row["threads"]), row["status"],
            f"{row['latency_ms']['median']:.2f}" if ok else "-",
            f"{row['latency_ms']['p90']:.2f}" if ok else "-",
            f"{row['throughput']['samples_per_s']:.1f}" if ok else "-",
            f"{factor:.2f}x" if factor else "-",
            accuracy_text(row) if ok else "-",
        ])  # fmt: skip
    return lines


def render(rows: list[dict]) -> str:
    body = table_rows(rows)
    widths = [max(len(c), *(len(line[i]) for line in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in body]
    problems = [r for r in rows if not row_is_good(r)]
    if problems:
        out.append("")
        out.append("Needs attention:")
        for r in problems:
            why = r["reason"] if r["status"] != "ok" else "accuracy: " + "; ".join(r["accuracy"].get("failures", []))
            out.append(f"  {r['case_id']}: {r['status']}: {why}")
    warned = [r for r in rows if r.get("warnings")]
    if warned:
        out.append("")
        out.append("Warnings:")
        for r in warned:
            for warning in r["warnings"]:
                out.append(f"  {r['case_id']}: {warning}")
    return "\n".join(out)
