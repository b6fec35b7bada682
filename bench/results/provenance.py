"""Where and from what a row was measured, and what differs between a run folder and the machine resuming it."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from bench.results.identity import kind_key_if_known
from bench.results.identity import machine_identity as identity_of
from bench.machine import git_state, machine_info, software_info


def load_now() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class Provenance:
    """What every row of this run records: host, machine identity, commit, and, per case, its start time and load."""

    def __init__(self, manifest: dict):
        machine = manifest.get("machine") or {}
        git = manifest.get("git") or {}
        self.fixed = {
            "host": machine.get("hostname"),
            "machine": kind_key_if_known(machine),
            "commit": git.get("commit"),
            "dirty": git.get("dirty"),
        }

    def at_start(self) -> dict:
        return {**self.fixed, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load": load_now()}


def differences(manifest: dict) -> list[str]:
    """What differs between the run folder's machine, software and commit and this process's, one phrase each."""
    found = []
    then_machine, now_machine = manifest.get("machine") or {}, machine_info()
    if identity_of(then_machine) != identity_of(now_machine):
        found.append(f"machine: {describe_machine(then_machine)} then, {describe_machine(now_machine)} now")
    then_packages = (manifest.get("software") or {}).get("packages") or {}
    now_software = software_info()
    for package, version in sorted(now_software["packages"].items()):
        if then_packages.get(package) != version:
            found.append(f"{package}: {then_packages.get(package) or 'absent'} then, {version} now")
    then_python = (manifest.get("software") or {}).get("python")
    if then_python and then_python != now_software["python"]:
        found.append(f"python: {then_python} then, {now_software['python']} now")
    then_commit, now_commit = (manifest.get("git") or {}).get("commit"), git_state()["commit"]
    if then_commit != now_commit:
        found.append(f"commit: {short(then_commit)} then, {short(now_commit)} now")
    return found


def describe_machine(machine: dict) -> str:
    cpu = machine.get("cpu") or {}
    return f"{cpu.get('model')} ({cpu.get('logical_cpus')} CPUs, {machine.get('memory_gib')} GiB)"


def short(commit: str | None) -> str:
    return commit[:10] if commit else "none"
