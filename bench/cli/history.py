"""`bench history [RESULTS_DIR]`: every run of each case over time, with the steps where its latency changed for good
(bench.results.history says what a step is)."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import terminal
from bench.errors import BenchError
from bench.job import EXIT_OK
from bench.plan.matrix import parse_filters
from bench.results.compare import distrust_reasons
from bench.results.history import Point, Series, collect, find_runs
from bench.results.history_plot import plot_history
from bench.results.regression import THRESHOLD


def point_cells(point: Point) -> list[str]:
    """run, started, commit, median, interval, note."""
    commit = (point.run.commit or "-")[:10] + ("+" if point.run.dirty else "")
    median, interval = point.median, point.interval
    reasons = distrust_reasons(point.row)
    note = f"step {'▲' if point.step > 0 else '▼'} {point.step:+.1%}" if point.step is not None else ""
    if reasons:
        note = "not compared: " + ", ".join(reasons)
    return [
        point.run.name, (point.run.started or "-")[:19], commit,
        f"{median:.3f}" if median else "-", f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else "-", note,
    ]  # fmt: skip


def print_tables(series_list: list[Series]) -> None:
    from rich.table import Table

    console = terminal.console()
    machines = {s.machine for s in series_list}
    for series in series_list:
        title = series.case_id + (f" on {series.machine}" if len(machines) > 1 else "")
        table = Table(title=title, title_justify="left")
        for header in ("run", "started", "commit", "median ms", "95% CI ms", "note"):
            table.add_column(header, overflow="fold")
        for point in series.points:
            table.add_row(*point_cells(point), style="bold" if point.step is not None else None)
        console.print(table)


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="every run of each case over time, with the lasting changes (steps) marked")
    p.add_argument("results_dir", nargs="?", default="results", help="folder of run folders (default %(default)s)")
    p.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE",
        help="only matching cases; repeat it: values of one field are alternatives, fields must all match",
    )  # fmt: skip
    p.add_argument("--plot", metavar="FILE", help="also draw the history as a PNG, one panel per case")
    p.add_argument(
        "--threshold", type=float, default=THRESHOLD,
        help="smallest lasting change of the median that is a step, as a share (default %(default)g)",
    )  # fmt: skip
    p.set_defaults(func=cmd_history)


def cmd_history(args) -> int:
    if not 0 <= args.threshold < 1:
        raise BenchError(f"history: --threshold: expected a share between 0 and 1 (0.05 is 5%), got {args.threshold:g}")
    filters = parse_filters(args.filter)
    runs, notes = find_runs(Path(args.results_dir))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    series_list = collect(runs, filters, args.threshold)
    if not series_list:
        raise BenchError(f"{args.results_dir}: expected runs with matching cases, got {len(runs)} run(s) and no case")
    print_tables(series_list)
    if args.plot:
        skipped = plot_history(series_list, runs, Path(args.plot))
        drawn = f" (the first {len(series_list) - skipped} cases; narrow with --filter)" if skipped else ""
        print(f"plot: {args.plot}{drawn}", file=sys.stderr)
    return EXIT_OK
