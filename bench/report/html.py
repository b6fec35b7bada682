"""The HTML report: one self-contained file (styles inline, plots as data URIs), rendered by an autoescaping
Jinja2 template (templates/report.html.j2), so every suite or result text is escaped."""

from __future__ import annotations

import base64
from functools import cache

import jinja2

from bench.report import attention, environment, tables
from bench.report import verdict as verdict_section
from bench.report.data import Entry, Report, Warnings, incomplete_notice
from bench.report.markdown import LEGEND, summary_line
from bench.report.plots import Plot, Skipped
from bench.measure.stats import CV_WARNING
from bench.results.verdict import verdicts

NUMERIC = {"seq", "batch", "threads", "padding", "median ms", "95% CI ms", "p90 ms", "CV % (n)", "samples/s",
           "speedup [95% CI]", "prepare ms", "1st call ms", "peak MB", "loop peak MB", "GFLOP/s", "% peak"}  # fmt: skip


@cache
def template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("report.html.j2")


def table(header: list[str], rows: list[list[str]], classes=None, cell_classes=None) -> dict:
    """A table for the template: each row's class and each cell's text and classes."""
    out = []
    for index, row in enumerate(rows):
        cells = []
        for column, value in enumerate(row):
            names = ["num"] if header[column] in NUMERIC else ["mark"] if header[column] == "" else []
            names += (cell_classes or {}).get((index, column), [])
            cells.append({"text": value, "cls": " ".join(names)})
        out.append({"cls": (classes[index] if classes else "").strip(), "cells": cells})
    return {"header": header, "rows": out}


def row_class(entry: Entry) -> str:
    if not entry.ok:
        return "error"
    if entry.fastest:
        return "fastest"
    if entry.tied:
        return "tied"
    return "" if entry.accuracy_passed else "fail"


def results_table(members: list[Entry]) -> dict:
    header, rows = tables.table_cells(members)
    cv_column = header.index("CV % (n)")
    unstable = {
        (i, cv_column): ["unstable"]
        for i, entry in enumerate(members)
        if entry.ok and entry.row["latency_ms"].get("cv", 0) > CV_WARNING
    }
    starts = {i for i, m in enumerate(members) if i and m.group != members[i - 1].group}
    classes = [row_class(m) + (" group-start" if i in starts else "") for i, m in enumerate(members)]
    return table(header, rows, classes, unstable)


def plot_context(plot: Plot) -> dict:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return {"name": plot.name, "title": plot.title, "caption": plot.caption, "data": data}


def verdict_context(report: Report) -> list[dict]:
    return [
        {"model": v.model, "task": v.task, "notes": verdict_section.notes(v),
         "table": table(verdict_section.HEADER, verdict_section.cells(v), ["fastest", ""])}
        for v in verdicts(report.rows)
    ]  # fmt: skip


def render(report: Report, found: Warnings, plots: list[Plot], skipped: list[Skipped]) -> str:
    suite = (report.manifest.get("suite") or {}).get("name", "?")
    peak_header, peak_rows = environment.peak_rows(report.manifest.get("peak"))
    return template().render(
        title=f"Benchmark report: {suite} ({report.path.name})",
        notice=incomplete_notice(report),
        summary=summary_line(report),
        verdict_intro=verdict_section.INTRO,
        verdicts=verdict_context(report),
        attention=attention.groups(found),
        tails=found.stderr_tails,
        summary_table=table(tables.summary_header(report.entries), tables.summary_cells(report.entries)),
        legend=LEGEND,
        results=[
            {"heading": heading, "table": results_table(members)}
            for heading, members in tables.result_tables(report.entries).items()
        ],
        plots=[plot_context(p) for p in plots],
        skipped=skipped,
        machine=environment.machine_items(report.manifest),
        environments=table(environment.ENVIRONMENT_HEADER, environment.environment_rows(report.rows)),
        peak=table(peak_header, peak_rows),
        peak_note=environment.peak_note(report.manifest.get("peak")),
    )
