"""`bench slurm SUITE --shards N`: the suite as a Slurm job array, one shard per task, each task on a whole node.

The batch script is written into the output folder (resubmit one task by hand with `sbatch --array=K` on it);
task K runs `bench run SUITE --shard K/N --out DIR/shard-K` with this interpreter in this directory, or resumes
DIR/shard-K when it already holds a run (a requeued or resubmitted task).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.job import EXIT_FAILED, EXIT_OK

SCRIPT = "bench-slurm.sh"


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Arguments before `--`, and those after it (None without `--`)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "slurm", help="submit a suite as a Slurm job array: one shard per task, each task on a whole node",
        usage="bench slurm SUITE --shards N [options] [-- sbatch options...]",
        description="Options after -- go to sbatch as they are (e.g. -- --partition=cpu --time=04:00:00).",
    )  # fmt: skip
    p.add_argument("suite", help="the suite file to run, sharded over the job array")
    p.add_argument("--shards", type=int, required=True, metavar="N", help="tasks in the array, one shard each")
    p.add_argument("--out", help="folder for the script, the tasks' output and shard-K/ (default under results/)")
    p.add_argument("--wait", action="store_true", help="return when every task has ended (sbatch --wait)")
    p.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE", help="as for bench run")
    p.add_argument("--costs", metavar="RUN_DIR", help="balance the shards by the wall times of this run")
    p.add_argument("--no-peak", action="store_true", help="as for bench run")
    p.add_argument("--no-report", action="store_true", help="as for bench run")
    p.add_argument("--emulated", action="store_true", help="as for bench run (each node decides what it emulates)")
    p.add_argument("--quiet-wait", type=float, metavar="SECONDS", help="as for bench run")
    p.set_defaults(func=cmd_slurm)


def cmd_slurm(args) -> int:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise BenchError("slurm: expected sbatch on PATH, got none; run this where Slurm jobs are submitted")
    if args.shards < 1:
        raise BenchError(f"slurm: --shards: expected a number of tasks >= 1, got {args.shards}")
    name, suite_path, out, cases = checked_plan(args)
    script = out / SCRIPT
    script.write_text(batch_script(args, name, suite_path, out))
    command = [sbatch, "--parsable", *array_options(args.shards, out, name)]
    command += (["--wait"] if args.wait else []) + args.passthrough + [str(script)]
    try:
        job, returncode = submit(command, f"{cases} cases in {args.shards} shards: {shlex.join(command)}")
    except BenchError:
        script.unlink()  # nothing was submitted: the same --out may be used again
        raise
    merge = f"bench merge {out}/shard-* --out {out}/merged"
    print(f"shards: {out}/shard-K; when the array has ended: {merge}", file=sys.stderr)
    if not args.wait:
        return EXIT_OK
    if returncode != 0:
        print(f"job {job}: a task ended with exit code {returncode}; see {out}/slurm-{job}_*.out", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def checked_plan(args) -> tuple[str, Path, Path, int]:
    """The suite, filters and costs checked here, before anything is submitted; the output folder made."""
    from bench.run.shards import known_costs
    from bench.plan.suite import load_suite
    from bench.run.workflow import default_out_dir, plan

    suite, path = load_suite(args.suite)
    cases, _ = plan(suite, args.filter)
    if args.costs:
        known_costs(args.costs)
    if args.quiet_wait is not None and not 0 <= args.quiet_wait < float("inf"):
        raise BenchError(f"slurm: --quiet-wait: expected a number of seconds >= 0, got {args.quiet_wait:g}")
    out = Path(args.out or default_out_dir(suite.name)).resolve()
    if (out / SCRIPT).exists() or any(out.glob("shard-*")):
        raise BenchError(f"{out}: expected a new folder, got one with a submitted array (its {SCRIPT} or shard-*)")
    out.mkdir(parents=True, exist_ok=True)
    return suite.name, path.resolve(), out, len(cases)


def array_options(shards: int, out: Path, name: str) -> list[str]:
    return [
        f"--array=0-{shards - 1}",
        "--exclusive",
        f"--job-name=bench-{name}",
        f"--output={out}/slurm-%A_%a.out",
        f"--chdir={os.getcwd()}",
    ]


def run_options(args) -> list[str]:
    """What each task's `bench run` is given besides the suite, shard and folder (the same on --resume)."""
    options = (["--no-peak"] if args.no_peak else []) + (["--no-report"] if args.no_report else [])
    options += ["--cold-start"] if getattr(args, "cold_start", False) else []
    options += ["--emulated"] if getattr(args, "emulated", False) else []
    return options + (["--quiet-wait", f"{args.quiet_wait:g}"] if args.quiet_wait is not None else [])


def batch_script(args, name: str, suite_path: Path, out: Path) -> str:
    bench = f"{shlex.quote(sys.executable)} -m bench run"
    fresh = [str(suite_path), *sum((["--filter", f] for f in args.filter), [])]
    fresh += ["--costs", str(Path(args.costs).resolve())] if args.costs else []
    common = shlex.join(run_options(args))
    header = "\n".join(f"#SBATCH {option}" for option in array_options(args.shards, out, name))
    return f"""#!/bin/bash
# bench slurm: {args.shards} shards of {suite_path}; resubmit task K alone with: sbatch --array=K {out / SCRIPT}
{header}
set -euo pipefail
SHARD={shlex.quote(str(out))}/shard-"$SLURM_ARRAY_TASK_ID"
if [ -e "$SHARD/manifest.json" ]; then
  exec {bench} --resume "$SHARD" {common}
fi
exec {bench} {shlex.join(fresh)} --shard "$SLURM_ARRAY_TASK_ID/{args.shards}" --out "$SHARD" {common}
"""


def submit(command: list[str], note: str) -> tuple[str, int]:
    """Submit; print the job id (and the note) as soon as sbatch says it, before --wait returns. A refused job is
    bad input."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline().strip()
    job = first.split(";")[0]
    if job:
        print(job, flush=True)
        print(f"submitted job {job}: {note}", file=sys.stderr, flush=True)
    rest, error = process.communicate()
    error = " ".join(error.split())
    if not job:
        raise BenchError(f"slurm: sbatch refused the job (exit code {process.returncode}): {error or rest.strip()}")
    return job, process.returncode
