"""`bench` command line: parsing here, the work in callable modules; one place turns errors into exit codes."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from bench.errors import BenchError, SuiteError
from bench.job import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from bench.run.quiet import QUIET_WAIT_S

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler cancelling the job, `kill`), handled as Ctrl-C is: the run stops, keeps what it measured,
    records that it was interrupted and writes its report."""


def raise_terminated(signum, frame):
    raise Terminated()


def cmd_validate(args) -> int:
    from bench.plan.preflight import check_suite

    checked = check_suite(args.suite, allow_large=args.allow_large)
    for warning in checked.warnings:
        print(f"{checked.path}: warning: {warning}", file=sys.stderr)
    print(f"{checked.path}: ok, {len(checked.cases)} cases")
    return EXIT_OK


def cmd_schema(args) -> int:
    from bench.plan.suite import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_models(args) -> int:
    from bench.plan.model_sources import shipped_configs

    print("\n".join(shipped_configs()))
    return EXIT_OK


def cmd_run(args) -> int:
    from bench.run import workflow

    if not 0 <= args.quiet_wait < float("inf"):
        raise BenchError(f"run: --quiet-wait: expected a number of seconds >= 0, got {args.quiet_wait:g}")
    if args.resume:
        if args.suite or args.out or args.shard or args.costs:
            raise BenchError(
                "run: --resume DIR takes the suite, folder and shard from DIR; give no SUITE, --out, --shard or --costs"
            )
        run_dir, cases, suite_dir, notes = workflow.resume_run(args.resume, args.filter, args.cpus, args.force)
    elif args.suite:
        from bench.run.shards import requested

        shard = requested(args.shard, args.costs)
        run_dir, cases, suite_dir, notes = workflow.start_run(
            args.suite, args.out, args.filter, args.cpus, args.allow_large, shard, args.costs, args.ab
        )
    else:
        raise BenchError("run: expected a SUITE file or --resume DIR, got neither")
    return run_in_folder(args, run_dir, cases, suite_dir, notes)


def run_in_folder(args, run_dir, cases, suite_dir, notes) -> int:
    """The claimed run folder's cases run; Ctrl-C and SIGTERM keep what was measured and say how to resume."""
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return run_claimed(args, run_dir, cases, suite_dir, notes)
    except KeyboardInterrupt as stopped:
        hint = f"continue with: bench run --resume {run_dir.path}"
        how = "terminated" if isinstance(stopped, Terminated) else "interrupted"
        print(f"{how}: finished cases are kept; {hint}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        run_dir.release()


def run_claimed(args, run_dir, cases, suite_dir, notes) -> int:
    """The run itself, with the folder and its CPUs locked by this process; an interrupt still writes the report."""
    from bench.run import workflow

    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"results: {run_dir.path}" + (f" (CPUs {args.cpus})" if args.cpus else ""), file=sys.stderr)
    try:
        started = time.monotonic()
        start = {
            "quiet_wait": args.quiet_wait, "warm_start": not args.cold_start, "emulated": args.emulated,
            "memory_budget_mb": args.memory_budget, "before_cases": None if args.no_peak else probe(run_dir, cases, args),
        }  # fmt: skip
        workflow.execute(run_dir, cases, suite_dir, **start)
        if not args.no_peak:
            peak_again(run_dir, cases, time.monotonic() - started)
    except KeyboardInterrupt:
        workflow.record_end(run_dir, interrupted=True)
        try:
            after_run(args, run_dir)
        except Exception as exc:  # the interrupt is what the user must hear about
            print(f"report not written: {exc}", file=sys.stderr)
        raise
    print_results(run_dir)
    after_run(args, run_dir)
    code = EXIT_OK if workflow.all_good(run_dir) else EXIT_FAILED
    manifest = run_dir.read_manifest()
    if "ab" in manifest:
        from bench.cli import ab

        code = max(code, ab.after_run(run_dir))
    if "tune" in manifest:  # bench tune's run, or its resume
        from bench.cli.tune import answer

        answer(run_dir)
    return code


