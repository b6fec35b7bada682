"""Pipeline cases in the report: the per-stage table, the model's share of end to end by text length, the CSV
columns and the stacked bar chart of stage times (docs/reports.md#pipelines)."""

from __future__ import annotations

from bench.backends.precision_mode import row_label
from bench.report.data import Entry, sort_key
from bench.report.panels import WIDE, facet_title, facets, grid, safe

PARTS = ("tokenize", "model", "postprocess", "other")
TEXT_ORDER = {"short": 0, "medium": 1, "long": 2}
HEADER = [
    "model", "backend", "precision", "texts", "threads", "tokens", "end to end ms", "tokenize ms", "model ms",
    "post-process ms", "other ms", "model share", "answers",
]  # fmt: skip
LEGEND = (
    "Whole transformers pipeline calls on the shipped texts of each length, one text per call, round-robin. Tokens:"
    " the median text's length in tokens. End to end and each stage: medians over calls; tokenize is the pipeline's"
    " preprocess, model its forward, post-process its postprocess, other the pipeline's own work between them (the"
    " four sum to end to end). Model share: the model's part of the summed end-to-end time. Answers: the share of"
    " texts whose answer (span, label, embedding) agrees with eager fp32's pipeline (docs/results.md#pipelines)."
)


def pipelined(entries: list[Entry]) -> list[Entry]:
    ordered = sorted((e for e in entries if e.row.get("pipeline") and e.ok), key=sort_key)
    return sorted(ordered, key=lambda e: TEXT_ORDER.get(e.row.get("texts"), 3))


def number(value, digits: int = 2) -> str:
    """As the other tables: fixed decimals below 100, whole numbers above."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"


def stage(entry: Entry, part: str):
    return ((entry.row["pipeline"].get("stages_ms") or {}).get(part) or {}).get("median")


def answers_text(entry: Entry) -> str:
    accuracy = entry.row.get("accuracy") or {}
    agreement = accuracy.get("answer_agreement")
    if agreement is None:
        return "-"
    first = accuracy.get("first_disagreement")
    verdict = "" if accuracy.get("passed") else "FAIL "
    return f"{verdict}{agreement:.0%}" + (f" (first disagreeing text {first})" if first is not None else "")


def cells(entries: list[Entry]) -> list[list[str]]:
    """One line per measured pipeline case: its stage medians and the model's share of end to end."""
    lines = []
    for e in pipelined(entries):
        row, entry = e.row, e.row["pipeline"]
        share = (entry.get("share") or {}).get("model")
        lines.append([
            str(row.get("model")), str(row.get("backend")), row_label(row), str(row.get("texts")),
            str(row.get("threads")), number(entry.get("tokens_median"), 0), number(stage(e, "e2e")),
            *(number(stage(e, part)) for part in PARTS), f"{share:.0%}" if share is not None else "-", answers_text(e),
        ])  # fmt: skip
    return lines


def share_line(entries: list[Entry]) -> str:
    """The model's share of end to end at each text length, over the backends (lowest-highest)."""
    by_texts: dict[str, list[float]] = {}
    for e in pipelined(entries):
        share = (e.row["pipeline"].get("share") or {}).get("model")
        if share is not None:
            by_texts.setdefault(e.row.get("texts"), []).append(share)
    parts = []
    for texts, shares in by_texts.items():
        low, high = min(shares), max(shares)
        parts.append(f"{texts} {low:.0%}" + (f"-{high:.0%}" if f"{high:.0%}" != f"{low:.0%}" else ""))
    return "Model share of end to end, by text length (over backends): " + ", ".join(parts) + "."


def record(entry: Entry) -> dict:
    """A pipeline case's CSV columns; empty cells for any other case."""
    pipeline = entry.row.get("pipeline") if entry.ok else None
    accuracy = entry.row.get("accuracy") or {}
    figures = {f"pipeline_{part}_ms_median": stage(entry, part) if pipeline else None for part in (*PARTS, "e2e")}
    return {
        "texts": entry.row.get("texts"),
        "pipeline_tokens_median": (pipeline or {}).get("tokens_median"),
        **figures,
        "pipeline_model_share": ((pipeline or {}).get("share") or {}).get("model"),
        "answer_agreement": accuracy.get("answer_agreement"),
    }


def stage_bars(entries: list[Entry], palette: dict):
    """A stacked bar per backend and precision at each text length: its stage medians, one panel per model."""
    measured = pipelined(entries)
    if not measured:
        return None, "the run has no pipeline cases"
    from matplotlib import colormaps

    colours = dict(zip(PARTS, colormaps["Set2"].colors))
    keys = ("model", "task", "threads")
    panels = facets(measured, keys)
    figure, axes = grid(len(panels), columns=1, size=(WIDE, 3.6))
    for ax, (key, members) in zip(axes, panels.items()):
        members = sorted(members, key=lambda e: TEXT_ORDER.get(e.row.get("texts"), 3))
        labels = [f"{e.row.get('texts')}\n{e.row.get('backend')} {row_label(e.row)}" for e in members]
        bottom = [0.0] * len(members)
        for part in PARTS:
            heights = [stage(e, part) or 0.0 for e in members]
            ax.bar(range(len(members)), heights, 0.7, bottom=bottom, color=colours[part], label=part)
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_xticks(range(len(members)), [safe(label) for label in labels], fontsize=7)
        ax.set(title=facet_title(key, keys), ylabel="median ms per call")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    caption = (
        "Each bar is one pipeline case: the medians of its stages stacked (tokenize, model, post-process, the"
        " pipeline's own other work), by text length and backend."
    )
    return figure, caption
