"""The HTML report: one self-contained file (styles inline, plots as data URIs), rendered by an autoescaping
Jinja2 template (templates/report.html.j2), so every suite or result text is escaped."""

from __future__ import annotations

import base64
from functools import cache

import jinja2

from bench.report import attention, environment, pipelines, tables
from bench.report import verdict as verdict_section
from bench.report.data import Entry, Report, Warnings, incomplete_notice
from bench.report.markdown import GENERATION_LEGEND, LEGEND, MACHINES_NOTE, machine_groups, peak_groups, summary_line
from bench.report.plots import Plot, Skipped
from bench.measure.stats import CV_WARNING
from bench.results.verdict import verdicts

NUMERIC = {"seq", "batch", "threads", "padding", "median ms", "95% CI ms", "p90 ms", "CV % (n)", "samples/s",
           "speedup [95% CI]", "paired speedups", "median half-width", "prepare ms", "1st call ms", "peak MB", "loop peak MB", "GFLOP/s", "% peak"}  # fmt: skip


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


def verdict_context(rows: list[dict]) -> list[dict]:
    return [
        {"model": v.model, "task": v.task, "notes": verdict_section.notes(v),
         "table": table(verdict_section.HEADER, verdict_section.cells(v), ["fastest", ""])}
        for v in verdicts(rows)
    ]  # fmt: skip


def machine_context(report: Report) -> list[dict]:
    """Per machine (one group without heading for a single machine): its verdicts, summary and results tables."""
    return [
        {
            "heading": heading,
            "verdicts": verdict_context([e.row for e in members]),
            "summary": table(tables.SUMMARY_HEADER, tables.summary_cells(members)),
            "results": [
                {"heading": model, "table": results_table(model_members)}
                for model, model_members in tables.result_tables(members).items()
            ],
        }
        for heading, members in machine_groups(report)
    ]


def peak_context(report: Report) -> list[dict]:
    found = []
    for heading, peak in peak_groups(report):
        header, rows = environment.peak_rows(peak)
        note = environment.peak_note(peak, machine=bool(heading))
        found.append({"heading": heading, "table": table(header, rows), "note": note})
    return found


def resolution_context(report: Report) -> dict | None:
    found = tables.resolution(report.rows)
    if found is None:
        return None
    intro, header, rows = found
    return {"intro": intro, "table": table(header, rows)}


def generation_table(report: Report) -> dict | None:
    rows = tables.generation_cells(report.entries)
    return table(tables.GENERATION_HEADER, rows) if rows else None


def pipeline_table(report: Report) -> dict | None:
    rows = pipelines.cells(report.entries)
    return table(pipelines.HEADER, rows) if rows else None


def load_sections(report: Report) -> list[dict]:
    return [{"anchor": s.anchor, "title": s.title, "legend": s.legend, "table": table(s.header, s.cells)}
            for s in tables.load_sections(report.loaded)]  # fmt: skip


def render(report: Report, found: Warnings, plots: list[Plot], skipped: list[Skipped]) -> str:
    suite = (report.manifest.get("suite") or {}).get("name", "?")
    return template().render(
        title=f"Benchmark report: {suite} ({report.path.name})",
        notice=incomplete_notice(report),
        summary=summary_line(report),
        machines_note=MACHINES_NOTE.format(count=len(report.machines)) if report.several_machines else None,
        verdict_intro=verdict_section.INTRO,
        machines=machine_context(report),
        resolution=resolution_context(report),
        attention=attention.groups(found),
        tails=found.stderr_tails,
        legend=LEGEND,
        generation=generation_table(report),
        generation_legend=GENERATION_LEGEND,
        pipelines=pipeline_table(report),
        pipelines_legend=pipelines.LEGEND,
        pipelines_share=pipelines.share_line(report.entries),
        load_sections=load_sections(report),
        plots=[plot_context(p) for p in plots],
        skipped=skipped,
        machine=environment.machine_items(report.manifest),
        environments=table(environment.ENVIRONMENT_HEADER, environment.environment_rows(report.rows)),
        peaks=peak_context(report),
    )
