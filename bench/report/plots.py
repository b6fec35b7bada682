"""The report's plots (matplotlib, Agg): each is drawn when the run has an axis for it, else skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report import charts
from bench.report.data import Entry
from bench.report.panels import series_order


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


def colours(entries: list[Entry]) -> dict[str, tuple]:
    """One colour per series (backend and precision, and machine when several), the same in every plot."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(e.series_label for e in sorted(entries, key=series_order)))
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(i % palette.N) for i, label in enumerate(labels)}


def save(figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    figure.savefig(png, dpi=110)
    figure.savefig(svg)
    plt.close(figure)
    return png, svg


def machines_caption(entries: list[Entry]) -> str:
    """What a caption adds when the cases come from several machines: how their series are told apart."""
    labels = list(dict.fromkeys(e.machine_label for e in entries if e.machine_label))
    if len(labels) < 2:
        return ""
    listed = "; ".join(labels)
    return f" The cases come from {len(labels)} machines ({listed}): each series is one machine's (\"on ...\")."


def make_plots(entries: list[Entry], out_dir: Path, loaded: list[dict] = ()) -> tuple[list[Plot], list[Skipped]]:
    """Every plot the data has an axis for, as PNG and SVG under out_dir; the others with why they are not drawn.
    `loaded`: the rows measured under load, drawn by their own charts (bench.report.load_charts)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return [], [Skipped("Plots", "matplotlib is not installed (pip install 'bench[report]')")]
    from bench.report.load_charts import LOAD_CHARTS

    for name, _, _ in charts.CHARTS + LOAD_CHARTS:
        for stale in (out_dir / f"{name}.png", out_dir / f"{name}.svg"):
            stale.unlink(missing_ok=True)
    alone, under_load = any(e.ok for e in entries), any(r.get("status") == "ok" for r in loaded)
    if not alone and not under_load:
        return [], [Skipped("Plots", "no case was measured")]
    palette = colours(entries)
    drawings = [(name, title, lambda draw=draw: draw(entries, palette)) for name, title, draw in charts.CHARTS if alone]
    drawings += [(name, title, lambda draw=draw: draw(list(loaded))) for name, title, draw in LOAD_CHARTS if under_load]
    plots, skipped = [], []
    for name, title, draw in drawings:
        figure, caption = draw()
        if figure is None:
            skipped.append(Skipped(title, caption))
            continue
        png, svg = save(figure, out_dir, name)
        plots.append(Plot(name, title, caption + machines_caption(entries), png, svg))
    return plots, skipped
