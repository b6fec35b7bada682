"""The HTML report: one self-contained file (styles inline, plots as data URIs), every suite or result text escaped."""

from __future__ import annotations

import base64
from html import escape

from bench.report import environment, tables
from bench.report.data import Entry, Report, Warnings
from bench.report.markdown import LEGEND, summary_line
from bench.report.plots import Plot, Skipped
from bench.stats import CV_WARNING

NUMERIC = {"seq", "batch", "threads", "padding", "median ms", "95% CI ms", "p90 ms", "CV %", "samples/s",
           "speedup [95% CI]", "prepare ms", "1st call ms", "peak MB", "GFLOP/s", "% peak"}  # fmt: skip
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d232a; margin: 24px auto; max-width: 1500px; padding: 0 16px; }
h1 { font-size: 24px; } h2 { margin-top: 32px; border-bottom: 2px solid #d0d7de; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eaeef2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mark { white-space: nowrap; } tr.group-start td { border-top: 2px solid #8c959f; }
tr:nth-child(even) td { background: #f6f8fa; }
tr.fastest td { background: #dafbe1; font-weight: 600; }
tr.tied td { background: #ecfdf0; }
tr.fail td { background: #ffebe9; }
tr.error td { background: #fff1cc; color: #57606a; }
td.unstable { color: #9a6700; font-weight: 600; }
.box { border-left: 5px solid; padding: 8px 14px; margin: 10px 0; border-radius: 4px; }
.bad { border-color: #cf222e; background: #fff5f5; } .warn { border-color: #bf8700; background: #fffbea; }
.good { border-color: #1a7f37; background: #f0fff4; }
.box ul { margin: 4px 0; padding-left: 20px; } code { font-size: 12px; }
figure { margin: 16px 0 28px; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; } pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
.legend { color: #57606a; max-width: 1100px; }
"""


def e(text) -> str:
    return escape(str(text), quote=True)


def html_table(header: list[str], rows: list[list[str]], classes=None, cell_classes=None) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        row_class = f' class="{e(classes[index])}"' if classes and classes[index].strip() else ""
        cells = []
        for column, value in enumerate(row):
            names = ["num"] if header[column] in NUMERIC else ["mark"] if header[column] == "" else []
            names += (cell_classes or {}).get((index, column), [])
            cls = f' class="{" ".join(names)}"' if names else ""
            cells.append(f"<td{cls}>{e(value)}</td>")
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def row_class(entry: Entry) -> str:
    if not entry.ok:
        return "error"
    if entry.fastest:
        return "fastest"
    if entry.tied:
        return "tied"
    return "" if entry.accuracy_passed else "fail"


def results_table(members: list[Entry]) -> str:
    header, rows = tables.table_cells(members)
    cv_column = header.index("CV %")
    unstable = {
        (i, cv_column): ["unstable"]
        for i, entry in enumerate(members)
        if entry.ok and entry.row["latency_ms"].get("cv", 0) > CV_WARNING
    }
    starts = {i for i, m in enumerate(members) if i and m.group != members[i - 1].group}
    classes = [row_class(m) + (" group-start" if i in starts else "") for i, m in enumerate(members)]
    return html_table(header, rows, classes, unstable)


def attention(found: Warnings) -> str:
    parts = []
    failed = [f"<li><code>{e(c)}</code>: <b>{e(s)}</b>: {e(r)}{tail(found, c)}</li>" for c, s, r in found.failed]
    failed += [f"<li><code>{e(c)}</code>: {e(t)}</li>" for c, t in found.accuracy + found.faster_but_failing]
    if found.untrusted:
        items = "".join(f"<li><code>{e(c)}</code>: {e(t)}</li>" for c, t in found.untrusted)
        parts.append(f'<div class="box warn"><b>Not compared</b><ul>{items}</ul></div>')
    if failed:
        parts.append(f'<div class="box bad"><b>Failed cases and accuracy failures</b><ul>{"".join(failed)}</ul></div>')
    if found.measurement:
        items = "".join(f"<li><code>{e(c)}</code>: {e(w)}</li>" for c, w in found.measurement)
        parts.append(f'<div class="box warn"><b>Measurement warnings</b><ul>{items}</ul></div>')
    if not parts:
        parts.append('<div class="box good">Every case ran, passed the accuracy check and was stable.</div>')
    return "<h2>Needs attention</h2>" + "".join(parts)


def tail(found: Warnings, case_id: str) -> str:
    text = found.stderr_tails.get(case_id)
    return f"<details><summary>last lines of its log</summary><pre>{e(text)}</pre></details>" if text else ""


def figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return (
        f'<figure id="plot-{e(plot.name)}"><h3>{e(plot.title)}</h3>'
        f'<img alt="{e(plot.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(plot.caption)}</figcaption></figure>"
    )


def plots_section(plots: list[Plot], skipped: list[Skipped]) -> str:
    html = "<h2>Plots</h2>" + "".join(figure(p) for p in plots)
    if skipped:
        items = "".join(f"<li><b>{e(s.title)}</b>: {e(s.reason)}</li>" for s in skipped)
        html += f'<div class="box warn" id="skipped-plots"><b>Not drawn</b><ul>{items}</ul></div>'
    return html


def machine_section(manifest: dict) -> str:
    items = environment.machine_items(manifest)
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in items)
    html = f"<h2>Machine and environment</h2><table>{rows}</table><h3>Matmul peak</h3>"
    header, peak_rows = environment.peak_rows(manifest.get("peak"))
    if peak_rows:
        html += html_table(header, peak_rows)
    return html + f'<p class="legend">{e(environment.peak_note(manifest.get("peak")))}</p>'


def render(report: Report, found: Warnings, plots: list[Plot], skipped: list[Skipped]) -> str:
    suite = (report.manifest.get("suite") or {}).get("name", "?")
    title = f"Benchmark report: {suite} ({report.path.name})"
    parts = [f"<h1>{e(title)}</h1><p>{e(summary_line(report))}</p>", attention(found)]
    parts.append("<h2>Fastest passing configuration per shape</h2>")
    parts.append(html_table(tables.summary_header(report.entries), tables.summary_cells(report.entries)))
    parts.append(f'<h2>Results</h2><p class="legend">{e(LEGEND)}</p>')
    for heading, members in tables.result_tables(report.entries).items():
        parts.append(f"<h3>{e(heading)}</h3>{results_table(members)}")
    parts.append(plots_section(plots, skipped))
    parts.append(machine_section(report.manifest))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
