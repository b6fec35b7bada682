"""`bench` command line: parsing here, the work in callable modules; one place turns errors into exit codes."""

from __future__ import annotations

import argparse
import json
import sys

from bench.errors import BenchError, SuiteError
from bench.quiet import QUIET_WAIT_S

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def cmd_validate(args) -> int:
    from bench.matrix import expand
    from bench.suite import load_suite

    suite, path = load_suite(args.suite)
    print(f"{path}: ok, {len(expand(suite))} cases")
    return EXIT_OK


def cmd_schema(args) -> int:
    from bench.suite import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_models(args) -> int:
    from bench.model_sources import shipped_configs

    print("\n".join(shipped_configs()))
    return EXIT_OK


def cmd_run(args) -> int:
    from bench import workflow
    from bench.table import render

    if not 0 <= args.quiet_wait < float("inf"):
        raise BenchError(f"run: --quiet-wait: expected a number of seconds >= 0, got {args.quiet_wait:g}")
    if args.resume:
        if args.suite or args.out:
            raise BenchError("run: --resume DIR takes the suite and folder from DIR; give no SUITE or --out")
        run_dir, cases, suite_dir, notes = workflow.resume_run(args.resume, args.filter)
    elif args.suite:
        run_dir, cases, suite_dir, notes = workflow.start_run(args.suite, args.out, args.filter)
    else:
        raise BenchError("run: expected a SUITE file or --resume DIR, got neither")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"results: {run_dir.path}", file=sys.stderr)
    if not args.no_peak:
        from bench.peak import record_peak, summary

        print(f"matmul peak: {summary(record_peak(run_dir, cases))}", file=sys.stderr)
    workflow.execute(run_dir, cases, suite_dir, quiet_wait=args.quiet_wait)
    from bench.results import latest_rows

    print(render(latest_rows(run_dir.rows())))
    after_run(args, run_dir)
    return EXIT_OK if workflow.all_good(run_dir) else EXIT_FAILED


def after_run(args, run_dir) -> None:
    """Steps other modules hang after a run (reports)."""
    if not args.no_report:
        from bench.report import build_report

        print(f"report: {build_report(run_dir.path).html}", file=sys.stderr)


def cmd_report(args) -> int:
    from bench.report import build_report

    written = build_report(args.run_dir, args.out)
    for path in (written.markdown, written.html, written.csv):
        print(path)
    for reason in written.skipped:
        print(f"not drawn: {reason}", file=sys.stderr)
    return EXIT_OK


def cmd_peak(args) -> int:
    from bench.peak import measure_peak, memo_path, probe_thread_counts, remember, render
    from bench.threads import available_cpus

    counts = probe_thread_counts(args.threads, available_cpus())
    peak = remember(measure_peak(counts), memo_path(counts))
    print(json.dumps(peak, indent=2) if args.json else render(peak))
    return EXIT_OK if peak["gflops"] else EXIT_FAILED


def cmd_show(args) -> int:
    from bench.results import RunDir, latest_rows, row_is_good
    from bench.table import render

    run_dir = RunDir(args.run_dir)
    run_dir.read_manifest()
    rows = latest_rows(run_dir.rows())
    print(render(rows))
    return EXIT_OK if all(row_is_good(r) for r in rows) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a suite file; every problem on one line, exit 2 if any")
    p.add_argument("suite")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the suite's JSON Schema (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("models", help="list the architecture configs shipped with bench")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("run", help="run a suite: one isolated, pinned worker per case")
    p.add_argument("suite", nargs="?")
    p.add_argument("--out", help="run folder (default results/<suite>-<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="run only the cases of DIR that have no row yet")
    p.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE",
        help="run matching cases only; repeat it: values of one field are alternatives, fields must all match",
    )  # fmt: skip
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak probe (no %% of peak in the report)")
    p.add_argument("--no-report", action="store_true", help="do not write reports/<run folder>/ after the run")
    p.add_argument(
        "--quiet-wait", type=float, default=QUIET_WAIT_S, metavar="SECONDS",
        help="before each case, wait up to this long for its CPUs to be free of other processes"
        " (default %(default)g; 0: check and record only)",
    )  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write a run folder's report: Markdown, HTML, CSV tables and plots")
    p.add_argument("run_dir")
    p.add_argument("--out", help="report folder (default reports/<run folder name>)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("peak", help="measure this machine's matmul peak (fp32, bf16, int8) at 1 and all CPUs")
    p.add_argument("--threads", type=int, action="append", default=[], help="also at this thread count; repeat it")
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")
    p.set_defaults(func=cmd_peak)

    p = sub.add_parser("show", help="print the table of a run folder")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_show)

    from bench import cache_cli

    cache_cli.add_parser(sub)

    from bench.env_cli import add_subcommands

    add_subcommands(sub)

    from bench import baselines, export, history, regression_cli

    regression_cli.add_parser(sub)
    baselines.add_parser(sub)
    history.add_parser(sub)
    export.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SuiteError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished cases are kept; continue with bench run --resume DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