def probe(run_dir, cases, args):
    """The matmul peak probe a run makes before its first case, forked from its fork servers where it has them."""

    def probe_peak(warm) -> None:
        from bench.run.peak import record_peak, summary

        print(f"matmul peak: {summary(record_peak(run_dir, cases, args.emulated, warm))}", file=sys.stderr)

    return probe_peak


def peak_again(run_dir, cases, run_seconds: float) -> None:
    """The peak probed again after a run of AFTER_RUN_MIN_S or more, and whether it moved."""
    from bench.run.peak import AFTER_RUN_MIN_S, record_peak_after

    if run_seconds < AFTER_RUN_MIN_S:
        return
    after = record_peak_after(run_dir, cases)
    if after is None:
        return
    moved = after["moved"]
    print("matmul peak after the run: " + ("within 5% of the probe before it" if not moved else "moved: " + "; ".join(moved)),
          file=sys.stderr)  # fmt: skip


def print_results(run_dir) -> bool:
    """The table between the run's completeness (planned, measured, failed, not run) and the cases not run."""
    from bench.cli.show import show

    return show(run_dir)


def after_run(args, run_dir) -> None:
    """Steps other modules hang after a run (reports)."""
    if not args.no_report:
        from bench.report import build_report

        print(f"report: {build_report(run_dir.path).html}", file=sys.stderr)


def cmd_report(args) -> int:
    from bench.report import build_report

    written = build_report(args.run_dir, args.out, args.format)
    for path in written.listed():
        print(path)
    for reason in written.skipped:
        print(f"not drawn: {reason}", file=sys.stderr)
    return EXIT_OK


def cmd_peak(args) -> int:
    from bench.run.peak import measure_peak, memo_path, probe_thread_counts, remember, render
    from bench.topology import available_cpus

    counts = probe_thread_counts(args.threads, available_cpus())
    peak = remember(measure_peak(counts), memo_path(counts))
    print(json.dumps(peak, indent=2) if args.json else render(peak))
    return EXIT_OK if peak["gflops"] else EXIT_FAILED


def cmd_show(args) -> int:
    from bench.results.folder import RunDir
    from bench.cli.show import show

    good = show(RunDir(args.run_dir), args.format, args.sort, args.filter, args.summary)
    return EXIT_OK if good else EXIT_FAILED


SUITE_HELP = "suite file (YAML), e.g. suites/default.yaml"
RUN_DIR_HELP = "run folder written by bench run, e.g. results/default-20260101-120000"
DESCRIPTION = """\
Benchmark transformer inference on this CPU: every backend and precision of a suite runs in its own pinned worker,
is timed until its median is firm, and is checked against eager fp32. The report says which configuration to ship."""
EXAMPLES = """\
examples:
  bench validate suites/default.yaml          check a suite, count its cases
  bench run suites/default.yaml               run it; results/ and reports/ get a folder each
  bench run --resume results/default-...      run the cases an interrupted run did not finish
  bench show results/default-... --summary    the verdict per model, as Markdown for a pull request
  bench show RUN --filter backend=onnx --format csv > onnx.csv
  bench env create intel && bench doctor      build the intel environment, see which backends import where

bench COMMAND --help describes a command's options."""


class OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line naming the command, the option and what was expected, and exit 2 (its subcommands'
    parsers are of this class too)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = OneLineParser(
        prog="bench", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a suite file; every problem on one line, exit 2 if any")
    p.add_argument("suite", help=SUITE_HELP)
    add_allow_large(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the suite's JSON Schema (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("models", help="list the architecture configs shipped with bench")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("run", help="run a suite: one isolated, pinned worker per case")
    p.add_argument("suite", nargs="?", help=SUITE_HELP + " (omit it with --resume)")
    p.add_argument("--resume", metavar="DIR", help="run only the cases of DIR that have no row yet")
    p.add_argument(
        "--force", action="store_true",
        help="with --resume: resume even on another machine, other package versions or another commit",
    )  # fmt: skip
    add_run_options(p)
    add_emulated(p)
    p.add_argument(
        "--ab", metavar="ENV",
        help="A/B in one run: every case also runs in environment ENV, paired with it block by block; the run"
        " ends with the A/B table and exits 1 when a case is slower there (Holm's method; docs/scheduled.md)",
    )  # fmt: skip
    p.add_argument(
        "--memory-budget", type=positive_float, metavar="MB",
        help="paired cases: how much memory resident workers may hold at once (default: half of what is available"
        " when the run starts); past it, the configurations of a shape are paired with its baseline in turn",
    )  # fmt: skip
    p.add_argument(
        "--shard", metavar="K/N",
        help="run share K (0 to N-1) of N, balanced by expected cost; auto/N: K from the environment"
        " (default: from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX when set)",
    )  # fmt: skip
    p.add_argument("--costs", metavar="RUN_DIR", help="balance shards by the wall time of each case in this run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write a run folder's report: Markdown, HTML, CSV tables and plots")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--out", help="report folder (default reports/<run folder name>)")
    from bench.report.formats import FORMATS

    p.add_argument(
        "--format", action="append", choices=list(FORMATS), metavar="FORMAT",
        help="write only this format, repeat it for more (default: all): "
        + "; ".join(f"{name}, {form.help}" for name, form in FORMATS.items()),
    )  # fmt: skip
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("peak", help="measure this machine's matmul peak (fp32, bf16, int8) at 1 and all CPUs")
    p.add_argument("--threads", type=int, action="append", default=[], help="also at this thread count; repeat it")
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")
    p.set_defaults(func=cmd_peak)

    from bench.cli.show import FORMATS
    from bench.results.rows import SORT_KEYS

    p = sub.add_parser("show", help="print the table of a run folder; exit 1 if a case failed or has not run")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--format", choices=FORMATS, default="table", help="table (terminal), md, csv or json")
    p.add_argument("--sort", choices=list(SORT_KEYS), default="speed", help="order within each shape (table, json)")
    p.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE",
        help="show matching cases only; repeat it: values of one field are alternatives, fields must all match",
    )  # fmt: skip
    p.add_argument("--summary", action="store_true", help="print the verdict per model (Markdown) instead of the table")
    p.set_defaults(func=cmd_show)

    from bench.cli import cache as cache_cli

    cache_cli.add_parser(sub)

    from bench.cli.env import add_subcommands

    add_subcommands(sub)

    from bench.results import merge
    from bench.run import slurm

    slurm.add_parser(sub)
    merge.add_parser(sub)

    from bench.results import baselines
    from bench.results import export
    from bench.cli import ab
    from bench.cli import compare as regression_cli
    from bench.cli import history

    regression_cli.add_parser(sub)
    ab.add_parser(sub)
    baselines.add_parser(sub)
    history.add_parser(sub)
    export.add_parser(sub)
    add_tune_parser(sub)
    return parser


def cmd_tune(args) -> int:
    """`bench tune`: a run of the suite with every case a rate search under the budget, its candidates tried by
    bench.run.tune; then what to ship (bench.cli.tune)."""
    from bench.cli.tune import parse_budget
    from bench.run import workflow

    budget = parse_budget(args.budget)
    if (args.objective == "rate") != (args.rate is None):
        raise BenchError(f"tune: --rate: expected a rate (queries a second) with --objective latency or memory, and"
                         f" none with --objective rate; got --objective {args.objective} and --rate {args.rate}")  # fmt: skip
    if args.users and args.objective != "rate":
        raise BenchError(f"tune: --users: expected --objective rate (a users search ranks goodput), got --objective"
                         f" {args.objective}")  # fmt: skip
    if args.objective != "rate" and "p99_ms" not in budget:
        raise BenchError(f"tune: --budget: expected p99_ms=MS with --objective {args.objective} (it ranks the p99 at"
                         f" the rate), got {args.budget!r}")  # fmt: skip
    tune = {"mode": "exhaustive" if args.exhaustive else "tune", "budget": budget, "objective": args.objective,
            "duel_pairs": args.duel_pairs, **({"rate": args.rate} if args.rate is not None else {}),
            **({"users": True} if args.users else {})}  # fmt: skip
    run_dir, cases, suite_dir, notes = workflow.start_run(
        args.suite, args.out, args.filter, args.cpus, args.allow_large, tune=tune
    )
    return run_in_folder(args, run_dir, cases, suite_dir, notes)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """What `bench run` and `bench tune` both take: where, which cases, on which CPUs, and how workers start."""
    p.add_argument("--out", help="run folder (default results/<suite>-<timestamp>)")
    p.add_argument(
        "--cpus", metavar="LIST",
        help="use only these CPUs, e.g. 2,3 or 0-1 (cases are pinned within them; runs on disjoint CPUs can overlap)",
    )  # fmt: skip
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
    p.add_argument(
        "--cold-start", action="store_true",
        help="start every worker as a fresh interpreter (slower: about 6 s of imports each) instead of forking it"
        " from a process of its environment that has imported torch and transformers once",
    )  # fmt: skip
    add_allow_large(p)


def add_tune_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="find the configuration that serves the most queries a second within a p99 budget (server"
        " scenario), or for generation within TTFT and TPOT budgets"
    )
    p.add_argument("suite", help="a suite file: its backends, precisions, threads, streams and batch sizes are the space")
    p.add_argument(
        "--budget", required=True, metavar="p99_ms=MS",
        help="the latency budget: p99 from the scheduled time; for generation, ttft_ms=MS and/or tpot_ms=MS"
        " (comma-separated), time to first token and time per output token at p99",
    )  # fmt: skip
    p.add_argument(
        "--objective", choices=("rate", "latency", "memory"), default="rate",
        help="what the winner is best at: the highest VALID rate under the budget (rate), or, at --rate R, the lowest"
        " p99 (latency) or the least resident memory (memory) among those VALID there",
    )  # fmt: skip
    p.add_argument(
        "--rate", type=positive_float, metavar="R",
        help="queries a second the configuration must serve within the budget (--objective latency or memory)",
    )  # fmt: skip
    p.add_argument(
        "--users", action="store_true",
        help="search each candidate's closed-loop users (each sending when answered) instead of its offered rate: the"
        " most users whose p99 from the send stays within the budget, ranked by goodput (queries a second within it)",
    )  # fmt: skip
    p.add_argument(
        "--exhaustive", action="store_true",
        help="search every candidate's rate fully (the whole grid: its cost, and the winner to check tuning against)",
    )  # fmt: skip
    p.add_argument(
        "--duel-pairs", type=duel_pairs, default=8, metavar="N",
        help="segments the winner and the runner-up serve by turns at the winner's rate, one probe's length of"
        " queries each in all, for their paired margin (default %(default)s; 0: none)",
    )  # fmt: skip
    add_run_options(p)
    p.set_defaults(func=cmd_tune, emulated=False, memory_budget=None)


