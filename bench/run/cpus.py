"""Which CPUs a case is pinned to, chosen in the parent from the physical places of the CPUs a run may use."""

from __future__ import annotations

from collections.abc import Mapping


def pick_cpus(threads: int, places: Mapping[int, tuple[int, int]]) -> list[int] | None:
    """The CPUs a case with `threads` threads is pinned to, or None when the machine has too few.

    `places` maps each CPU this process may use to its (package, core) (`available_cpus()`). One CPU per physical
    core, within one package when one has room; CPU 0, which takes interrupts and the system's housekeeping, and
    its core come last; SMT siblings of chosen CPUs only when there are more threads than cores.
    """
    if threads > len(places):
        return None
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in sorted(places, key=lambda c: (c == 0, c)):
        cores.setdefault(places[cpu], []).append(cpu)
    rank = package_rank(cores, threads)
    ordered = sorted(cores.values(), key=lambda core: (rank[places[core[0]][0]], 0 in core, min(core)))
    by_preference = [core[level] for level in range(max(map(len, ordered))) for core in ordered if level < len(core)]
    return sorted(by_preference[:threads])


def package_rank(cores: dict[tuple[int, int], list[int]], threads: int) -> dict[int, tuple]:
    """Packages in order of preference: one that holds every thread on its own cores without CPU 0's core,
    then one that holds them with it, then the others; the package of CPU 0 last among equals."""
    rank = {}
    for package in {p for p, _ in cores}:
        own = [core for (p, _), core in cores.items() if p == package]
        spare = sum(1 for core in own if 0 not in core)
        rank[package] = (spare < threads, len(own) < threads, any(0 in core for core in own), package)
    return rank


def core_sharing(cpus: list[int], places: Mapping[int, tuple[int, int]]) -> str | None:
    """A warning when some of `cpus` are SMT siblings of one physical core."""
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus:
        cores.setdefault(places.get(cpu, (0, cpu)), []).append(cpu)
    shared = [group for group in cores.values() if len(group) > 1]
    if not shared:
        return None
    siblings = ", ".join("+".join(map(str, group)) for group in shared)
    return (
        f"{len(cpus)} threads on {len(cores)} physical cores: CPUs {siblings} are SMT siblings sharing one core,"
        " so each thread is slower than on a core of its own"
    )
