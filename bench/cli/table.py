"""The results table that `bench show` prints: one table per shape, fastest first, speedup over its baseline.

Rendered with rich; colour only when asked (a terminal), plain text otherwise. 120 columns wide by default.
"""

from __future__ import annotations

import io
import textwrap

from rich import box
from rich.console import Console
from rich.table import Table

from bench.results.compare import fastest_or_tied, main_baseline_label, median_ci, speedups, speedups_vs_main
from bench.backends.precision_mode import row_label
from bench.measure.stats import CV_WARNING
from bench.results.rows import SORT_KEYS, by_shape, count_text
from bench.text import plural

WIDTH = 120
FASTEST, TIED = "★", "≈"


def accuracy_text(row: dict) -> str:
    """The verdict, the gated relative error, top-1 agreement, and whether the hidden state went uncompared."""
    accuracy = row.get("accuracy")
    if not accuracy:
        return "-"
    if accuracy.get("token_agreement") is not None:
        text = f"{'pass' if accuracy['passed'] else 'FAIL'} tokens {accuracy['token_agreement']:.0%}"
        first = accuracy.get("first_divergence")
        return text + (f" diverge@{first}" if first is not None else "")
    if accuracy.get("answer_agreement") is not None:
        text = f"{'pass' if accuracy['passed'] else 'FAIL'} answers {accuracy['answer_agreement']:.0%}"
        first = accuracy.get("first_disagreement")
        return text + (f" first wrong: text {first}" if first is not None else "")
    if accuracy.get("relative_error") is None:
        return "pass" if accuracy.get("passed") else "FAIL " + "; ".join(accuracy.get("failures", []))
    text = f"{'pass' if accuracy['passed'] else 'FAIL'} err {accuracy['relative_error']:.1e}"
    if accuracy.get("argmax_agreement") is not None:
        text += f" top1 {accuracy['argmax_agreement']:.0%}"
    if accuracy.get("not_compared"):
        text += " (no hidden state)"
    return text


def interval_text(interval: list[float] | None) -> str:
    return f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "n/a"


def shape_title(row: dict) -> str:
    threads = row.get("threads")
    return (
        f"{row.get('model')} ({row.get('task')})  seq {row.get('seq_len')}  batch {row.get('batch_size')}"
        f"  {threads} {plural('thread', threads)}  padding {row.get('padding_ratio') or 0:g}"
    ) + (f"  +{row['new_tokens']} new tokens" if row.get("new_tokens") else "") + (
        f"  pipeline on {row['texts']} texts" if row.get("texts") else ""
    )


def cv_cell(row: dict) -> tuple[str, str]:
    """CV with the sample count (and rounds) beside it, and its style: no colour when there is too little to judge."""
    samples = row.get("samples_ms") or []
    count = count_text(row)
    cv = row["latency_ms"].get("cv")
    if cv is None or len(samples) < 2:
        return f"- ({count})", "dim"
    return f"{100 * cv:.1f} ({count})", "yellow" if cv > CV_WARNING else "green"


GENERATION_COLUMNS = (("TTFT ms", "right"), ("ms/token", "right"), ("tok/s", "right"))
"""A generation shape's extra columns: median time to first token, median decode step, decode tokens per second."""


def generation_cells(row: dict) -> list[str]:
    generation = row.get("generation") or {}
    ttft = (generation.get("ttft_ms") or {}).get("median")
    step = (generation.get("decode_ms_per_token") or {}).get("median")
    rate = generation.get("decode_tokens_per_s")
    return [f"{v:.2f}" if v is not None else "-" for v in (ttft, step)] + [f"{rate:.1f}" if rate else "-"]


