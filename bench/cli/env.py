"""`bench env create|list` and `bench doctor`, which starts the import probe (bench.worker.imports) under each
interpreter and says which backends import where, and why the others do not."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.job import EXIT_FAILED, EXIT_OK

PROBE = "bench.worker.imports"
PROBE_TIMEOUT = 300.0


def add_subcommands(sub) -> None:
    """Register `env` and `doctor` on the `bench` parser's subcommands."""
    p = sub.add_parser("env", help="build and list the Python environments backends run in")
    env_sub = p.add_subparsers(dest="env_command", required=True, metavar="ACTION")
    q = env_sub.add_parser("create", help="build an environment from requirements/NAME.txt (nothing if up to date)")
    q.add_argument("name", help="environment name: main or intel (built from requirements/NAME.txt)")
    q.add_argument("--root", help="where environments live (default $BENCH_ENV_DIR, else ~/.cache/bench/envs)")
    q.add_argument("--rebuild", action="store_true", help="delete the environment first and build it from nothing")
    q.set_defaults(func=cmd_env_create)
    q = env_sub.add_parser("list", help="each environment's state, interpreter and torch version")
    q.add_argument("--root", help="where environments live (default $BENCH_ENV_DIR, else ~/.cache/bench/envs)")
    q.set_defaults(func=cmd_env_list)

    p = sub.add_parser("doctor", help="which backends import in which environment, and why the others do not")
    p.add_argument("--root", help="where environments live (default $BENCH_ENV_DIR, else ~/.cache/bench/envs)")
    p.set_defaults(func=cmd_doctor)


def cmd_env_create(args) -> int:
    from bench.environments import create

    return EXIT_OK if create(args.name, args.root, rebuild=args.rebuild) else EXIT_FAILED


def cmd_env_list(args) -> int:
    from bench.environments import environment, environment_names, env_root, package_version

    print(f"environments root: {env_root(args.root)}")
    rows = [("environment", "state", "torch", "interpreter")]
    for name in environment_names():
        env = environment(name, args.root)
        torch = package_version(env.python, "torch") if env.built else "-"
        rows.append((name, env.state(), torch, str(env.python)))
    print(render_columns(rows))
    return EXIT_OK


def cmd_doctor(args) -> int:
    from bench.backends import BACKENDS
    from bench.environments import environment, environment_names

    unusable = []
    for name in environment_names():
        env = environment(name, args.root)
        own = [b for b, info in BACKENDS.items() if info.environment == name]
        if not env.built:
            print(f"{name}: not built ({env.python}); build it with: {env.build_command}")
            unusable += [(b, f"environment {name!r} is not built") for b in own]
            continue
        report = run_probe(env.python, list(BACKENDS))
        print(describe(name, env.python, report, own))
        unusable += [(b, problem_of(report, b)) for b in own if not report.get("backends", {}).get(b, {}).get("ok")]
    print()
    if not unusable:
        print("every backend imports in its own environment")
        return EXIT_OK
    for backend, why in unusable:
        print(f"cannot run {backend} ({BACKENDS[backend].environment}): {why}")
    return EXIT_FAILED


def run_probe(python, backends: list[str], timeout: float = PROBE_TIMEOUT) -> dict:
    """The probe's report from `python`, or {"error": ...} when it died, hung or could not start."""
    from bench.run.launch import run_child

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        outcome = run_child(
            python, PROBE, backends, Path(tmp) / "probe.json",
            threads=1, timeout=timeout, output_path=Path(tmp) / "output.log",
        )  # fmt: skip
    if outcome.status == "ok":
        return outcome.result
    if outcome.status == "timeout":
        return {"error": f"the probe gave no answer within {timeout:g} s"}
    if outcome.status == "crashed":
        tail = (outcome.stderr_tail.splitlines() or [""])[-1]
        return {"error": f"the probe exited with code {outcome.returncode} before answering: {tail}"}
    return {"error": outcome.reason}  # it could not start, or answered with an error


def problem_of(report: dict, backend: str) -> str:
    if "error" in report:
        return report["error"]
    return report["backends"].get(backend, {}).get("error", "not probed")


def describe(name: str, python, report: dict, own: list[str]) -> str:
    if "error" in report:
        return f"{name}: {python}\n  probe failed: {report['error']}"
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [f"{name}: {python}", f"  {versions}"]
    backends = report["backends"]
    width = max(map(len, backends), default=0)
    for backend in own + sorted(set(backends) - set(own)):
        lines.append(f"  {backend.ljust(width)}  {import_verdict(backends[backend], backend in own)}")
    return "\n".join(lines)


def import_verdict(result: dict, own: bool) -> str:
    """A backend that is not meant to import here and does not is no failure: n/a, with where it runs."""
    if own:
        return "imports" if result["ok"] else f"does not import: {result['error']}"
    return f"imports (runs in {result['environment']})" if result["ok"] else f"n/a (runs in {result['environment']})"


def render_columns(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)
