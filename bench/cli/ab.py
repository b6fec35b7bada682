"""`bench ab RUN`: the A/B table of a run made with `bench run SUITE --ab ENV` (bench.results.ab).

Exit 0: no case slower by the threshold or more; 1: at least one is; 2: bad input.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from bench.cli.compare import change_cell
from bench.errors import BenchError
from bench.job import EXIT_FAILED, EXIT_OK
from bench.results.ab import ALPHA, THRESHOLD, ABCase, ABResult, ab_result, shift_line
from bench.results.run_files import load_run

WIDTH = 140


def add_parser(sub) -> None:
    p = sub.add_parser("ab", help="the A/B table of a run made with --ab ENV (exit 1 if a case is slower in ENV)")
    p.add_argument("run_dir", metavar="RUN", help="the folder of a run made with bench run SUITE --ab ENV")
    p.add_argument(
        "--alpha", type=share, default=ALPHA, help="family-wise error rate of Holm's method (default %(default)g)"
    )
    p.add_argument(
        "--threshold", type=share, default=THRESHOLD,
        help="smallest slowdown that fails the run, as a share (default %(default)g: 5%%); the interval must reach it",
    )  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    p.set_defaults(func=cmd_ab)


def share(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def cmd_ab(args) -> int:
    run = load_run(args.run_dir)
    if "ab" not in run.manifest:
        raise BenchError(f"{run.path / 'manifest.json'}: ab: expected a run made with --ab ENV, got none")
    result = ab_result(run.rows, args.alpha, args.threshold)
    print(render(result, run.manifest["ab"]["environment"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return exit_code(result)


def exit_code(result: ABResult) -> int:
    return EXIT_FAILED if result.slower else EXIT_OK


def render(result: ABResult, environment: str, width: int = WIDTH) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, highlight=False)
    table = Table(box=box.SIMPLE_HEAD, title=f"A/B: each case in its environment (A) and in {environment!r} (B)")
    for header in ("verdict", "case", "A ms", "B ms", f"B/A − 1 [{1 - result.alpha:.0%}]", "p Holm", "q BH",
                   "pairs", "why not judged"):  # fmt: skip
        table.add_column(header)
    for case in sorted(result.cases, key=lambda c: (c.verdict != "slower", -(c.ratio or 0))):
        table.add_row(
            case.verdict, case.base.get("case_id", "?"), median(case.base), median(case.new), change_cell(case.ratio, case.interval),
            number(case.p_holm), number(case.q_value, mark=True), f"{case.pairs} in {case.processes}",
            ", ".join(case.reasons),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"slower: Holm's method at family-wise {result.alpha:g} says B differs and the interval reaches"
        f" +{result.threshold:.0%}; q BH marked * below {result.alpha:g}"
    )
    line = shift_line(result)
    if line:
        console.print(line)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())


def median(row: dict) -> str:
    latency = row.get("latency_ms") or {}
    return f"{latency['median']:.3f}" if row.get("status") == "ok" and latency.get("median") else "-"


def number(value: float | None, mark: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" + ("*" if mark and value < ALPHA else "")


def after_run(run_dir) -> int:
    """`bench run --ab` ends with the table; its exit code joins the run's."""
    run = load_run(run_dir.path)
    result = ab_result(run.rows)
    print(render(result, run.manifest["ab"]["environment"]), file=sys.stdout)
    return exit_code(result)
