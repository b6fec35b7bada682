"""`bench env create|list` and `bench doctor`; also the import probe that doctor runs under each interpreter.

The probe is `python -m bench.cli.env --probe RESULT.json BACKEND...`: it imports each backend's module and the
libraries it needs (what the backend declares it requires) and writes what failed and why.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile

from bench.machine import installed_versions

EXIT_OK, EXIT_FAILED = 0, 1
PROBE_TIMEOUT = 300.0
VERSIONS = ("torch", "transformers", "optimum", "intel-extension-for-pytorch", "onnxruntime", "openvino", "numpy")


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
    from bench.run.launch import worker_environment

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        result = os.path.join(tmp, "probe.json")
        command = [str(python), "-m", "bench.cli.env", "--probe", result, *backends]
        try:
            done = subprocess.run(
                command, env=worker_environment(dict(os.environ), 1), capture_output=True, text=True,
                timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"the probe gave no answer within {timeout:g} s"}
        except OSError as exc:
            return {"error": f"cannot start {python}: {exc.strerror or exc}"}
        try:
            with open(result) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            tail = (done.stderr.strip().splitlines() or [""])[-1]
            return {"error": f"the probe exited with code {done.returncode} before answering: {tail}"}


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


def probe(backends: list[str]) -> dict:
    """Import each backend's module and its libraries here; record what failed, never stop at a failure."""
    from bench.backends import BACKENDS

    results = {}
    for name in backends:
        info = BACKENDS[name]
        try:
            importlib.import_module(info.module)
            for required in info.requires:
                importlib.import_module(required)
            results[name] = {"ok": True, "environment": info.environment}
        except BaseException as exc:  # noqa: BLE001 - a library that exits while importing is a finding too
            message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            results[name] = {"ok": False, "environment": info.environment, "error": message}
    return {"python": sys.executable, "versions": installed_versions(VERSIONS), "backends": results}


def probe_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli.env")
    parser.add_argument("--probe", required=True, metavar="RESULT")
    parser.add_argument("backends", nargs="+")
    args = parser.parse_args(argv)
    report = probe(args.backends)
    with open(args.probe, "w") as handle:
        json.dump(report, handle)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(probe_main(sys.argv[1:]))
