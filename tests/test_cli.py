"""The command line as a user meets it: help, --version, a closed pipe, and `bench show`'s formats and options."""

import argparse
import csv
import io
import json
import os
import subprocess
import sys

from bench import __version__
from bench.cli.app import build_parser
from bench.cli.table import WIDTH, cv_cell, render
from conftest import PROJECT, bench_cli
from test_report import make_row, synthetic_rows, write_run


def subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                yield from ((f"{name} {n}", c) for n, c in subparsers(child))


def test_help_is_for_users_with_examples_and_every_argument_is_explained():
    shown = bench_cli("--help")
    assert shown.returncode == 0 and "examples:" in shown.stdout and "bench show" in shown.stdout
    assert "parsing here" not in shown.stdout  # not the module's docstring
    for name, parser in subparsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"bench {name}: {action.dest} has no help"


def test_version():
    shown = bench_cli("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"bench {__version__}"


def test_a_closed_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    process = subprocess.Popen([sys.executable, "-m", "bench", "schema"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)  # fmt: skip
    process.stdout.close()  # the reader is gone before bench writes
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and stderr == ""


def test_show_formats_filters_and_sorts(tmp_path):
    run = write_run(tmp_path / "run", synthetic_rows())
    as_json = bench_cli("show", run, "--format", "json", "--filter", "backend=sdpa", "--filter", "threads=2")
    rows = json.loads(as_json.stdout)
    assert as_json.returncode == 1  # the run has a crashed case, whatever is shown
    assert {(r["backend"], r["threads"]) for r in rows} == {("sdpa", 2)} and [r["seq_len"] for r in rows] == [32, 128]
    as_csv = bench_cli("show", run, "--format", "csv", "--filter", "precision=int8")
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(records) == 4 and {r["backend"] for r in records} == {"ort"}
    as_md = bench_cli("show", run, "--format", "md")
    assert "### bert (feature-extraction)" in as_md.stdout and "| ★ fastest |" in as_md.stdout
    table = bench_cli("show", run, "--sort", "backend")
    lines = table.stdout.splitlines()
    assert "\x1b[" not in table.stdout and max(map(len, lines)) <= WIDTH
    first = lines.index(next(line for line in lines if line.startswith("bert (feature-extraction)  seq 32")))
    backends = [line.replace("★", "").split()[0] for line in lines[first + 4 : first + 8]]
    assert backends == sorted(backends)
    assert bench_cli("show", run, "--filter", "colour=red").returncode == 2


def test_show_summary_is_the_verdict_in_markdown(tmp_path):
    run = write_run(tmp_path / "run", synthetic_rows())
    shown = bench_cli("show", run, "--summary")
    assert "## Verdict" in shown.stdout and "| ship | ort int8 | 3 of 4 shapes |" in shown.stdout
    assert "median ms" not in shown.stdout  # the verdict, not the table


def test_a_single_sample_has_no_stable_colour():
    row = make_row("bert", "eager", "fp32", 32, 1, 10.0)
    row["samples_ms"] = row["samples_ms"][:1]
    row["latency_ms"]["cv"] = 0.0
    assert cv_cell(row) == ("- (n=1)", "dim")
    coloured = render([row], color=True)
    assert "\x1b[" in coloured and "\x1b[32m- (n=1)" not in coloured
    steady = make_row("bert", "eager", "fp32", 32, 1, 10.0)
    assert cv_cell(steady)[1] == "green" and cv_cell(steady)[0].endswith("(n=20)")
