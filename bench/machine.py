"""What a run was measured on: CPU, ISA flags, cores, memory, OS, software versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

from bench.backends import recorded_packages
from bench.cpu import cpu_section
from bench.paths import PROJECT_ROOT

PACKAGES = (*recorded_packages(), "numpy", "pydantic")
"""The distributions whose versions a manifest and every row record: what the backends declare, and bench's own."""


def cpu_info(cpuinfo_text: str | None = None) -> dict:
    if cpuinfo_text is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo_text = handle.read()
        except OSError:
            cpuinfo_text = ""
    fields: dict[str, str] = {}
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return {
        "model": fields.get("model name", platform.processor() or "unknown"),
        **cpu_section(cpuinfo_text),
        "logical_cpus": os.cpu_count(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)),
    }


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def installed_versions(packages, keep_missing: bool = False) -> dict:
    """Installed versions of `packages` in this interpreter; missing ones are None if kept, else left out."""
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if keep_missing:
                found[package] = None
    return found


def package_versions() -> dict:
    return installed_versions(PACKAGES)


def git_state() -> dict:
    def git(*args):  # --no-optional-locks: reading the state must not write the checkout's index
        command = ["git", "--no-optional-locks", *args]
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else None

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict:
    from bench.topology import frequency_info, topology_info

    allowed = os.sched_getaffinity(0)
    return {
        "cpu": cpu_info(),
        "topology": topology_info(allowed),
        "frequency": frequency_info(allowed),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def software_info() -> dict:
    return {"python": sys.version.split()[0], "executable": sys.executable, "packages": package_versions()}
