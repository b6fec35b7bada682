"""`bench show RUN_DIR`: a run folder's results as a terminal table, Markdown, CSV or JSON, or its verdict."""

from __future__ import annotations

import json
import sys

from bench.cpu import cpu_header_text
from bench.results.completeness import Completeness
from bench.plan.matrix import parse_filters
from bench.results.folder import RunDir, latest_rows, row_is_good
from bench.results.machines import Machines
from bench.results.rows import matches

FORMATS = ("table", "md", "csv", "json")


def select_rows(rows: list[dict], filters: list[str]) -> list[dict]:
    """The rows every --filter FIELD=VALUE matches (values of one field are alternatives)."""
    wanted = parse_filters(filters)
    return [r for r in rows if matches(r, wanted)]


def show(run_dir: RunDir, fmt: str = "table", sort: str = "speed", filters=(), summary: bool = False,
         out=None, color: bool | None = None) -> bool:  # fmt: skip
    """Print the run in `fmt`; True when the run is complete and every case passed."""
    out = out or sys.stdout
    manifest = run_dir.read_manifest()
    all_rows = latest_rows(run_dir.rows())
    rows = select_rows(all_rows, list(filters))
    done = Completeness.of(manifest, all_rows)
    data_only = fmt in ("csv", "json")
    status = sys.stderr if data_only else out
    header = None if data_only else cpu_header_text(manifest)
    if header:
        print(header, file=out)
    if not data_only:
        print(done.summary() + ("\n" if summary else ""), file=out)
    if summary:
        print(verdict_markdown(rows, manifest), file=out)
    else:
        print(formatted(rows, fmt, sort, out.isatty() if color is None else color, manifest), file=out)
    if not done.complete:
        where = run_dir.path
        print(f"\nIncomplete: {done.missing_text()}\ncontinue with: bench run --resume {where}", file=status)
    return done.complete and all(row_is_good(r) for r in all_rows)


def per_machine(rows: list[dict], manifest: dict | None) -> list[tuple[str | None, list[dict]]]:
    """(heading, rows) per machine the rows were measured on; one group without heading for a single machine."""
    machines = Machines(manifest)
    grouped = machines.group(rows)
    if len(grouped) < 2:
        return [(None, rows)]
    return [(f"On {machines.known[key].name}", members) for key, members in grouped.items()]


def formatted(rows: list[dict], fmt: str, sort: str, color: bool, manifest: dict | None = None) -> str:
    if fmt == "json":
        from bench.results.rows import ordered

        return json.dumps(ordered(rows, sort), indent=2)
    if fmt == "table":
        from bench.cli.table import render, terminal_width

        parts = []
        for heading, members in per_machine(rows, manifest):
            text = render(members, sort=sort, color=color, width=terminal_width(color))
            parts.append(f"## {heading}\n\n{text}" if heading else text)
        return "\n\n".join(parts)
    from bench.report import data, tables
    from bench.results.offline import single_stream

    entries = data.annotate(single_stream(rows), None, manifest)
    if fmt == "csv":
        return tables.to_csv(entries).rstrip("\n")  # the latency table's columns: offline rows are in the JSON
    from bench.report.markdown import pipeline_lines, table

    lines = []
    for machine, mine in data.by_machine(entries):
        lines += [f"## On {machine.name}", ""] if machine else []
        for (model, task), members in tables.by_model(mine).items():
            lines += [f"### {model} ({task})", "", *table(*tables.table_cells(members))]
        generation = tables.generation_cells(mine)
        lines += ["### Text generation", "", *table(tables.GENERATION_HEADER, generation)] if generation else []
        lines += pipeline_lines(mine, "###")
    lines += load_lines(rows)
    return "\n".join(lines).rstrip("\n")


def load_lines(rows: list[dict]) -> list[str]:
    """The Markdown tables of the rows measured under load, one per scenario, each with its legend."""
    from bench.report import tables
    from bench.report.markdown import cell, table

    lines = []
    for section in tables.load_sections(rows):
        lines += [f"### {section.title}", "", cell(section.legend), "", *table(section.header, section.cells)]
    return lines


def verdict_markdown(rows: list[dict], manifest: dict | None = None) -> str:
    from bench.report.markdown import cell
    from bench.report.verdict import markdown_lines
    from bench.results.verdict import verdicts

    from bench.results.offline import single_stream

    lines = []
    for heading, members in per_machine(rows, manifest):
        lines += [f"# {heading}", ""] if heading else []
        alone = single_stream(members)
        lines += markdown_lines(verdicts(members), cell) if alone or len(alone) == len(members) else []
        lines += load_lines(members)
    return "\n".join(lines).rstrip("\n")