def shape_table(members: list[dict], factors: dict, sort: str, across: dict | None = None) -> Table:
    """One shape's cases; `across`, when some case ran outside main, adds the ratio over main's eager fp32."""
    best, tied = fastest_or_tied(members)
    tied_ids = {id(r) for r in tied}
    generating = any(r.get("generation") for r in members)
    table = Table(
        title=shape_title(members[0]), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for name, justify in (("", "left"), ("backend", "left"), ("precision", "left"), ("env", "left"),
                          ("median ms", "right"), ("95% CI ms", "right"), ("CV % (n)", "right"),
                          *(GENERATION_COLUMNS if generating else ()),
                          ("speedup [95% CI]", "left"), *((("vs main [95% CI]", "left"),) if across else ()),
                          ("accuracy", "left")):  # fmt: skip
        table.add_column(name, justify=justify, overflow="fold")
    for row in sorted(members, key=SORT_KEYS[sort]):
        mark = FASTEST if row is best else TIED if id(row) in tied_ids else ""
        style = "bold green" if row is best else "red" if row.get("status") != "ok" else None
        common = [mark, str(row["backend"]), row_label(row), str(row.get("environment") or "main")]
        versus_main = [(across[row["case_id"]].text() if across[row["case_id"]] else "-")] if across else []
        if row.get("status") != "ok":
            dashes = ["-"] * len(GENERATION_COLUMNS) if generating else []
            table.add_row(*common, "-", "-", "-", *dashes, str(row["status"]), *versus_main, "-", style=style)
            continue
        factor = factors[row["case_id"]]
        cv_text, cv_style = cv_cell(row)
        table.add_row(
            *common, f"{row['latency_ms']['median']:.2f}", interval_text(median_ci(row)),
            f"[{cv_style}]{cv_text}[/]", *(generation_cells(row) if generating else ()),
            factor.text() if factor else "-", *versus_main, accuracy_text(row),
            style=style,
        )  # fmt: skip
    return table


def tie_rule(rows: list[dict]) -> str:
    """How `tied` was decided: the paired test where rows were paired, overlapping intervals otherwise."""
    from bench.measure.paired import TIE_MARGIN

    overlap = "the 95% intervals overlap"
    if any((r.get("paired") or {}).get("role") == "configuration" for r in rows):
        paired = f"paired rows: not shown {TIE_MARGIN:.0%} slower than the fastest at 95%"
        every = all(r.get("paired") for r in rows if r.get("status") == "ok")
        return paired if every else f"{paired}; others: {overlap}"
    return overlap


def offline_tables(rows: list[dict]) -> list[Table]:
    """The offline rows, one table per model, backend, precision and shape: each split of the CPUs with its samples/s
    under load, its paired ratio to the single-stream split, and its calls' latency under load."""
    from bench.results import offline

    rates, ratios = offline.throughputs(rows), offline.split_ratios(rows)
    groups: dict[tuple, list[dict]] = {}
    for row in offline.offline_rows(rows):
        key = tuple(row.get(k) for k in ("model", "task", "backend", "precision", "environment", "seq_len",
                                         "batch_size", "padding_ratio"))  # fmt: skip
        groups.setdefault(key, []).append(row)
    tables = []
    for members in groups.values():
        first = members[0]
        title = (f"offline: {first.get('model')} ({first.get('task')})  {first.get('backend')} {row_label(first)}"
                 f"  seq {first.get('seq_len')}  batch {first.get('batch_size')}")  # fmt: skip
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
        for name in ("streams × threads", "samples/s [95% CI]", "vs 1 stream [95% CI]", "p50 ms", "p99 ms",
                     "accuracy"):  # fmt: skip
            table.add_column(name, justify="left", overflow="fold")
        for row in sorted(members, key=lambda r: (r.get("streams") or 1, -(r.get("threads") or 1))):
            if row.get("status") != "ok":
                table.add_row(offline.split_text(row), str(row["status"]), "-", "-", "-", "-", style="red")
                continue
            ratio = ratios.get(row["case_id"])
            role = (row.get("paired") or {}).get("role")
            p50, p99 = (offline.latency_percentile(row, name) for name in ("p50", "p99"))
            table.add_row(
                offline.split_text(row), rates[row["case_id"]].text(1),
                ratio.text(3, "x") if ratio else ("baseline" if role == "baseline" else "-"),
                f"{p50:.2f}" if p50 is not None else "-", f"{p99:.2f}" if p99 is not None else "-",
                accuracy_text(row),
            )  # fmt: skip
        tables.append(table)
    return tables


SERVER_COLUMNS = (6, 7, 8, 9, 11, 13, 14, 15, 16)
"""Of bench.report.tables.SERVER_HEADER, what a terminal table shows (model to batch are its title)."""
CLOSED_LOOP_COLUMNS = (6, 7, 8, 9, 11, 12, 13, 14, 15)
"""Of bench.report.tables.CLOSED_LOOP_HEADER, what a terminal table shows."""


def server_tables(rows: list[dict]) -> list[Table]:
    """The server rows, one table per model, backend, precision and shape: each split and offered rate with its
    latency percentiles from the scheduled time and its validity."""
    from bench.report.tables import SERVER_HEADER, server_cells

    def good(cells: list[str]) -> bool:
        return cells[15] == "VALID" or cells[15].startswith("max VALID")

    return scenario_tables("server", SERVER_HEADER, server_cells(rows), SERVER_COLUMNS, good)


def closed_loop_tables(rows: list[dict]) -> list[Table]:
    """The closed-loop rows, one table per model, backend, precision and shape: each split and number of users with
    the queries completed per second and the latency from each query's send."""
    from bench.report.tables import CLOSED_LOOP_HEADER, closed_loop_cells

    def good(cells: list[str]) -> bool:
        return cells[-1].startswith("pass")

    return scenario_tables("closed loop", CLOSED_LOOP_HEADER, closed_loop_cells(rows), CLOSED_LOOP_COLUMNS, good)


GENERATION_LOAD_COLUMNS = (7, 8, 9, 10, 11, 12, 14, 16, 18)
"""Of bench.report.tables.GENERATION_LOAD_HEADER, what a terminal table shows."""


def generation_load_tables(rows: list[dict]) -> list[Table]:
    """The generation rows under load, one table per model, backend, precision, environment, shape and slo: each
    split and load with its requests and tokens a second, TTFT, TPOT and goodput."""
    from bench.report.tables import GENERATION_LOAD_HEADER, generation_load_cells

    def title(cells: list[str]) -> str:
        model, backend, precision, env, prompt, new_tokens, batch = cells[:7]
        slo = f"  goodput: {cells[17]}" if cells[17] != "-" else ""
        return (f"generation under load: {model}  {backend} {precision} ({env})  prompt {prompt}  +{new_tokens} tokens"
                f"  batch {batch}{slo}")  # fmt: skip

    def good(cells: list[str]) -> bool:
        return cells[-1].startswith("pass")

    return scenario_tables("", GENERATION_LOAD_HEADER, generation_load_cells(rows), GENERATION_LOAD_COLUMNS, good,
                           key=lambda cells: (*cells[:7], cells[17]), title=title)  # fmt: skip


TUNE_COLUMNS = (3, 4, 5, 6, 7, 8, 9, 10, 11)
"""Of bench.report.tables.TUNE_HEADER, what a terminal table shows."""


def tune_table(rows: list[dict]) -> Table:
    """bench tune's candidates in the order tried: each one's upper bound, decision, bracket and cost."""
    from bench.report.tables import TUNE_HEADER, tune_cells

    table = Table(title="tune: the candidates in the order tried (★ the winner)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))  # fmt: skip
    for index in TUNE_COLUMNS:
        table.add_column(TUNE_HEADER[index], justify="left", overflow="fold")
    for row_cells in tune_cells(rows):
        table.add_row(*(row_cells[i] for i in TUNE_COLUMNS))
    return table


def scenario_tables(scenario: str, header: list[str], cells: list[list[str]], columns, good, key=None,
                    title=None) -> list[Table]:  # fmt: skip
    """One terminal table per model, backend, precision, environment and shape (the cells' first six, its title;
    or per `key(cells)`, titled `title(cells)`), with `columns` of `header`; a row that is not `good` in yellow."""
    groups: dict[tuple, list[list[str]]] = {}
    for row_cells in cells:
        groups.setdefault(key(row_cells) if key else tuple(row_cells[:6]), []).append(row_cells)
    tables = []
    for members in groups.values():
        if title:
            heading = title(members[0])
        else:
            model, backend, precision, env, seq, batch = members[0][:6]
            heading = f"{scenario}: {model}  {backend} {precision} ({env})  seq {seq}  batch {batch}"
        table = Table(title=heading, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
        for index in columns:
            table.add_column(header[index], justify="left", overflow="fold")
        for row_cells in members:
            table.add_row(*(row_cells[i] for i in columns), style=None if good(row_cells) else "yellow")
        tables.append(table)
    return tables


SERVER_LEGEND = (
    "server: latency from each query's scheduled time (queueing included); VALID: p99 under the suite's p99_ms (a"
    " generation search's: TTFT's and TPOT's p99 under its bounds) with 99% confidence (LoadGen's early stopping, its"
    " 600 s minimum waived)"
)
CLOSED_LOOP_LEGEND = (
    "closed loop: each user sends when answered; latency from each query's send (queue wait included), not"
    " comparable with server latency, whose schedule does not slow down with the system"
)


def render(rows: list[dict], sort: str = "speed", color: bool = False, width: int = WIDTH) -> str:
    from bench.results.offline import offline_rows, single_stream
    from bench.results.closed_loop import closed_loop_rows
    from bench.results.server import server_rows
    from bench.results.tune import summary_lines, tuned_rows

    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=color, no_color=not color, highlight=False)
    every, loaded, rows = rows, offline_rows(rows), single_stream(rows)
    factors = speedups(rows)
    across = speedups_vs_main(rows) if any((r.get("environment") or "main") != "main" for r in rows) else None
    for members in by_shape(rows):
        console.print(shape_table(members, factors, sort, across))
    if across:
        console.print(f"vs main: the cross-environment ratio, {main_baseline_label(rows)}, a change of library included")
    if rows:
        console.print(f"{FASTEST}: fastest trusted case of its shape; {TIED}: tied with it ({tie_rule(rows)})")
    for table in offline_tables(loaded):
        console.print(table)
    if loaded:
        console.print(OFFLINE_LEGEND)
    served = server_rows(every)
    for table in server_tables(served):
        console.print(table)
    if served:
        console.print(SERVER_LEGEND)
    users = closed_loop_rows(every)
    for table in closed_loop_tables(users):
        console.print(table)
    if users:
        console.print(CLOSED_LOOP_LEGEND)
    generating = [r for r in served + users if r.get("new_tokens")]
    for table in generation_load_tables(generating):
        console.print(table)
    if generating:
        from bench.results.generation_load import goodput_lines

        for line in goodput_lines(generating):
            console.print(line)
        console.print(GENERATION_LOAD_LEGEND)
    tuned = tuned_rows(every)
    if tuned:
        console.print(tune_table(tuned))
        for line in summary_lines(tuned):
            console.print(line)
    lines = [line.rstrip() for line in out.getvalue().rstrip("\n").splitlines()]
    return "\n".join([*lines, *resolution_lines(rows), *notes(every)])


GENERATION_LOAD_LEGEND = (
    "generation under load: TTFT from each request's scheduled time or send (queue included), TPOT = (end to end −"
    " TTFT) / (tokens − 1), goodput: requests a second that met the suite's slo; generate has no continuous batching,"
    " so these are not a serving engine's figures"
)
OFFLINE_LEGEND = (
    "offline: samples/s that all streams completed together, measured under load (not batch ÷ median);"
    " vs 1 stream: paired windows against the single-stream split; p50/p99: each call's latency under load"
)


def resolution_lines(rows: list[dict]) -> list[str]:
    """What the paired speedups resolve: the median half-width of their 95% intervals, overall and per shape."""
    import statistics

    from bench.results.compare import paired_resolution, resolution_by_shape

    shapes = resolution_by_shape(rows)
    if not shapes:
        return []
    every = [w for widths in paired_resolution(rows).values() for w in widths]
    listed = "; ".join(
        f"{model} s{seq} b{batch} t{threads}{f' pad{pad:g}' if pad else ''} ±{median:.1%}"
        for (model, seq, batch, threads, pad), _, median in shapes
    )
    return wrap(f"paired speedups resolve ±{statistics.median(every):.1%} (median 95% half-width of"
                f" {len(every)}); per shape: {listed}", "")


def wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)


def notes(rows: list[dict]) -> list[str]:
    """Needs attention, by kind: each kind explained once, then its cases (as in the report)."""
    from bench.report.attention import groups
    from bench.report.data import annotate, collect_warnings

    from bench.results.offline import single_stream

    alone = single_stream(rows)
    under_load = [r for r in rows if r not in alone]
    found = groups(collect_warnings(annotate(alone, None) + annotate(under_load, None)))
    out = ["", "Needs attention:"] if found else []
    for group in found:
        out += wrap(f"{group.title} ({len(group.items)}): {group.explanation}", "  ")
        for case_id, detail in group.items:
            out += wrap(case_id + (f": {detail}" if detail else ""), "    ")
    return out


def terminal_width(is_terminal: bool) -> int:
    """The terminal's width when printing to one (at most WIDTH), else WIDTH."""
    if not is_terminal:
        return WIDTH
    import shutil

    return min(shutil.get_terminal_size((WIDTH, 24)).columns, WIDTH)
