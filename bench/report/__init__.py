"""`bench report RUN_DIR`: tables (Markdown, CSV, HTML), plots (PNG, SVG) and the machine, from a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report import data, html, markdown, tables
from bench.report.plots import make_plots

REPORT_MD, REPORT_HTML, RESULTS_CSV, PLOTS_DIR = "report.md", "report.html", "results.csv", "plots"


@dataclass
class Written:
    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    plots: list[Path]
    skipped: list[str]


def default_out_dir(run_path) -> Path:
    return Path("reports") / Path(run_path).resolve().name


def build_report(run_path, out_dir=None) -> Written:
    """Read the run folder and write report.md, report.html, results.csv and plots/ into out_dir."""
    report = data.load(run_path)
    out = Path(out_dir) if out_dir else default_out_dir(run_path)
    out.mkdir(parents=True, exist_ok=True)
    found = data.collect_warnings(report.entries)
    plots, skipped = make_plots(report.entries, out / PLOTS_DIR)
    written = Written(out, out / REPORT_MD, out / REPORT_HTML, out / RESULTS_CSV, [], [])
    written.markdown.write_text(markdown.render(report, found, plots, skipped, out), encoding="utf-8")
    written.html.write_text(html.render(report, found, plots, skipped), encoding="utf-8")
    written.csv.write_text(tables.to_csv(report.entries), encoding="utf-8")
    written.plots = [p.png for p in plots] + [p.svg for p in plots]
    written.skipped = [f"{s.title}: {s.reason}" for s in skipped]
    return written
