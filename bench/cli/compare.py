"""`bench compare BASE NEW` (or `--baseline NAME NEW`): the verdict per case, as a table, Markdown and JSON.

Exit 0: nothing significantly slower; 1: at least one case is; 2: bad input (the CLI prints the one-line reason).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import terminal
from bench.errors import BenchError
from bench.job import EXIT_FAILED, EXIT_OK
from bench.results.regression import (
    ALPHA, SHOWN, SLOWER, THRESHOLD, CaseResult, Comparison, Settings, compare_runs, samples_per_s, scenario_of,
)  # fmt: skip
from bench.results.run_files import Run, load_run

COMPARISON_SCHEMA = 1


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two runs case by case: slower, faster, unchanged or can't tell (exit 1 if slower)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="BASE NEW, or NEW alone with --baseline NAME")
    p.add_argument("--baseline", metavar="NAME", help="compare NEW with the baseline NAME saved for its machine")
    p.add_argument(
        "--threshold", type=float, default=THRESHOLD,
        help="smallest change of the median that counts, as a share (default %(default)g: 5%%)",
    )  # fmt: skip
    p.add_argument("--alpha", type=float, default=ALPHA, help="significance level of the tests (default %(default)g)")
    p.add_argument("--force", action="store_true", help="compare runs from different machines or software anyway")
    p.add_argument("--markdown", metavar="FILE", help="also write the comparison as Markdown (for a pull request)")
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    base, new = runs_to_compare(args.runs, args.baseline)
    comparison = compare_runs(base, new, Settings(args.threshold, args.alpha), force=args.force)
    print_table(comparison)
    if args.markdown:
        write_text(Path(args.markdown), markdown(comparison))
    if args.json:
        write_text(Path(args.json), json.dumps(to_json(comparison), indent=2))
    return EXIT_FAILED if comparison.regression else EXIT_OK


def runs_to_compare(paths: list[str], baseline: str | None) -> tuple[Run, Run]:
    if baseline:
        if len(paths) != 1:
            raise BenchError(f"compare: --baseline NAME takes one run folder (NEW), got {len(paths)}")
        from bench.results.baselines import find_baseline

        new = load_run(paths[0])
        return load_run(find_baseline(baseline, new.manifest, str(new.path / "manifest.json"))), new
    if len(paths) != 2:
        raise BenchError(f"compare: expected two run folders, BASE and NEW, got {len(paths)}")
    return load_run(paths[0]), load_run(paths[1])


def write_text(path: Path, text: str) -> None:
    """An output the user asked for (--markdown, --json); one that cannot be written is bad input, said in a line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"{path}: cannot write it here ({exc.strerror or exc})") from None


def change_text(case: CaseResult) -> str:
    return change_cell(case.ratio, case.ratio_ci)


def change_cell(ratio: float | None, interval) -> str:
    """A ratio as a change with its interval: `+30.0% [+29.4%, +30.6%]`; `-` without a ratio."""
    if ratio is None:
        return "-"
    text = f"{ratio - 1:+.1%}"
    if interval:
        text += f" [{interval[0] - 1:+.1%}, {interval[1] - 1:+.1%}]"
    return text


def cells(case: CaseResult) -> list[str]:
    """verdict, case, base median, new median, change [interval], p-value, why."""
    def ms(row):
        if row.get("status") != "ok":
            return "-"
        if scenario_of(row) == "offline":
            rate = samples_per_s(row)
            return f"{rate:.1f}/s" if rate else "-"
        return f"{row['latency_ms']['median']:.3f}" if row.get("latency_ms") else "-"

    p_value = "-" if case.p_holm is None else f"{case.p_holm:.2g}"
    q_value = "-" if case.q_value is None else f"{case.q_value:.2g}" + ("*" if case.q_value < ALPHA else "")
    return [SHOWN[case.verdict], case.case_id, ms(case.base), ms(case.new), change_text(case), p_value, q_value,
            ", ".join(case.reasons)]  # fmt: skip


HEADERS = ("verdict", "case", "base ms", "new ms", "change [interval]", "p Holm", "q BH", "why not judged")


def settings_text(comparison: Comparison) -> str:
    s = comparison.settings
    return (
        f"a change counts when Holm's adjusted p < {s.alpha:g} over every case (round medians where both runs have"
        f" rounds, else the samples' U test) and its {s.confidence:.0%} interval excludes 0 and reaches"
        f" ±{s.threshold:.0%}; q BH marked * below {ALPHA:g}"
    )


