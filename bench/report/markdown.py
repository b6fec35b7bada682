"""The Markdown report: the text to paste into a pull request, plots linked beside it."""

from __future__ import annotations

from pathlib import Path

from bench.report import attention, environment, tables
from bench.report import verdict as verdict_section
from bench.report.data import Entry, Report, Warnings, by_machine, incomplete_notice
from bench.report.plots import Plot, Skipped
from bench.results.verdict import verdicts

LEGEND = (
    f"{tables.FASTEST}: the fastest configuration of its shape and thread count among those that pass the accuracy"
    f" check and are trusted (not contaminated, not unstable). {tables.TIED}: its median's 95% interval overlaps"
    f" the fastest's, so the two cannot be told apart. {tables.FAILS}: faster than the fastest, but its outputs"
    " differ from eager fp32 beyond tolerance. 95% CI: the range that holds the true median with 95% confidence."
    " Speedup is over eager fp32 of the case's own environment (the same software) at the same shape and threads,"
    " with its interval; for cases of another environment, the column headed vs eager fp32 (main, ...) gives the"
    " cross-environment ratio against main's eager fp32, a change of library included; ≈ marks a speedup whose"
    " interval contains 1 (no measurable difference); — says why a case is not compared. GFLOP/s counts the"
    " model's matrix products at the median latency; peak MB is the worker's peak RSS (export or compilation"
    " included), loop peak MB that of the first call, warm-up and timed loop alone; % peak compares it with the matmul probe at the same"
    " precision and thread count."
)
GENERATION_LEGEND = (
    "Whole greedy generate calls of \"new\" tokens after a prompt of \"prompt\" tokens, with the KV cache. TTFT: time"
    " to first token (prefill and its choice), median over calls; decode ms/token: one later token, median and p90"
    " over every step; decode tok/s: tokens 2..N per second; tok/s (e2e): generated tokens per second of whole"
    " calls. Speedup is over eager fp32's whole call at the same shape and threads. Token agreement: the share of"
    " generated tokens equal to eager fp32's, position by position; the prefill's logits are checked too"
    " (docs/results.md#text-generation)."
)


