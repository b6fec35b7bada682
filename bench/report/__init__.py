"""`bench report RUN_DIR`: tables (Markdown, CSV, HTML), plots (PNG, SVG) and the machine, from a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report.formats import FORMATS, Material


@dataclass
class Written:
    out_dir: Path
    files: dict[str, Path]
    """each format written → its file (or folder), in the registry's order"""
    plots: list[Path]
    skipped: list[str]

    @property
    def markdown(self) -> Path | None:
        return self.files.get("md")

    @property
    def html(self) -> Path | None:
        return self.files.get("html")

    @property
    def csv(self) -> Path | None:
        return self.files.get("csv")

    def listed(self) -> list[Path]:
        """The paths `bench report` prints."""
        return [path for name, path in self.files.items() if FORMATS[name].listed]


def default_out_dir(run_path) -> Path:
    return Path("reports") / Path(run_path).resolve().name


def build_report(run_path, out_dir=None, formats=None) -> Written:
    """Read the run folder and write the formats asked for (every one by default) into out_dir."""
    from bench.report import data

    report = data.load(run_path)
    out = Path(out_dir) if out_dir else default_out_dir(run_path)
    out.mkdir(parents=True, exist_ok=True)
    material = Material(report, out)
    files = {name: out / form.name for name, form in FORMATS.items() if formats is None or name in formats}
    for name, path in files.items():
        FORMATS[name].write(material, path)
    plots, skipped = material.drawn or ([], [])
    return Written(out, files, [p.png for p in plots] + [p.svg for p in plots], [f"{s.title}: {s.reason}" for s in skipped])
