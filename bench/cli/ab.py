"""`bench ab RUN`: the A/B table of a run made with `bench run SUITE --ab ENV` (bench.results.ab), and its Markdown
and JSON.

Exit 0: no case slower by the threshold or more; 1: at least one is; 2: bad input. Only the comparison decides: a case
that failed or was flagged in the run is "can't tell" here (`bench run --ab` itself also exits 1 for it, as any run).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from bench.cli.compare import change_cell, write_text
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
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown (for a pull request)")
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
    environment = run.manifest["ab"]["environment"]
    print(render(result, environment))
    if args.markdown:
        write_text(Path(args.markdown), markdown(result, environment))
    if args.json:
        write_text(Path(args.json), json.dumps(result.to_json(), indent=2))
    return exit_code(result)


def exit_code(result: ABResult) -> int:
    return EXIT_FAILED if result.slower else EXIT_OK


def render(result: ABResult, environment: str, width: int = WIDTH) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, highlight=False)
    table = Table(box=box.SIMPLE_HEAD, title=title(environment))
    for header in headers(result):
        table.add_column(header)
    for case in ordered(result):
        table.add_row(*cells(case))
    console.print(table)
    for line in footnotes(result):
        console.print(line)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())


def markdown(result: ABResult, environment: str) -> str:
    """The table for a pull-request comment: the verdict first, then every case, the slower ones first."""
    slower = ", ".join(f"`{case.base.get('case_id', '?')}`" for case in result.slower)
    headline = f"**Slower in {environment!r}: {slower}**" if slower else f"**No case is slower in {environment!r}.**"
    lines = ["## " + title(environment), "", headline, "", "| " + " | ".join(headers(result)) + " |"]
    lines.append("|" + "---|" * len(headers(result)))
    for case in ordered(result):
        row = [text.replace("|", "\\|") for text in cells(case)]
        row[1] = f"`{row[1]}`"
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([*lines, "", *(f"- {line}" for line in footnotes(result))])


def title(environment: str) -> str:
    return f"A/B: each case in its environment (A) and in {environment!r} (B)"


def headers(result: ABResult) -> list[str]:
    return ["verdict", "case", "A ms", "B ms", f"B/A − 1 [{1 - result.alpha:.0%}]", "p Holm", "q BH", "pairs",
            "why not judged"]  # fmt: skip


def ordered(result: ABResult) -> list[ABCase]:
    return sorted(result.cases, key=lambda c: (c.verdict != "slower", -(c.ratio or 0)))


def cells(case: ABCase) -> list[str]:
    return [
        case.verdict, case.base.get("case_id", "?"), median(case.base), median(case.new),
        change_cell(case.ratio, case.interval), number(case.p_holm), number(case.q_value, mark=True),
        f"{case.pairs} in {case.processes}", ", ".join(case.reasons),
    ]  # fmt: skip


def footnotes(result: ABResult) -> list[str]:
    lines = [
        f"slower: Holm's method at family-wise {result.alpha:g} says B differs and the interval reaches"
        f" +{result.threshold:.0%}; q BH marked * below {result.alpha:g}"
    ]
    line = shift_line(result)
    return lines + ([line] if line else [])


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
