"""The interference meter: what else ran on a case's CPUs while its timed loop ran, read from the kernel.

Runs inside the worker under every environment, so it uses the standard library only. `snapshot()` reads the
counters before and after the timed loop; `assess()` turns two snapshots into the row's `interference` entry and
its verdict. Where a counter cannot be read (no procfs), the entry says the meter was off and why.

What the verdict counts, over the loop's window of W seconds on N pinned CPUs (capacity W x N):
- foreign CPU time: the busy time of the pinned CPUs in /proc/stat (user, nice, system, irq, softirq; guest time
  is already inside user and nice) minus the worker's own CPU time (getrusage, every thread, live or finished).
  Worker threads that spin idle (OpenMP or ONNX Runtime waiting for work) are busy in /proc/stat and are the
  worker's own time, so they cancel out: spinning neither hides nor fakes foreign time. A foreign process that
  takes a CPU from a spinning thread shows up both as foreign time and as that thread's run-queue wait.
- run-queue wait: time the worker's threads were ready to run but waited for a CPU (the second field of
  /proc/self/task/*/schedstat), summed over threads, as a share of W: any one thread held back delays the call.
- steal: time the hypervisor gave the pinned CPUs to another virtual machine.
"""

from __future__ import annotations

import os
import resource
import time

PROC = "/proc"

FOREIGN_SHARE_MAX = 0.05
"""Other processes' CPU time above 5% of the pinned CPUs' capacity during the loop contaminates the case."""
WAIT_SHARE_MAX = 0.05
"""The worker's threads waiting for a CPU more than 5% of the measured time contaminates the case."""
STEAL_SHARE_MAX = 0.02
"""Steal time above 2% of the pinned CPUs' capacity contaminates the case."""
OWN_FULL_SHARE = 1 - FOREIGN_SHARE_MAX
"""When the worker's own threads kept the pinned CPUs this busy, their run-queue wait was behind each other
(more runnable threads than CPUs): a cost of the backend itself, reported as a note, not as interference."""
RESOLUTION_TICKS = 2
"""/proc/stat counts in clock ticks (usually 10 ms): foreign and steal time are judged beyond 2 ticks per CPU (one
tick of steal in a 0.2 s loop on one CPU would otherwise read as 5%)."""
STEAL_REASON = "the hypervisor took"
BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq, after the "cpuN" label
STEAL_FIELD = 7


class MeterOff(Exception):
    """A counter the meter needs cannot be read here."""


def snapshot(cpus: list[int], proc_root: str = PROC) -> dict:
    """The counters now, as plain JSON-ready data, or {"off": reason}."""
    try:
        return {
            "clock_s": time.monotonic(),
            "ticks_per_s": os.sysconf("SC_CLK_TCK"),
            "cpus": read_cpu_ticks(cpus, proc_root),
            "tasks": read_task_waits(proc_root),
            "loadavg": read_loadavg(proc_root),
            **own_usage(),
        }
    except MeterOff as exc:
        return {"off": str(exc)}


def read_cpu_ticks(cpus: list[int], proc_root: str = PROC) -> dict[str, dict]:
    """Busy and steal ticks of each CPU in `cpus`, from the per-CPU lines of /proc/stat."""
    path = os.path.join(proc_root, "stat")
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise MeterOff(f"cannot read {path}: {exc.strerror or exc}") from None
    per_cpu = {}
    for line in lines:
        label, _, rest = line.partition(" ")
        fields = rest.split()
        if label.startswith("cpu") and label[3:].isdigit() and len(fields) > STEAL_FIELD:
            try:
                values = [int(v) for v in fields]
            except ValueError:
                raise MeterOff(f"{path}: expected numbers on the {label} line, got {rest.strip()!r}") from None
            per_cpu[label[3:]] = {"busy": sum(values[i] for i in BUSY_FIELDS), "steal": values[STEAL_FIELD]}
    missing = [cpu for cpu in cpus if str(cpu) not in per_cpu]
    if missing:
        raise MeterOff(f"{path} has no per-CPU line with steal time for CPU(s) {missing}")
    return {str(cpu): per_cpu[str(cpu)] for cpu in cpus}


def read_task_waits(proc_root: str = PROC) -> dict[str, int]:
    """Run-queue wait in ns of each of this process's threads, from /proc/self/task/*/schedstat."""
    task_dir = os.path.join(proc_root, "self", "task")
    try:
        tids = os.listdir(task_dir)
    except OSError as exc:
        raise MeterOff(f"cannot list {task_dir}: {exc.strerror or exc}") from None
    waits = {}
    for tid in tids:
        try:
            with open(os.path.join(task_dir, tid, "schedstat")) as handle:
                waits[tid] = int(handle.read().split()[1])
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
        except (OSError, IndexError, ValueError) as exc:
            raise MeterOff(f"cannot read the run-queue wait in {task_dir}/{tid}/schedstat: {exc}") from None
    if not waits:
        raise MeterOff(f"no thread of this process has a schedstat file under {task_dir}")
    return waits


def read_loadavg(proc_root: str = PROC) -> list[float]:
    path = os.path.join(proc_root, "loadavg")
    try:
        with open(path) as handle:
            return [float(v) for v in handle.read().split()[:3]]
    except (OSError, ValueError) as exc:
        raise MeterOff(f"cannot read {path}: {exc}") from None


