"""The results table that `bench show` prints: one line per case, speedup over eager fp32 at the same shape."""

from __future__ import annotations

from bench.compare import distrust_reasons, main_baseline_label, median_ci, shape_key, speedups, speedups_vs_main
from bench.precision_mode import row_label
from bench.results import row_is_good

COLUMNS = (
    "model", "backend", "precision", "seq", "batch", "threads", "status",
    "median ms", "95% CI ms", "p90 ms", "samples/s", "speedup [95% CI]", "accuracy",
)  # fmt: skip


def accuracy_text(row: dict) -> str:
    accuracy = row.get("accuracy")
    if not accuracy:
        return "-"
    if accuracy.get("max_abs_diff") is None:
        return "FAIL " + "; ".join(accuracy.get("failures", []))
    text = f"{'pass' if accuracy['passed'] else 'FAIL'} |d|{accuracy['max_abs_diff']:.1e} cos {accuracy['cosine']:.5f}"
    if accuracy.get("argmax_agreement") is not None:
        text += f" argmax {accuracy['argmax_agreement']:.0%}"
    return text


def columns(rows: list[dict]) -> list[str]:
    """COLUMNS, and the ratio against main's eager fp32 when some row ran in another environment."""
    if any((r.get("environment") or "main") != "main" for r in rows):
        return [*COLUMNS[:-1], main_baseline_label(rows), COLUMNS[-1]]
    return list(COLUMNS)


def table_rows(rows: list[dict]) -> list[list[str]]:
    factors, across = speedups(rows), speedups_vs_main(rows)
    shown_across = len(columns(rows)) > len(COLUMNS)
    lines = []
    for row in sorted(rows, key=lambda r: (*map(str, shape_key(r)[:2]), *shape_key(r)[2:], r["backend"], row_label(r))):
        ok = row["status"] == "ok"
        factor, versus_main = factors[row["case_id"]], across[row["case_id"]]
        lines.append([
            row["model"], row["backend"], row_label(row), str(row["seq_len"]), str(row["batch_size"]),
            str(row["threads"]), row["status"],
            f"{row['latency_ms']['median']:.2f}" if ok else "-",
            interval_text(median_ci(row)) if ok else "-",
            f"{row['latency_ms']['p90']:.2f}" if ok else "-",
            f"{row['throughput']['samples_per_s']:.1f}" if ok else "-",
            factor.text() if factor else "-",
            *([versus_main.text() if versus_main else "-"] if shown_across else []),
            accuracy_text(row) if ok else "-",
        ])  # fmt: skip
    return lines


def interval_text(interval: list[float] | None) -> str:
    return f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "n/a"


def render(rows: list[dict]) -> str:
    body, header = table_rows(rows), columns(rows)
    widths = [max(len(c), *(len(line[i]) for line in body)) if body else len(c) for i, c in enumerate(header)]
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in body]
    problems = [r for r in rows if not row_is_good(r)]
    if problems:
        out.append("")
        out.append("Needs attention:")
        out += [f"  {r['case_id']}: {problem_of(r)}" for r in problems]
    untrusted = [(r, distrust_reasons(r)) for r in rows if row_is_good(r) and distrust_reasons(r)]
    if untrusted:
        out.append("")
        out.append("Not compared (no speedup, not ranked):")
        out += [f"  {r['case_id']}: {', '.join(reasons)}" for r, reasons in untrusted]
    warned = [r for r in rows if r.get("warnings")]
    if warned:
        out.append("")
        out.append("Warnings:")
        for r in warned:
            for warning in r["warnings"]:
                out.append(f"  {r['case_id']}: {warning}")
    return "\n".join(out)


def problem_of(row: dict) -> str:
    """Why a row keeps the run from exiting 0, in one line."""
    if row["status"] != "ok":
        return f"{row['status']}: {row['reason']}"
    accuracy = row.get("accuracy") or {}
    if not accuracy.get("passed"):
        return "accuracy: " + "; ".join(accuracy.get("failures", []))
    interference = row.get("interference") or {}
    if interference.get("contaminated"):
        return "contaminated: " + "; ".join(interference.get("reasons") or []) + "; rerun it on a quiet machine"
    levels = (row.get("rounds_agreement") or {}).get("levels_ms") or []
    return "unstable across rounds: medians at " + " and ".join(f"{m:.4g} ms" for m in levels)
