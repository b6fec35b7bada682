"""The worker's memory, apart from what preparation needed.

- `peak_rss_mb`: ru_maxrss, the process's high-water mark since it started: loading, export or compilation included.
- `rss_after_prepare_mb`: the resident set right after preparation (from /proc/self/statm): the prepared model and
  whatever preparation left allocated.
- `peak_rss_loop_mb`: the high-water mark of the first call, warm-up and the timed loop alone. Linux (≥ 4.0) resets
  the mark (VmHWM in /proc/self/status) to the current RSS when "5" is written to /proc/self/clear_refs; it is read
  back after the loop. Where the reset is not possible, the figure is null and `peak_rss_loop_unavailable` says why.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

PROC = Path("/proc/self")
MB = 1024 * 1024


def rss_mb(proc: Path = PROC) -> float | None:
    """The current resident set (statm's second field, in pages)."""
    try:
        pages = int((proc / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def status_mb(field: str, proc: Path = PROC) -> float | None:
    """A `kB` figure of /proc/self/status (VmHWM, VmRSS) in MB."""
    try:
        for line in (proc / "status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return None
    return None


def reset_peak(proc: Path = PROC) -> str | None:
    """Reset VmHWM to the current RSS; None when done, else why it could not be."""
    try:
        (proc / "clear_refs").write_text("5")
    except OSError as exc:
        return f"the peak RSS cannot be reset here ({proc / 'clear_refs'}: {exc.strerror or exc})"
    high, current = status_mb("VmHWM", proc), status_mb("VmRSS", proc)
    if high is None or current is None:
        return f"{proc / 'status'} has no VmHWM or VmRSS"
    if high > current * 1.05 + 1:
        return f"writing 5 to {proc / 'clear_refs'} did not reset VmHWM (kernel older than 4.0?)"
    return None


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LoopMemory:
    """Call `prepared()` after preparation and `looped()` after the timed loop; `figures()` is the row's `memory`."""

    def __init__(self, proc: Path = PROC):
        self.proc = proc
        self.before_reset = 0.0
        self.after_prepare: float | None = None
        self.unavailable: str | None = None
        self.loop_peak: float | None = None

    def prepared(self) -> None:
        self.before_reset = max_rss_mb()  # the reset lowers ru_maxrss too: keep the whole process's peak first
        self.after_prepare = rss_mb(self.proc)
        self.unavailable = reset_peak(self.proc)

    def looped(self) -> None:
        if self.unavailable is None:
            self.loop_peak = status_mb("VmHWM", self.proc)

    def figures(self) -> dict:
        figures = {
            "peak_rss_mb": max(self.before_reset, max_rss_mb()),
            "rss_after_prepare_mb": self.after_prepare,
            "peak_rss_loop_mb": self.loop_peak,
        }
        if self.unavailable:
            figures["peak_rss_loop_unavailable"] = self.unavailable
        return figures
