"""The machine's matrix-multiply peak: the ceiling a case's GFLOP/s is compared with.

The parent starts `python -m bench.run.peak` once per thread count, pinned to that many CPUs like a worker; the child
times torch matrix products (fp32 and bf16 `torch.mm`, int8 `torch._int_mm`) at a few sizes and keeps the best
rate of each precision, each rate from the median call: the statistic the cases are reported with, so a case's % of
peak compares like with like.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


PRECISIONS = ("fp32", "bf16", "int8")
SIZES = (512, 1024)
SECONDS_PER_POINT = 0.1
MIN_CALLS = 3
PROBE_TIMEOUT_S = 120
METHOD = (
    "median call of square torch.mm (fp32, bf16) and torch._int_mm (int8) at sizes "
    + ", ".join(map(str, SIZES))
    + "; 2·n³ operations per call; one pinned process per thread count"
)


def median_rate(call, operations: float, seconds: float, clock=time.perf_counter) -> tuple[float, int]:
    """(G operations per second of the median call, number of calls) over about `seconds` of calls."""
    call()
    durations = []
    deadline = clock() + seconds
    while len(durations) < MIN_CALLS or clock() < deadline:
        start = clock()
        call()
        durations.append(clock() - start)
    return operations / statistics.median(durations) / 1e9, len(durations)


def kernel(torch, precision: str, n: int):
    generator = torch.Generator().manual_seed(0)
    if precision == "int8":
        a, b = (torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator) for _ in range(2))
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
    return lambda: torch.mm(a, b)


def probe(threads: int, seconds: float = SECONDS_PER_POINT) -> dict:
    """In the pinned child: {"gflops": {precision: best}, "sizes": {...}, "errors": {...}, "torch": version}."""
    import torch

    torch.set_num_threads(threads)
    out = {"threads": torch.get_num_threads(), "cpus": sorted(os.sched_getaffinity(0)), "torch": torch.__version__}
    out.update(gflops={}, sizes={}, errors={})
    for precision in PRECISIONS:
        for n in SIZES:
            try:
                rate, _ = median_rate(kernel(torch, precision, n), 2.0 * n**3, seconds)
            except (RuntimeError, NotImplementedError) as exc:  # an operation this torch or CPU lacks
                out["errors"][precision] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                break
            if rate > out["gflops"].get(precision, 0.0):
                out["gflops"][precision], out["sizes"][precision] = rate, n
    return out


def probe_thread_counts(case_threads, cpus) -> list[int]:
    """1, every thread count the cases use that the machine can pin, and all CPUs."""
    return sorted({1, len(cpus)} | {t for t in case_threads if t <= len(cpus)})


def run_probe(python, threads: int, cpus: list[int], seconds: float, work_dir: Path | None = None) -> dict:
    """One pinned probe; its result file in `work_dir` (a run's jobs folder) or a temporary folder."""
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
            return run_probe(python, threads, cpus, seconds, Path(tmp))
    from bench.run.launch import pin_and_tie, worker_environment

    work_dir.mkdir(parents=True, exist_ok=True)
    result = work_dir / f"peak-{threads}.json"
    command = [str(python), "-m", "bench.run.peak", "--threads", str(threads), "--seconds", str(seconds)]
    try:
        done = subprocess.run(
            [*command, "--result", str(result)],
            env=worker_environment(dict(os.environ), threads),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            preexec_fn=pin_and_tie(cpus),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if done.returncode != 0 or not result.exists():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"probe exited with code {done.returncode}: {tail}"}
    try:
        return json.loads(result.read_text())
    finally:
        result.unlink()


def measure_peak(
    thread_counts: list[int], python=sys.executable, seconds: float = SECONDS_PER_POINT, allowed=None, work_dir=None
) -> dict:
    """The manifest's `peak`: {"gflops": {precision: {"threads": rate}}, "method", "torch", "errors", ...}.

    Probes are pinned within `allowed` (default: every CPU this process may use).
    """
    from bench.results.folder import now
    from bench.run.cpus import pick_cpus
    from bench.topology import available_cpus

    available = allowed if allowed else available_cpus()
    peak = {"measured": now(), "method": METHOD, "gflops": {}, "sizes": {}, "cpus": {}, "errors": [], "torch": None}
    start = time.monotonic()
    for threads in thread_counts:
        cpus = pick_cpus(threads, available)
        if cpus is None:
            peak["errors"].append(f"{threads} threads: this run may use only {len(available)} CPUs")
            continue
        result = run_probe(python, threads, cpus, seconds, work_dir)
        if "error" in result:
            peak["errors"].append(f"{threads} threads: {result['error']}")
            continue
        peak["torch"] = result["torch"]
        peak["cpus"][str(threads)] = result["cpus"]
        for precision, rate in result["gflops"].items():
            peak["gflops"].setdefault(precision, {})[str(threads)] = round(rate, 1)
            peak["sizes"].setdefault(precision, {})[str(threads)] = result["sizes"][precision]
        for precision, error in result["errors"].items():
            peak["errors"].append(f"{precision} at {threads} threads: {error}")
    peak["seconds"] = round(time.monotonic() - start, 1)
    peak["notes"] = busy_notes(peak["gflops"])
    return peak


def busy_notes(gflops: dict) -> list[str]:
    """More CPUs giving a clearly lower peak means something else was running: say so, it inflates % of peak."""
    notes = []
    for precision, rates in gflops.items():
        counts = sorted(rates, key=int)
        for fewer, more in zip(counts, counts[1:]):
            if rates[more] < 0.9 * rates[fewer]:
                notes.append(
                    f"{precision}: {rates[more]:.1f} GFLOP/s on {more} threads is below {rates[fewer]:.1f} on {fewer}:"
                    " other processes were using these CPUs, so % of peak at that thread count reads high"
                )
    return notes


def record_peak(run_dir, cases) -> dict:
    """Store the peak as manifest["peak"] once per run folder (a resumed run keeps its first).

    The probe is remembered per machine and boot (remembered_peak): a second run on the same machine since the last
    boot reuses it instead of spending seconds on it again; `bench peak` measures afresh and refreshes it.
    """
    from bench.topology import available_cpus

    manifest = run_dir.read_manifest()
    if "peak" not in manifest:
        places = available_cpus(within=run_dir.cpus)
        counts = probe_thread_counts({c.threads for c in cases}, places)
        manifest["peak"] = remembered_peak(counts, allowed=places, work_dir=run_dir.jobs / "peak")
        shutil.rmtree(run_dir.jobs, ignore_errors=True)  # the probes' result files; no case runs yet
        run_dir.write_manifest(manifest)
    return manifest["peak"]


def memo_path(thread_counts: list[int], python=sys.executable, allowed=None) -> Path:
    """Keyed by this boot, the CPUs the probe may use, the thread counts and the interpreter."""
    from bench.paths import cache_root
    from bench.topology import available_cpus

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    key = json.dumps([boot, sorted(allowed or available_cpus()), thread_counts, str(python), METHOD])
    return cache_root() / "peak" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def remembered_peak(thread_counts: list[int], python=sys.executable, allowed=None, work_dir=None) -> dict:
    """The probe measured earlier in this boot for the same CPUs and thread counts, else a fresh one."""
    path = memo_path(thread_counts, python, allowed)
    try:
        peak = json.loads(path.read_text())
        return {**peak, "remembered": True}
    except (OSError, ValueError):
        pass
    return remember(measure_peak(thread_counts, python, allowed=allowed, work_dir=work_dir), path)


def remember(peak: dict, path: Path) -> dict:
    if peak["gflops"] and not peak["errors"] and not peak["notes"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(peak))
        os.replace(tmp, path)
    return peak


def summary(peak: dict) -> str:
    """One line: each precision's GFLOP/s at each thread count probed."""
    counts = sorted({t for rates in peak["gflops"].values() for t in rates}, key=int)
    parts = [
        f"{precision} " + "/".join(f"{rates[t]:.0f}" if t in rates else "-" for t in counts)
        for precision, rates in peak["gflops"].items()
    ]
    text = ", ".join(parts) + f" GFLOP/s at {'/'.join(counts)} threads" if parts else "not measured"
    text += "".join(f"; {error}" for error in peak["errors"])
    return text + (f" (remembered from {peak['measured']}, this boot)" if peak.get("remembered") else "")


def render(peak: dict) -> str:
    counts = sorted({int(t) for rates in peak["gflops"].values() for t in rates})
    header = ["precision", *(f"{t} thr GFLOP/s" for t in counts)]
    lines = [header]
    for precision, rates in peak["gflops"].items():
        lines.append([precision, *(f"{rates[str(t)]:.1f}" if str(t) in rates else "-" for t in counts)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines]
    out += [f"not measured: {error}" for error in peak["errors"]]
    out += [f"note: {note}" for note in peak.get("notes", [])]
    out.append(f"({peak['method']}; torch {peak['torch']}; {peak['seconds']} s)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run.peak", description="the matmul probe (child side)")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_POINT)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    Path(args.result).write_text(json.dumps(probe(args.threads, args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
