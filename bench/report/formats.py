"""The report's formats, one registry: each name with what it writes in the report folder and its writer.

`bench report --format NAME` picks among them (all by default). Every writer reads the same material: the run read
for the report, what a reader must be warned about, and the plots, drawn the first time a format needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from bench.report import data
    from bench.report.plots import Plot, Skipped

PLOTS_DIR = "plots"


@dataclass
class Material:
    """What every format writes from."""

    report: data.Report
    out: Path
    found: data.Warnings = field(init=False)
    drawn: tuple[list[Plot], list[Skipped]] | None = None
    """the plots and the plots not drawn, once a format needed them"""

    def __post_init__(self):
        from bench.report.data import annotate, collect_warnings

        self.found = collect_warnings(self.report.entries + annotate(self.report.loaded, None))

    def plots(self) -> tuple[list[Plot], list[Skipped]]:
        if self.drawn is None:
            from bench.report.plots import make_plots

            self.drawn = make_plots(self.report.entries, self.out / PLOTS_DIR, self.report.loaded)
        return self.drawn


@dataclass(frozen=True)
class Format:
    name: str
    """the file it writes in the report folder (for the plots, a folder)"""
    write: Callable[[Material, Path], object]
    help: str
    listed: bool = True
    """whether `bench report` prints its path (the plots are many files: the report lists them)"""


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_markdown(m: Material, path: Path) -> None:
    from bench.report import markdown

    write_text(path, markdown.render(m.report, m.found, *m.plots(), m.out))


def write_html(m: Material, path: Path) -> None:
    from bench.report import html

    write_text(path, html.render(m.report, m.found, *m.plots()))


def write_csv(m: Material, path: Path) -> None:
    from bench.report import tables

    write_text(path, tables.to_csv(m.report.entries))


FORMATS = {  # the writers import what they draw with when called: `bench --help` and the parser stay light
    "md": Format("report.md", write_markdown, "report.md: the verdict, tables and linked plots, to paste into a pull request"),
    "html": Format("report.html", write_html, "report.html: the same as one page, plots inline"),
    "csv": Format("results.csv", write_csv, "results.csv: one line per case with raw numbers"),
    "plots": Format(PLOTS_DIR, lambda m, path: m.plots(), "plots/: PNG and SVG of every plot the run has an axis for",
                    listed=False),  # fmt: skip
}
