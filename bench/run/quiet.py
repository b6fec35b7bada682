"""Before a case: are the CPUs it is about to be pinned to quiet? If not, say who is busy and wait a while.

Other processes' share of those CPUs is their busy time in /proc/stat over a short sample, minus the CPU time of
this process (idle at that moment; its workers have ended), as a share of the sample's capacity.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import psutil

from bench.measure.interference import PROC, MeterOff, read_cpu_ticks

QUIET_WAIT_S = 60.0
"""`bench run --quiet-wait` default: how long to wait for busy CPUs to become quiet before measuring anyway."""
SAMPLE_S = 0.3
"""Length of one check."""
BUSY_SHARE_MAX = 0.10
"""CPUs more than 10% busy with other processes are busy (/proc/stat counts 10 ms ticks: 0.3 s is 30 per CPU, the
bound 3 of them)."""
PAUSE_S = 1.5
"""Pause between checks while waiting."""
SAY_EVERY_S = 10.0
"""While waiting, say who is busy again this often."""
TOP_PROCESSES = 5


def sample(cpus: list[int], seconds: float = SAMPLE_S, proc_root: str = PROC) -> dict:
    """One check: {"busy_share", "top_processes"}, or {"off": reason} when /proc/stat is not readable."""
    try:
        procs_before, procs_started, own_before = process_cpu_s(), time.monotonic(), own_cpu_s()
        start, before = time.monotonic(), read_cpu_ticks(cpus, proc_root)
        time.sleep(seconds)
        after, elapsed = read_cpu_ticks(cpus, proc_root), time.monotonic() - start
    except MeterOff as exc:
        return {"off": str(exc)}
    except (psutil.Error, OSError) as exc:
        return {"off": f"cannot list processes: {exc}"}
    own = own_cpu_s() - own_before
    ticks = sum(after[c]["busy"] - before[c]["busy"] for c in after)
    foreign = max(0.0, ticks / os.sysconf("SC_CLK_TCK") - own)
    return {
        "busy_share": round(min(1.0, foreign / (elapsed * len(cpus))), 3),
        "top_processes": top_processes(procs_before, process_cpu_s(), time.monotonic() - procs_started),
    }


def own_cpu_s() -> float:
    """CPU time of this process (its workers have ended when a check runs)."""
    times = os.times()
    return times.user + times.system


def process_cpu_s() -> dict[int, tuple[str, float, int | None]]:
    """Every other process: pid -> (name, CPU seconds so far, the CPU it last ran on)."""
    found = {}
    for proc in psutil.process_iter(["name", "cpu_times", "cpu_num"]):
        times = proc.info["cpu_times"]
        if proc.pid != os.getpid() and times is not None:
            found[proc.pid] = (proc.info["name"], times.user + times.system, proc.info.get("cpu_num"))
    return found


def top_processes(before: dict, after: dict, elapsed: float) -> list[dict]:
    """The processes that used the most CPU between two `process_cpu_s()` readings, in % of one CPU."""
    used = []
    for pid, (name, seconds, cpu) in after.items():
        if pid in before and seconds > before[pid][1]:
            used.append({"pid": pid, "name": name, "cpu_percent": round(100 * (seconds - before[pid][1]) / elapsed),
                         "last_cpu": cpu})  # fmt: skip
    return sorted(used, key=lambda p: -p["cpu_percent"])[:TOP_PROCESSES]


def reading() -> tuple[dict, float]:
    """Every other process's CPU time now (empty when the processes cannot be listed), and the monotonic time."""
    try:
        return process_cpu_s(), time.monotonic()
    except (psutil.Error, OSError):
        return {}, time.monotonic()


