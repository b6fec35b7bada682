"""One place that turns a case's thread count into every backend's own settings and the child's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from bench.topology import cpu_places

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
"""The pools the worker sizes to the case's threads."""
THREAD_ENV_PREFIXES = ("OMP_", "KMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "GOMP_", "ONEDNN_", "DNNL_")
THREAD_ENV_NAMES = ("TORCHINDUCTOR_COMPILE_THREADS",)
"""Every variable named here or with one of these prefixes can change how many threads run, where, or on which
kernels: the worker records each one it runs with (those it sets and those inherited), so the row says what the
thread pools were told."""
NOT_THREAD_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONUNBUFFERED")
"""What the worker's environment sets besides the thread pools."""


def thread_settings(family: str, threads: int) -> dict:
    """The settings a backend family applies in the worker for `threads` intra-op threads.

    Inter-op parallelism is always 1: a single inference request has no independent operators worth a second pool,
    and a second pool would compete with the intra-op threads for the same pinned CPUs.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if family == "torch":
        return {"intra_op_threads": threads, "inter_op_threads": 1}
    if family == "onnxruntime":
        return {
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "intra_op_spinning": True,
        }
    if family == "openvino":
        return {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": True,
        }
    raise ValueError(f"unknown thread family {family!r}; expected one of 'torch', 'onnxruntime', 'openvino'")


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


def child_environment(base: dict[str, str], threads: int) -> dict[str, str]:
    """The worker's environment: the parent's, with every thread pool sized to the case and the hub offline."""
    env = dict(base)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("KMP_AFFINITY", None)
    return env


def thread_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The thread-related variables of `environ`: each sized pool (None when unset) and every other one set."""
    recorded: dict[str, str | None] = {var: environ.get(var) for var in THREAD_ENV_VARS}
    for name in sorted(environ):
        if name.startswith(THREAD_ENV_PREFIXES) or name in THREAD_ENV_NAMES:
            recorded[name] = environ[name]
    return recorded


def available_cpus(within=None) -> dict[int, tuple[int, int]]:
    """The CPUs this process may use (and, given `within`, that a run was restricted to), each with its physical
    place (package, core)."""
    allowed = os.sched_getaffinity(0)
    return cpu_places(allowed & set(within) if within else allowed)