def cell(text) -> str:
    """Suite or result text as literal Markdown: no table breaks, no HTML, no emphasis or links."""
    text = str(text).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "|`*[]":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def pipeline_lines(entries, level: str) -> list[str]:
    """The Pipelines section: the legend, the model's share by text length, the per-stage table."""
    from bench.report import pipelines

    rows = pipelines.cells(entries)
    if not rows:
        return []
    legend = [cell(pipelines.LEGEND), ""] if level == "##" else []
    share = [cell(pipelines.share_line(entries)), ""]
    return [f"{level} Pipelines", "", *legend, *share, *table(pipelines.HEADER, rows)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def attention_lines(found: Warnings) -> list[str]:
    """One paragraph per kind with its explanation, then each case with what is particular to it."""
    lines = ["## Needs attention", ""]
    for group in attention.groups(found):
        lines += [f"**{group.title}** ({len(group.items)}): {cell(group.explanation)}", ""]
        lines += [f"- `{cell(c)}`" + (f": {cell(detail)}" if detail else "") for c, detail in group.items] + [""]
    return lines if len(lines) > 2 else lines + ["Nothing: every case ran, passed and was stable.", ""]


def render(report: Report, found: Warnings, plots: list[Plot], skipped: list[Skipped], out_dir: Path) -> str:
    suite = (report.manifest.get("suite") or {}).get("name", "?")
    lines = [f"# Benchmark report: {cell(suite)} ({cell(report.path.name)})", ""]
    notice = incomplete_notice(report)
    lines += [f"> **Incomplete run.** {cell(notice)}", ""] if notice else []
    lines += [summary_line(report), ""]
    lines += machines_note(report)
    lines += verdict_lines(report)
    lines += attention_lines(found)
    lines += ["## Fastest passing configuration per shape", ""]
    for title, members in machine_groups(report):
        lines += [f"### {cell(title)}", ""] if title else []
        lines += table(tables.SUMMARY_HEADER, tables.summary_cells(members))
    lines += resolution_lines(report)
    lines += ["## Results", "", cell(LEGEND), ""]
    for title, members in machine_groups(report):
        lines += [f"### {cell(title)}", ""] if title else []
        for heading, model_members in tables.result_tables(members).items():
            lines += [f"{'####' if title else '###'} {cell(heading)}", ""]
            lines += table(*tables.table_cells(model_members))
    generation = tables.generation_cells(report.entries)
    if generation:
        lines += ["## Text generation", "", cell(GENERATION_LEGEND), ""]
        lines += table(tables.GENERATION_HEADER, generation)
    lines += pipeline_lines(report.entries, "##")
    for section in tables.load_sections(report.loaded):
        lines += [f"## {section.title}", "", cell(section.legend), ""] + table(section.header, section.cells)
    lines += ["## Plots", ""]
    for plot in plots:
        link = plot.png.relative_to(out_dir).as_posix()
        svg = plot.svg.relative_to(out_dir).as_posix()
        lines += [f"### {plot.title}", "", f"![{plot.title}]({link})", "", f"{cell(plot.caption)} ([SVG]({svg}))", ""]
    if skipped:
        lines += ["Not drawn:", ""] + [f"- {cell(s.title)}: {cell(s.reason)}" for s in skipped] + [""]
    lines += ["## Machine and environment", ""]
    lines += table(["", ""], [[k, v] for k, v in environment.machine_items(report.manifest)])
    lines += ["### Environments the cases ran in", ""]
    lines += table(environment.ENVIRONMENT_HEADER, environment.environment_rows(report.rows))
    lines += ["### Matmul peak", ""]
    for title, peak in peak_groups(report):
        lines += [f"#### {cell(title)}", ""] if title else []
        header, rows = environment.peak_rows(peak)
        lines += table(header, rows) if rows else []
        lines += [cell(environment.peak_note(peak, machine=bool(title))), ""]
    return "\n".join(lines)


def resolution_lines(report: Report) -> list[str]:
    found = tables.resolution(report.rows)
    if found is None:
        return []
    intro, header, rows = found
    return ["## Resolution of the paired speedups", "", intro, ""] + table(header, rows)


def machine_groups(report: Report) -> list[tuple[str | None, list[Entry]]]:
    """(heading, cases) per machine, headed by the machine's name; one group without heading for a single machine."""
    return [(f"On {machine.name}" if machine else None, members) for machine, members in by_machine(report.entries)]


def peak_groups(report: Report) -> list[tuple[str | None, dict | None]]:
    """(heading, peak) per machine when the run holds several; else the manifest's peak without heading."""
    if not report.several_machines:
        return [(None, report.manifest.get("peak"))]
    return [(machine.name if machine else "unknown machine", machine and machine.peak) for machine in report.machines]


def machines_note(report: Report) -> list[str]:
    if not report.several_machines:
        return []
    return [cell(MACHINES_NOTE.format(count=len(report.machines))), ""]


MACHINES_NOTE = (
    "The cases come from {count} machines. Each machine has its own tables below: a speedup divides by the eager"
    " fp32 measured on the same machine (none where that machine has none), the fastest is chosen among one"
    " machine's cases, % of peak is against that machine's own matmul peak, and the plots label each series with"
    " its machine."
)


def verdict_lines(report: Report) -> list[str]:
    groups = machine_groups(report)
    if len(groups) == 1:
        return verdict_section.markdown_lines(verdicts(report.rows), cell)
    lines = ["## Verdict", "", cell(verdict_section.INTRO), ""]
    for title, members in groups:
        lines += [f"### {cell(title)}", ""]
        lines += verdict_section.markdown_lines(verdicts([e.row for e in members]), cell, "###")[4:]
    return lines


def summary_line(report: Report) -> str:
    if report.completeness is not None:
        return report.completeness.summary()
    entries = report.entries
    ok = sum(e.ok for e in entries)
    passed = sum(e.accuracy_passed for e in entries)
    return f"{len(entries)} cases: {ok} measured, {passed} passing the accuracy check, {len(entries) - ok} failed."
