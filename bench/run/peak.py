"""The machine's matrix-multiply peak: the ceiling a case's GFLOP/s is compared with.

The parent starts the probe (`python -m bench.worker.peak`) once per thread count, pinned to that many CPUs like a
worker, and keeps what it answers; the probe itself, and how it measures, is in bench.worker.peak.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.run.launch import job_folder, run_child
from bench.worker.peak import PRECISIONS, SECONDS_PER_POINT, SIZES

PROBE = "bench.worker.peak"
PROBE_TIMEOUT_S = 120
METHOD = (
    "median call of square torch.mm (fp32, bf16) and torch._int_mm (int8) at sizes "
    + ", ".join(map(str, SIZES))
    + "; 2·n³ operations per call; one pinned process per thread count; a size whose median call takes over"
    + f" {SECONDS_PER_POINT:g} s is the last tried"
)


def probe_precisions(cases, flags, emulated: bool = False) -> tuple[list[str], dict]:
    """(the precisions to probe, {skipped precision: why}): fp32, and bf16 or int8 where this CPU runs them natively
    or the run measures cases of them (bf16 cases it only emulates are measured with --emulated only)."""
    from bench import cpu

    asked = set()
    for case in cases:
        tier = cpu.support(case.backend_type, case.precision, flags, case.backend_options).tier
        if tier == cpu.NATIVE or (tier == cpu.EMULATED and emulated):
            asked.add(case.precision)
    native = {"bf16": cpu.bf16_native(flags), "int8": cpu.int8_dot_product(flags)}
    probed, skipped = ["fp32"], {}
    for precision in ("bf16", "int8"):
        if native[precision] or precision in asked:
            probed.append(precision)
        else:
            lacks = "AVX512_BF16 or AMX-BF16" if precision == "bf16" else "VNNI"
            skipped[precision] = f"this CPU has no {lacks} and the run measures no {precision} case"
    return probed, skipped


def probe_thread_counts(case_threads, cpus) -> list[int]:
    """1, every thread count the cases use that the machine can pin, and all CPUs."""
    return sorted({1, len(cpus)} | {t for t in case_threads if t <= len(cpus)})


def run_probe(
    python, threads: int, cpus: list[int], seconds: float, work_dir: Path | None = None, precisions=PRECISIONS,
    warm=None,
) -> dict:
    """One pinned probe's answer, or {"error": ...}; its files in `work_dir` (a run's jobs folder) or a temporary one.
    `warm` (the run's bench.run.warm.WarmStarts) forks it from a fork server of `python`, which spares it importing
    torch (it sets its own thread count); without one it starts as a fresh interpreter."""
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
            return run_probe(python, threads, cpus, seconds, Path(tmp) / "probes", precisions, warm)
    arguments = ["--threads", str(threads), "--seconds", str(seconds), "--precisions", ",".join(precisions)]
    with job_folder(work_dir / f"peak-{threads}") as folder:
        where = {"timeout": PROBE_TIMEOUT_S, "output_path": Path(folder) / "output.log", "cpus": cpus}
        server_threads = warm.threads_of(python) if warm is not None else None
        outcome = None
        if server_threads is not None:
            outcome = warm.run_child(python, PROBE, arguments, Path(folder) / "result.json", threads=server_threads, **where)
        if outcome is None:
            outcome = run_child(python, PROBE, arguments, Path(folder) / "result.json", threads=threads, **where)
    if outcome.status == "ok":
        return outcome.result
    if outcome.status in ("timeout", "unavailable"):
        return {"error": outcome.reason}
    said = outcome.reason if outcome.status != "crashed" else (outcome.stderr_tail.splitlines() or ["no output"])[-1]
    return {"error": f"probe exited with code {outcome.returncode}: {said}"}


def measure_peak(
    thread_counts: list[int],
    python=sys.executable,
    seconds: float = SECONDS_PER_POINT,
    allowed=None,
    work_dir=None,
    precisions=PRECISIONS,
    skipped: dict | None = None,
    warm=None,
) -> dict:
    """The manifest's `peak`: {"gflops": {precision: {"threads": rate}}, "method", "torch", "errors", "skipped"...}.

    Probes are pinned within `allowed` (default: every CPU this process may use).
    """
    from bench.results.folder import now
    from bench.run.cpus import pick_cpus
    from bench.topology import available_cpus

    available = allowed if allowed else available_cpus()
    peak = {"measured": now(), "method": METHOD, "gflops": {}, "sizes": {}, "cpus": {}, "errors": [], "torch": None}
    peak["start"] = None  # "warm": forked from the run's fork server, "cold": a new interpreter
    peak["skipped"] = dict(skipped or {})
    start = time.monotonic()
    for threads in thread_counts:
        cpus = pick_cpus(threads, available)
        if cpus is None:
            peak["errors"].append(f"{threads} threads: this run may use only {len(available)} CPUs")
            continue
        result = run_probe(python, threads, cpus, seconds, work_dir, precisions, warm)
        if "error" in result:
            peak["errors"].append(f"{threads} threads: {result['error']}")
            continue
        peak["torch"], peak["start"] = result["torch"], result.get("start")
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


def record_peak(run_dir, cases, emulated: bool = False, warm=None) -> dict:
    """Store the peak as manifest["peak"] once per run folder (a resumed run keeps its first).

    The probe is remembered per machine and boot (remembered_peak): a second run on the same machine since the last
    boot reuses it instead of spending seconds on it again; `bench peak` measures afresh and refreshes it.
    """
    from bench.cpu import cpu_flags
    from bench.topology import available_cpus

    manifest = run_dir.read_manifest()
    if "peak" not in manifest:
        places = available_cpus(within=run_dir.cpus)
        counts = probe_thread_counts({c.threads for c in cases}, places)
        precisions, skipped = probe_precisions(cases, cpu_flags(), emulated)
        manifest["peak"] = remembered_peak(
            counts, allowed=places, work_dir=run_dir.jobs / "peak", precisions=precisions, skipped=skipped, warm=warm
        )
        shutil.rmtree(run_dir.jobs, ignore_errors=True)  # the probes' result files; no case runs yet
        run_dir.write_manifest(manifest)
    return manifest["peak"]


AFTER_RUN_MIN_S = 300.0
"""A run this long or longer probes the peak again at its end: the machine may have changed speed over it."""
PEAK_MOVED = 0.05


def record_peak_after(run_dir, cases) -> dict | None:
    """Probe the peak again, afresh, and keep it as manifest["peak"]["after"] with the figures that moved more than
    PEAK_MOVED from the probe before the run; None when the run has no peak to compare with."""
    from bench.topology import available_cpus

    manifest = run_dir.read_manifest()
    before = manifest.get("peak")
    if not before or not before.get("gflops"):
        return None
    places = available_cpus(within=run_dir.cpus)
    counts = probe_thread_counts({c.threads for c in cases}, places)
    precisions = list(before["gflops"])
    probe = measure_peak(counts, allowed=places, work_dir=run_dir.jobs / "peak", precisions=precisions)
    shutil.rmtree(run_dir.jobs, ignore_errors=True)
    after = {"measured": probe["measured"], "gflops": probe["gflops"], "moved": peak_moves(before, probe)}
    if after["moved"]:
        merged = {**probe, "gflops": higher_of(before["gflops"], probe["gflops"]), "skipped": before.get("skipped", {})}
        remember(merged, memo_path(counts, allowed=places, precisions=precisions))
    manifest = run_dir.read_manifest()
    manifest["peak"]["after"] = after
    run_dir.write_manifest(manifest)
    return after


def higher_of(before: dict, after: dict) -> dict:
    """Per precision and thread count, the higher of two probes: a peak is what the machine can reach, so a later
    run of this boot starts from the better of the two (a probe that caught a slow moment is not kept)."""
    merged = {precision: dict(rates) for precision, rates in before.items()}
    for precision, rates in after.items():
        for threads, rate in rates.items():
            old = merged.setdefault(precision, {}).get(threads)
            merged[precision][threads] = rate if old is None or (rate and rate > old) else old
    return merged


def peak_moves(before: dict, after: dict) -> list[str]:
    """Each figure of the probe after the run that differs by more than PEAK_MOVED from the one before."""
    moved = []
    for precision, rates in before["gflops"].items():
        for threads, rate in rates.items():
            new = (after["gflops"].get(precision) or {}).get(threads)
            if rate and new and abs(new / rate - 1) > PEAK_MOVED:
                moved.append(f"{precision} at {threads} thread(s) {rate:.0f} before, {new:.0f} after ({new / rate - 1:+.0%})")
    return moved


def memo_path(thread_counts: list[int], python=sys.executable, allowed=None, precisions=PRECISIONS) -> Path:
    """Keyed by this boot, the CPUs the probe may use, the thread counts, the precisions and the interpreter."""
    from bench.paths import cache_root
    from bench.topology import available_cpus

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    key = json.dumps([boot, sorted(allowed or available_cpus()), thread_counts, str(python), METHOD, list(precisions)])
    return cache_root() / "peak" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def remembered_peak(
    thread_counts: list[int], python=sys.executable, allowed=None, work_dir=None, precisions=PRECISIONS, skipped=None,
    warm=None,
) -> dict:
    """The probe measured earlier in this boot for the same CPUs, thread counts and precisions, else a fresh one."""
    path = memo_path(thread_counts, python, allowed, precisions)
    try:
        peak = json.loads(path.read_text())
        return {**peak, "remembered": True}
    except (OSError, ValueError):
        pass
    measured = measure_peak(
        thread_counts, python, allowed=allowed, work_dir=work_dir, precisions=precisions, skipped=skipped, warm=warm
    )
    return remember(measured, path)


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
    text += "".join(f"; {precision} not probed: {why}" for precision, why in (peak.get("skipped") or {}).items())
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
    out += [f"not probed: {precision}: {why}" for precision, why in (peak.get("skipped") or {}).items()]
    out += [f"note: {note}" for note in peak.get("notes", [])]
    out.append(f"({peak['method']}; torch {peak['torch']}; {peak['seconds']} s)")
    return "\n".join(out)
