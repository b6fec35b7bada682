"""`bench export --format pytest-benchmark RUN`: a run as the JSON file pytest-benchmark saves and compares.

The layout is pytest-benchmark's own (machine_info, commit_info, benchmarks, datetime, version), with times in
seconds and its statistics computed its way (quartiles by its methods, Tukey fences at 1.5 IQR), so
`pytest-benchmark compare FILE` and dashboards that read that format take it as theirs. One benchmark per measured
case: its `name` is the case id, its `group` the model and shape, its `params` the case's fields; pytest-benchmark's
`rounds` is the number of timed calls (all rounds pooled). Cases that were not measured are left out, as
pytest-benchmark leaves out benchmarks that errored; `extra_info` says whether a case may be compared and why not.
"""

from __future__ import annotations

import json
import statistics
import sys
from bisect import bisect_left, bisect_right
from importlib import metadata
from pathlib import Path

from bench.job import EXIT_OK
from bench.results.compare import distrust_reasons, measured, median_ci, rounds_of
from bench.results.run_files import Run, load_run

FORMATS = ("pytest-benchmark",)
FALLBACK_VERSION = "5.1.0"
PARAMS = ("model", "task", "backend", "backend_type", "environment", "precision", "seq_len", "batch_size", "threads",
          "padding_ratio")  # fmt: skip


def quartiles(data: list[float]) -> tuple[float, float]:
    """q1 and q3 as pytest-benchmark computes them (Wikipedia's methods 3 for odd counts and 2 for even)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2 :])
    k, rest = n // 4, n % 4
    if rest == 1:
        return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]


def benchmark_stats(samples_ms: list[float]) -> dict:
    """pytest-benchmark's `stats` of one benchmark, in seconds, from the raw samples."""
    data = [s / 1000 for s in samples_ms]
    ordered = sorted(data)
    n, total, mean = len(data), sum(data), statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0
    q1, q3 = quartiles(ordered)
    iqr = q3 - q1
    iqr_outliers = sum(v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr for v in data)
    stddev_outliers = sum(v < mean - stddev or v > mean + stddev for v in data)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": n,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers, "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": ordered[0] if n == 1 else ordered[bisect_left(ordered, q1 - 1.5 * iqr)],
        "hd15iqr": ordered[0] if n == 1 else ordered[bisect_right(ordered, q3 + 1.5 * iqr) - 1],
        "ops": n / total if total else 0, "total": total, "data": data, "iterations": 1,
    }  # fmt: skip


def benchmark(row: dict) -> dict:
    measure = row.get("measure") or {}
    reasons = distrust_reasons(row)
    return {
        "group": f"{row.get('model')} {row.get('task')} seq {row.get('seq_len')} batch {row.get('batch_size')}"
        f" threads {row.get('threads')}",
        "name": row["case_id"],
        "fullname": f"{row.get('suite')}::{row['case_id']}",
        "params": {key: row.get(key) for key in PARAMS},
        "param": f"{row.get('backend')}-{row.get('precision')}",
        "extra_info": {
            "median_ci_ms": median_ci(row), "rounds": len(rounds_of(row) or [1]), "trusted": not reasons,
            "not_compared": reasons, "accuracy_passed": (row.get("accuracy") or {}).get("passed"),
        },  # fmt: skip
        "options": {
            "disable_gc": False, "timer": "perf_counter_ns", "min_rounds": measure.get("min_iterations"),
            "max_time": measure.get("max_seconds"), "min_time": measure.get("min_seconds"),
            "warmup": measure.get("warmup"),
        },  # fmt: skip
        "stats": benchmark_stats(row["samples_ms"]),
    }


def machine_info(manifest: dict) -> dict:
    machine, software = manifest.get("machine") or {}, manifest.get("software") or {}
    cpu = machine.get("cpu") or {}
    system, _, release = (machine.get("os") or "").partition(" ")
    return {
        "node": machine.get("hostname"), "processor": cpu.get("model"), "machine": None,
        "python_compiler": None, "python_implementation": None, "python_implementation_version": software.get("python"),
        "python_version": software.get("python"), "python_build": None, "release": release or None,
        "system": system or None, "platform": machine.get("platform"),
        "cpu": {"brand_raw": cpu.get("model"), "count": cpu.get("logical_cpus"),
                "flags": sorted(flag for flag, present in (cpu.get("isa") or {}).items() if present)},
    }  # fmt: skip


def pytest_benchmark_json(run: Run) -> dict:
    git = run.manifest.get("git") or {}
    return {
        "machine_info": machine_info(run.manifest),
        "commit_info": {"id": git.get("commit"), "time": None, "author_time": None, "dirty": git.get("dirty"),
                        "project": "bench", "branch": None},  # fmt: skip
        "benchmarks": [benchmark(row) for row in run.rows if measured(row)],
        "datetime": run.started,
        "version": format_version(),
    }


def format_version() -> str:
    try:
        return metadata.version("pytest-benchmark")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run in another tool's format (pytest-benchmark's JSON)")
    p.add_argument("run_dir", help="the run folder to export")
    p.add_argument("--format", choices=FORMATS, required=True, help="the format to write")
    p.add_argument("--out", metavar="FILE", help="write to FILE (default: print it)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    run = load_run(args.run_dir)
    exported = pytest_benchmark_json(run)
    left_out = len(run.rows) - len(exported["benchmarks"])
    text = json.dumps(exported, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"{args.out}: {len(exported['benchmarks'])} benchmark(s)", file=sys.stderr)
    else:
        print(text)
    if left_out:
        print(f"left out: {left_out} case(s) that were not measured", file=sys.stderr)
    return EXIT_OK