def baseline_info(run: Run) -> dict | None:
    """What `bench baseline save` recorded, when the run is a saved baseline."""
    from bench.results.baselines import INFO

    path = run.path / INFO
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def label(run: Run) -> str:
    info = baseline_info(run)
    return f"baseline {info.get('name')}" if info else run.name


def run_text(run: Run) -> str:
    commit = (run.commit or "no commit")[:10] + (" (dirty)" if run.dirty else "")
    info = baseline_info(run)
    saved = f"baseline {info.get('name')} saved {info.get('saved')} from {info.get('source')}: " if info else ""
    return f"{saved}{run.path} (commit {commit}, started {run.started or 'unknown'})"


def summary_text(comparison: Comparison) -> str:
    counts = comparison.counts()
    return ", ".join(f"{counts[v]} {SHOWN[v]}" for v in counts)


def print_table(comparison: Comparison) -> None:
    from rich.table import Table

    styles = {"slower": "bold red", "faster": "green", "can't tell": "yellow"}
    table = Table(title=f"{label(comparison.base)} → {label(comparison.new)}: {summary_text(comparison)}")
    for header in HEADERS:
        table.add_column(header, overflow="fold", no_wrap=header == "case")
    for case in comparison.cases:
        row = cells(case)
        table.add_row(*row, style=styles.get(row[0]))
    console = terminal.console()
    console.print(table)
    for line in footnotes(comparison):
        console.print(line, highlight=False, markup=False)


def footnotes(comparison: Comparison) -> list[str]:
    lines = [f"base: {run_text(comparison.base)}", f"new:  {run_text(comparison.new)}", settings_text(comparison)]
    if any(case.figure != "median call" for case in comparison.cases):
        lines.append("offline rows: samples/s under load; their change is in the time per sample, so +11% is 10% fewer"
                     " samples/s")  # fmt: skip
    if comparison.shift is not None:
        text = f"run-wide: new/base {comparison.shift:.3f} (geometric mean of the judged cases' ratios)"
        machine = comparison.machine_shift
        if machine is not None:
            text += f"; the machine itself (drift canary) ran {machine:.3f}x as long: not subtracted"
        lines.append(text)
    if comparison.differences:
        lines.append("compared despite: " + "; ".join(comparison.differences))
    if comparison.only_base:
        lines.append("only in base (not compared): " + ", ".join(comparison.only_base))
    if comparison.only_new:
        lines.append("only in new (not compared): " + ", ".join(comparison.only_new))
    return lines


def markdown(comparison: Comparison) -> str:
    """The comparison for a pull-request comment: the verdict first, then every case, slowest first."""
    headline = (
        "**Significantly slower: " + ", ".join(f"`{c.case_id}`" for c in comparison.cases if c.verdict == SLOWER) + "**"
        if comparison.regression
        else "**No case is significantly slower.**"
    )
    lines = [
        "## Performance comparison", "", headline, "", f"{summary_text(comparison)}; {settings_text(comparison)}.", "",
        "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS),
    ]  # fmt: skip
    for case in comparison.cases:
        row = [text.replace("|", "\\|") for text in cells(case)]
        row[0] = f"**{row[0]}**" if case.verdict == SLOWER else row[0]
        row[1] = f"`{row[1]}`"
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- {line}" for line in footnotes(comparison)]
    return "\n".join(lines)


def to_json(comparison: Comparison) -> dict:
    def run_entry(run: Run) -> dict:
        return {"path": str(run.path), "commit": run.commit, "dirty": run.dirty, "started": run.started,
                "baseline": baseline_info(run)}  # fmt: skip

    s = comparison.settings
    return {
        "schema": COMPARISON_SCHEMA,
        "base": run_entry(comparison.base),
        "new": run_entry(comparison.new),
        "settings": {"threshold": s.threshold, "alpha": s.alpha, "confidence": s.confidence},
        "regression": comparison.regression,
        "counts": comparison.counts(),
        "shift": comparison.shift,
        "machine_shift": comparison.machine_shift,
        "cases": [case.to_json() for case in comparison.cases],
        "only_in_base": comparison.only_base,
        "only_in_new": comparison.only_new,
        "differences": comparison.differences,
    }
