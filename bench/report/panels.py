"""What every chart draws with: panels (facets) of one figure, series of cases, and plot-safe text."""

from __future__ import annotations

from bench.report.data import Entry, sort_key

MAX_FACETS = 24
COLUMNS = 3
FACET_SIZE = (4.6, 3.2)
WIDE = FACET_SIZE[0] * COLUMNS
"""Inches: every figure is as wide as a full row of panels, so all read at one scale in the report."""


def safe(text) -> str:
    """Suite text as literal plot text: a `$` would otherwise start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


def facets(entries: list[Entry], keys: tuple[str, ...]) -> dict[tuple, list[Entry]]:
    by_key: dict[tuple, list[Entry]] = {}
    for entry in sorted(entries, key=sort_key):
        by_key.setdefault(tuple(entry.row.get(k) for k in keys), []).append(entry)
    return by_key


def facet_title(key: tuple, keys: tuple[str, ...]) -> str:
    short = {"seq_len": "seq", "batch_size": "batch", "padding_ratio": "padding"}
    parts = []
    for name, value in zip(keys, key):
        if name == "padding_ratio" and not value:
            continue
        parts.append(str(value) if name in ("model", "task") else f"{short.get(name, name)} {value}")
    return safe(" · ".join(parts))


def grid(count: int, size=FACET_SIZE, columns: int = COLUMNS):
    import matplotlib.pyplot as plt

    cols = min(columns, count)
    rows = -(-count // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, list(axes.flat[:count])


def legend_below(figure, axes_list) -> None:
    handles, labels = {}, []
    for ax in axes_list:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        ncol = min(len(labels), 5)
        figure.legend([handles[lb] for lb in labels], labels, loc="lower center", ncol=ncol, frameon=False)
        rows = -(-len(labels) // ncol)
        figure.tight_layout(rect=(0, min(0.4, 0.06 * rows * 3 / max(1, figure.get_figheight())), 1, 1))
    else:
        figure.tight_layout()


def capped(by_facet: dict) -> tuple[dict, str]:
    if len(by_facet) <= MAX_FACETS:
        return by_facet, ""
    kept = dict(list(by_facet.items())[:MAX_FACETS])
    return kept, f" The first {MAX_FACETS} of {len(by_facet)} panels are drawn; the tables have every case."


def series_order(entry: Entry) -> tuple:
    """The eager fp32 baseline first, then backends and precisions alphabetically: the same order in every panel."""
    return (not entry.row.get("baseline"), entry.label, entry.machine_label or "")


def series(members: list[Entry]) -> dict[str, list[Entry]]:
    """Series label → its cases: one series per backend and precision, and per machine when the run holds several."""
    out: dict[str, list[Entry]] = {}
    for entry in sorted(members, key=series_order):
        out.setdefault(entry.series_label, []).append(entry)
    return out
