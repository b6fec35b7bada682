"""The report's plots (matplotlib, Agg): each is drawn when the run has an axis for it, else skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report.data import Entry, sort_key

MAX_FACETS = 24
COLUMNS = 3
FACET_SIZE = (4.6, 3.2)
WIDE = FACET_SIZE[0] * COLUMNS
"""Inches: every figure is as wide as a full row of panels, so all read at one scale in the report."""


@dataclass
class Plot:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


@dataclass
class Skipped:
    title: str
    reason: str


def safe(text) -> str:
    """Suite text as literal plot text: a `$` would otherwise start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


def colours(entries: list[Entry]) -> dict[str, tuple]:
    """One colour per backend and precision, the same in every plot."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(e.label for e in sorted(entries, key=series_order)))
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(i % palette.N) for i, label in enumerate(labels)}


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
    return (not entry.row.get("baseline"), entry.label)


def series(members: list[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for entry in sorted(members, key=series_order):
        out.setdefault(entry.label, []).append(entry)
    return out


def save(figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    figure.savefig(png, dpi=110)
    figure.savefig(svg)
    plt.close(figure)
    return png, svg


def make_plots(entries: list[Entry], out_dir: Path) -> tuple[list[Plot], list[Skipped]]:
    """Every plot the data has an axis for, as PNG and SVG under out_dir; the others with why they are not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return [], [Skipped("Plots", "matplotlib is not installed (pip install 'bench[report]')")]
    from bench.report import charts

    for name, _, _ in charts.CHARTS:
        for stale in (out_dir / f"{name}.png", out_dir / f"{name}.svg"):
            stale.unlink(missing_ok=True)
    if not any(e.ok for e in entries):
        return [], [Skipped("Plots", "no case was measured")]
    palette = colours(entries)
    plots, skipped = [], []
    for name, title, draw in charts.CHARTS:
        figure, caption = draw(entries, palette)
        if figure is None:
            skipped.append(Skipped(title, caption))
            continue
        png, svg = save(figure, out_dir, name)
        plots.append(Plot(name, title, caption, png, svg))
    return plots, skipped

