"""The CPUs' physical layout and frequency settings, read from sysfs where readable (None where not)."""

from __future__ import annotations

import os

SYS_CPU = "/sys/devices/system/cpu"


def read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]"""
    cpus: list[int] = []
    for part in filter(None, text.replace("\n", ",").split(",")):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def cpu_places(cpus, sys_root: str = SYS_CPU) -> dict[int, tuple[int, int]]:
    """Each CPU's physical place: (package, core), the core named by its lowest SMT sibling.

    A CPU whose topology is not readable is taken as a core of its own in package 0.
    """
    places = {}
    for cpu in sorted(cpus):
        base = os.path.join(sys_root, f"cpu{cpu}", "topology")
        siblings = read_text(os.path.join(base, "thread_siblings_list"))
        package = read_text(os.path.join(base, "physical_package_id"))
        try:
            core = min(parse_cpu_list(siblings)) if siblings else cpu
            places[cpu] = (int(package) if package else 0, core)
        except ValueError:
            places[cpu] = (0, cpu)
    return places


def cores_of(places: dict[int, tuple[int, int]]) -> list[list[int]]:
    """The CPUs grouped by physical core, in order."""
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu, place in sorted(places.items()):
        cores.setdefault(place, []).append(cpu)
    return sorted(cores.values())


def topology_info(cpus, sys_root: str = SYS_CPU) -> dict:
    """The manifest's `machine.topology`: cores of the CPUs this process may use, packages, SMT."""
    places = cpu_places(cpus, sys_root)
    control = read_text(os.path.join(sys_root, "smt", "control"))
    active = read_text(os.path.join(sys_root, "smt", "active"))
    return {
        "cores": cores_of(places),
        "packages": sorted({package for package, _ in places.values()}),
        "smt_control": control,
        "smt_active": None if active is None else active == "1",
        "threads_per_core": max((len(c) for c in cores_of(places)), default=None),
    }


def frequency_info(cpus, sys_root: str = SYS_CPU) -> dict:
    """The manifest's `machine.frequency`: scaling driver and governor per CPU, boost / turbo switches."""
    governors: dict[str, list[int]] = {}
    drivers = set()
    for cpu in sorted(cpus):
        base = os.path.join(sys_root, f"cpu{cpu}", "cpufreq")
        governor = read_text(os.path.join(base, "scaling_governor"))
        if governor is not None:
            governors.setdefault(governor, []).append(cpu)
        driver = read_text(os.path.join(base, "scaling_driver"))
        if driver is not None:
            drivers.add(driver)
    boost = read_text(os.path.join(sys_root, "cpufreq", "boost"))
    no_turbo = read_text(os.path.join(sys_root, "intel_pstate", "no_turbo"))
    return {
        "driver": ", ".join(sorted(drivers)) or None,
        "governors": governors or None,
        "boost": None if boost is None else boost == "1",
        "intel_pstate_no_turbo": None if no_turbo is None else no_turbo == "1",
    }


def available_cpus(within=None) -> dict[int, tuple[int, int]]:
    """The CPUs this process may use (and, given `within`, that a run was restricted to), each with its physical
    place (package, core)."""
    allowed = os.sched_getaffinity(0)
    return cpu_places(allowed & set(within) if within else allowed)