def others_since(before: dict, started: float, worker_groups: set[int]) -> list[dict]:
    """The processes outside this run that used the most CPU since `reading()` gave `before` at monotonic time
    `started`: what else ran while a round was measured. The run's own are this process, its children (fork
    servers) and the process groups of its workers (`worker_groups`: each worker leads its own)."""

    def ours(pid: int) -> bool:
        try:
            return pid in children or os.getpgid(pid) in worker_groups
        except OSError:
            return True  # ended meanwhile

    try:
        children = {child.pid for child in psutil.Process().children(recursive=True)}
        after = {pid: seen for pid, seen in process_cpu_s().items() if not ours(pid)}
    except (psutil.Error, OSError):
        return []
    return [p for p in top_processes(before, after, time.monotonic() - started) if p["cpu_percent"] >= 1]


def named(processes: list[dict], unit: str = "% of a CPU") -> str:
    """Each process's pid, name and share, then what a known kernel thread among them is (KERNEL_THREADS)."""
    said = "".join(f" ({text})" for text in kernel_threads(processes))
    return ", ".join(f"{p['pid']} {p['name']} ({p['cpu_percent']}{unit})" for p in processes) + said


KERNEL_THREADS = {
    "kdamond": "the kernel's DAMON monitor paging memory out; as root, `echo off > "
               "/sys/kernel/mm/damon/admin/kdamonds/{index}/state` stops it (`on` restores it)",
    "kswapd": "the kernel reclaiming memory: free memory ran short",
    "kcompactd": "the kernel compacting memory",
}  # fmt: skip
"""Kernel threads that take CPU time from a case of its own, named by the thread's name without its number."""


def kernel_threads(processes: list[dict]) -> list[str]:
    """What each known kernel thread among `processes` is, in a user's words (KERNEL_THREADS)."""
    import re

    said = []
    for process in processes:
        found = re.fullmatch(r"([a-z]+)\.?(\d*)", process["name"])
        if found and found.group(1) in KERNEL_THREADS:
            said.append(f"{process['name']} is " + KERNEL_THREADS[found.group(1)].format(index=found.group(2) or "0"))
    return said


def describe(check: dict) -> str:
    who = named(check["top_processes"], "%") or "unknown"
    return f"{check['busy_share']:.0%} busy with other processes; most CPU: {who}"


def wait_for_quiet(
    cpus: list[int],
    max_wait_s: float,
    say: Callable[[str], None],
    check: Callable[[list[int]], dict] = sample,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Check `cpus`; while busy, say who is busy and wait (up to `max_wait_s`). The row's `quiet_check` entry."""
    first = check(cpus)
    if "off" in first:
        return {"check": "off", "reason": first["off"], "cpus": cpus}
    started, current, last_said = clock(), first, None
    while current["busy_share"] > BUSY_SHARE_MAX:
        waited = clock() - started
        if waited >= max_wait_s:
            break
        if last_said is None or waited - last_said >= SAY_EVERY_S:
            say(f"    waiting for quiet CPUs {cpus} ({waited:.0f} of {max_wait_s:g} s): {describe(current)}")
            last_said = waited
        sleep(min(PAUSE_S, max_wait_s - waited))
        current = check(cpus)
    quiet = current["busy_share"] <= BUSY_SHARE_MAX
    if not quiet:
        say(f"    CPUs {cpus} still busy after {clock() - started:.0f} s; measuring anyway: {describe(current)}")
    culprits = first if quiet else current
    return {
        "check": "on",
        "cpus": cpus,
        "quiet": quiet,
        "busy_share": current["busy_share"],
        "first_busy_share": first["busy_share"],
        "waited_s": round(clock() - started, 1),
        "max_wait_s": max_wait_s,
        "threshold": BUSY_SHARE_MAX,
        "top_processes": culprits["top_processes"] if culprits["busy_share"] > BUSY_SHARE_MAX else [],
    }


def warnings_of(entry: dict | None) -> list[str]:
    """The row's warning when the case started on CPUs that were still busy."""
    if not entry or entry.get("check") != "on" or entry["quiet"]:
        return []
    return [f"CPUs {entry['cpus']} were busy before the case (waited {entry['waited_s']:g} s): {describe(entry)}"]
