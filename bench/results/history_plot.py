"""The history as a PNG (matplotlib, Agg): one panel per case, the median of each run with its 95% interval.

Every panel shares the x axis of all the runs (date and commit), so a step in one case lines up with the others.
Runs that must not be compared are hollow and grey; a step is a dashed line at the first run where it appears.
"""

from __future__ import annotations

from pathlib import Path

from bench.results.history import Series
from bench.results.run_files import Run

MAX_PANELS = 24


def run_label(run: Run) -> str:
    commit = (run.commit or "-")[:7] + ("+" if run.dirty else "")
    return f"{(run.started or '?')[:10]}\n{commit}"


def plot_history(series_list: list[Series], runs: list[Run], path: Path) -> int:
    """Draw the first MAX_PANELS series into `path`; the number of series left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = series_list[:MAX_PANELS]
    cols = 1 if len(shown) <= 4 else 2
    rows = -(-len(shown) // cols)
    width = max(7.0, 0.5 * len(runs) + 3)
    figure, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.2 * rows), squeeze=False)
    for ax, series in zip(axes.flat, shown):
        draw_series(ax, series)
        ax.set_xticks(range(len(runs)), [run_label(r) for r in runs], fontsize=7)
        ax.set_xlim(-0.5, len(runs) - 0.5)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return len(series_list) - len(shown)


def draw_series(ax, series: Series) -> None:
    for point in series.points:
        if point.median is None:
            continue
        interval = point.interval or [point.median, point.median]
        error = [[point.median - interval[0]], [interval[1] - point.median]]
        style = {"color": "tab:blue", "mfc": "tab:blue"} if point.usable else {"color": "0.6", "mfc": "none"}
        ax.errorbar([point.order], [point.median], yerr=error, fmt="o", capsize=3, ms=5, **style)
        if point.step is not None:
            ax.axvline(point.order - 0.5, color="tab:red", linestyle="--", linewidth=1)
            ax.annotate(f"step {point.step:+.0%}", (point.order - 0.45, 0.97), xycoords=("data", "axes fraction"),
                        va="top", color="tab:red", fontsize=8)  # fmt: skip
    usable = [(p.order, p.median) for p in series.points if p.usable]
    if len(usable) > 1:
        ax.plot(*zip(*usable), color="tab:blue", linewidth=0.8, alpha=0.6)
    ax.set_title(series.case_id.replace("$", r"\$"), fontsize=9)
    ax.margins(y=0.2)  # room above the points for the steps' labels
    ax.set_ylabel("median ms")
    ax.grid(True, axis="y", alpha=0.3)
