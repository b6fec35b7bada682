"""Locks that keep runs apart: one run per run folder, and one run per CPU on this machine.

Each lock is an flock on a small file that names its holder (pid and run folder). The kernel releases it when the
holder exits, however it exits, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from bench.errors import BenchError
from bench.paths import cache_root

SYSTEM_LOCK_DIR = Path("/run/lock")
MAX_CPU = 1 << 16


class Held:
    """Acquired locks, released together (or by the kernel when the process ends)."""

    def __init__(self, fds: list[int] | None = None):
        self.fds = list(fds or [])

    def add(self, other: Held) -> None:
        self.fds += other.fds
        other.fds = []

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def try_lock(path: Path, holder: str, shared: bool = False) -> int | None:
    """An exclusive, non-blocking flock on `path` (created if needed); None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        writable = True
    except PermissionError:  # a lock file another user made: locking needs no write access
        fd, writable = os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    if writable:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {holder}\n".encode())
    if writable and shared:
        try:
            os.fchmod(fd, 0o666)  # so that other users' runs can take it too
        except OSError:
            pass
    return fd


def holder_of(path: Path) -> tuple[str, str]:
    """("pid N", what it runs) as the holder wrote it, or a vaguer text while it has not yet."""
    try:
        pid, _, what = path.read_text().strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        pid, what = "", ""
    return (f"pid {pid}" if pid.isdigit() else "another process"), what


def lock_folder(folder: Path) -> Held:
    """The run folder's own lock, held for a whole run or resume."""
    path = folder / "run.lock"
    try:
        fd = try_lock(path, str(folder))
    except OSError as exc:
        raise BenchError(f"{path}: expected a run folder this user can write, got {exc.strerror or exc}")
    if fd is None:
        raise BenchError(f"{folder} is in use by {holder_of(path)[0]}")
    return Held([fd])


def machine_lock_dir() -> Path:
    """$BENCH_LOCK_DIR, else /run/lock/bench (every user's runs), else $XDG_RUNTIME_DIR/bench, else the cache."""
    if os.environ.get("BENCH_LOCK_DIR"):
        return Path(os.environ["BENCH_LOCK_DIR"])
    for base in (SYSTEM_LOCK_DIR, Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent")):
        if base.is_dir() and os.access(base, os.W_OK | os.X_OK):
            return base / "bench"
    return cache_root() / "locks"


def lock_cpus(cpus: list[int], holder: str) -> Held:
    """One lock per CPU the run may use; refused, with nothing kept, if another run holds any of them."""
    folder = machine_lock_dir()
    try:
        make_shared_dir(folder)
    except OSError as exc:
        raise BenchError(f"{folder}: expected a folder for CPU locks, got {exc.strerror or exc}")
    held = Held()
    for cpu in sorted(cpus):
        path = folder / f"cpu{cpu}.lock"
        try:
            fd = try_lock(path, holder, shared=True)
        except OSError as exc:
            held.release()
            raise BenchError(f"{path}: expected a lock file this user can open, got {exc.strerror or exc}")
        if fd is None:
            held.release()
            pid, what = holder_of(path)
            raise BenchError(
                f"CPU {cpu} is in use by {pid} (bench run {what or '?'}); pick other CPUs with --cpus, or wait"
            )
        held.fds.append(fd)
    return held


def make_shared_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    if folder.parent == SYSTEM_LOCK_DIR:
        os.chmod(folder, 0o1777)  # like /run/lock itself: anyone may add a lock file, only its owner remove it


def parse_cpus(text: str, allowed: set[int]) -> list[int]:
    """`2,3`, `0-1` or `0-1,4` as a sorted list of CPUs, each one this process may use."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise BenchError(f"--cpus: expected CPU numbers such as 2,3 or 0-1, got {text[:40]!r}")
        low, high = int(first), int(last) if dash else int(first)
        if high > MAX_CPU:
            raise BenchError(f"--cpus: expected CPUs this process may use ({cpu_list_text(allowed)}), got {high}")
        if high < low:
            raise BenchError(f"--cpus: expected a range from low to high such as 0-1, got {part.strip()!r}")
        cpus.update(range(low, high + 1))
    outside = sorted(cpus - allowed)
    if outside:
        raise BenchError(
            f"--cpus: expected CPUs this process may use ({cpu_list_text(allowed)}), got {cpu_list_text(outside)}"
        )
    return sorted(cpus)


def cpu_list_text(cpus) -> str:
    """[0, 1, 2, 5] as 0-2,5."""
    ordered, ranges = sorted(cpus), []
    for cpu in ordered:
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in ranges)