def duel_pairs(text: str) -> int:
    """0 (no duel), or 2 to 20 segments: one gives no interval."""
    if not text.isdigit() or int(text) == 1 or int(text) > 20:
        raise argparse.ArgumentTypeError(f"expected 0 (no duel) or a whole number from 2 to 20, got {text!r}")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_emulated(parser: argparse.ArgumentParser) -> None:
    text = ("also measure precisions this CPU only emulates (bf16 without AVX512_BF16 or AMX: slow, and no"
            " deployment option) or that the library would compute in fp32 (OpenVINO's bf16 hint without AVX-512);"
            " by default such a case is a row saying so, not a measurement")  # fmt: skip
    parser.add_argument("--emulated", action="store_true", help=text)


def add_allow_large(parser: argparse.ArgumentParser) -> None:
    text = "accept a plan of more than 5000 cases (bench.plan.preflight.PLAN_CAP; refused otherwise)"
    parser.add_argument("--allow-large", action="store_true", help=text)


def main(argv: list[str] | None = None) -> int:
    from bench.run.slurm import split_passthrough

    parser = build_parser()
    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if passthrough is not None and args.command != "slurm":
        parser.error(f"unrecognized arguments: -- {' '.join(passthrough)}")
    args.passthrough = passthrough or []
    try:
        return args.func(args)
    except BrokenPipeError:
        return closed_pipe()
    except SuiteError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def closed_pipe() -> int:
    """The reader of stdout went away (bench schema | head): stop quietly, as other command-line tools do."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush of stdout must not fail again
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
