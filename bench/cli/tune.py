"""`bench tune SUITE --budget p99_ms=50` (its command is in bench.cli.app): the budget read, and a suite per winner
written once the run folder holds the candidates' rows (bench.run.tune), after the run or its resume.

Exit 0 when every candidate was measured cleanly, 1 when one failed or was contaminated (the answer is still
printed), 2 on bad input.
"""

from __future__ import annotations

import sys

import yaml

from bench.errors import BenchError

BUDGETS = ("p99_ms", "ttft_ms", "tpot_ms")
EXPECTED = ("p99_ms=MS, or for generation ttft_ms=MS and/or tpot_ms=MS (comma-separated), each a positive number of"
            " milliseconds")  # fmt: skip


def parse_budget(text: str) -> dict[str, float]:
    """`p99_ms=50` or `ttft_ms=500,tpot_ms=50`: the bounds a rate search holds at p99 (bench.results.server.BOUNDS)."""
    budget: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            bound = float(value)
        except ValueError:
            bound = 0.0
        if name not in BUDGETS or name in budget or not sep or not 0 < bound < float("inf"):
            raise BenchError(f"tune: --budget: expected {EXPECTED}, got {text!r}")
        budget[name] = bound
    if "p99_ms" in budget and len(budget) > 1:
        raise BenchError(f"tune: --budget: expected {EXPECTED}, not both, got {text!r}")
    return budget


def answer(run_dir) -> None:
    """A suite per shape's winner written beside the results (what to ship is in the tables `bench show` printed)."""
    from bench.results.folder import latest_rows
    from bench.results.tune import tuned_suites

    rows = latest_rows(run_dir.rows())
    for index, suite in enumerate(tuned_suites(run_dir.read_manifest(), rows), 1):
        path = run_dir.path / f"tuned-{index}.yaml"
        header = f"# {suite['description']}\n# bench run {path}\n"
        path.write_text(header + yaml.safe_dump(suite, sort_keys=False, allow_unicode=True))
        print(f"suite: {path}", file=sys.stderr)