def own_usage() -> dict:
    """CPU time and involuntary context switches of every thread of this process, finished ones included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"own_cpu_s": usage.ru_utime + usage.ru_stime, "involuntary_switches": usage.ru_nivcsw}


def assess(before: dict, after: dict, steal_contaminates: bool = True) -> dict:
    """The row's `interference` entry from the snapshots taken just before and just after the timed loop.

    `steal_contaminates=False` (a window under load, bench.run.offline): steal time is noted with its share, not a
    reason. With every vCPU busy the hypervisor's steal is part of what the machine serves under that load."""
    for snap in (before, after):
        if "off" in snap:
            return {"meter": "off", "reason": snap["off"], "contaminated": None}
    figures = deltas(before, after)
    shares = shares_of(figures)
    reasons, notes = verdict(figures, shares)
    if not steal_contaminates:
        notes += [r for r in reasons if r.startswith(STEAL_REASON)]
        reasons = [r for r in reasons if not r.startswith(STEAL_REASON)]
    return {
        "meter": "on",
        "contaminated": bool(reasons),
        "reasons": reasons,
        "notes": notes,
        "cpus": [int(cpu) for cpu in after["cpus"]],
        "figures": figures,
        "shares": shares,
        "thresholds": {"foreign": FOREIGN_SHARE_MAX, "run_queue_wait": WAIT_SHARE_MAX, "steal": STEAL_SHARE_MAX},
    }


def deltas(before: dict, after: dict) -> dict:
    """What happened between the snapshots, in seconds (and counts)."""
    tick_s = 1 / after["ticks_per_s"]
    cpus = after["cpus"]
    busy_s = sum(cpus[c]["busy"] - before["cpus"][c]["busy"] for c in cpus) * tick_s
    steal_s = sum(cpus[c]["steal"] - before["cpus"][c]["steal"] for c in cpus) * tick_s
    own_s = after["own_cpu_s"] - before["own_cpu_s"]
    wait_ns = sum(w - before["tasks"].get(tid, 0) for tid, w in after["tasks"].items())  # new threads from 0
    return {
        "window_s": round(after["clock_s"] - before["clock_s"], 6),
        "pinned_busy_s": round(busy_s, 6),
        "own_cpu_s": round(own_s, 6),
        "foreign_cpu_s": round(max(0.0, busy_s - own_s), 6),
        "steal_s": round(steal_s, 6),
        "run_queue_wait_s": round(wait_ns / 1e9, 6),
        "involuntary_switches": after["involuntary_switches"] - before["involuntary_switches"],
        "threads": len(after["tasks"]),
        "loadavg": after["loadavg"],
        "resolution_s": round(RESOLUTION_TICKS * len(cpus) * tick_s, 6),
        "cpu_count": len(cpus),
    }


def shares_of(figures: dict) -> dict:
    """Foreign, steal and own time as shares of the pinned CPUs' capacity; run-queue wait as a share of the window."""
    window = figures["window_s"]
    capacity = window * figures["cpu_count"]
    if capacity <= 0:
        return {"foreign": 0.0, "steal": 0.0, "own": 0.0, "run_queue_wait": 0.0}
    return {
        "foreign": round(figures["foreign_cpu_s"] / capacity, 4),
        "steal": round(figures["steal_s"] / capacity, 4),
        "own": round(figures["own_cpu_s"] / capacity, 4),
        "run_queue_wait": round(figures["run_queue_wait_s"] / window, 4),
    }


def verdict(figures: dict, shares: dict) -> tuple[list[str], list[str]]:
    """The reasons the case is contaminated (empty: it is not), and notes that do not contaminate it."""
    reasons, notes = [], []
    capacity = figures["window_s"] * figures["cpu_count"]
    beyond_resolution = figures["foreign_cpu_s"] - figures["resolution_s"]
    if capacity > 0 and beyond_resolution > FOREIGN_SHARE_MAX * capacity:
        reasons.append(
            f"other processes used {shares['foreign']:.0%} of the pinned CPUs (limit {FOREIGN_SHARE_MAX:.0%})"
        )
    if shares["run_queue_wait"] > WAIT_SHARE_MAX:
        text = (
            f"the worker's threads waited for a CPU {shares['run_queue_wait']:.0%} of the measured time"
            f" (limit {WAIT_SHARE_MAX:.0%})"
        )
        if shares["own"] >= OWN_FULL_SHARE:
            notes.append(f"{text}, behind its own threads: they kept the pinned CPUs {shares['own']:.0%} busy")
        else:
            reasons.append(text)
    steal_beyond_resolution = figures["steal_s"] - figures["resolution_s"]
    if capacity > 0 and steal_beyond_resolution > STEAL_SHARE_MAX * capacity:
        reasons.append(
            f"{STEAL_REASON} {shares['steal']:.0%} of the pinned CPUs as steal time (limit {STEAL_SHARE_MAX:.0%})"
        )
    return reasons, notes


def warnings_of(entry: dict | None) -> list[str]:
    """The row's warning for a contaminated case."""
    if not entry or not entry.get("contaminated"):
        return []
    reasons = "; ".join(entry["reasons"])
    return [f"contaminated: {reasons}: the latencies are likely slower than on a quiet machine"]
