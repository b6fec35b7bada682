"""One place that turns a case's thread count into every backend's own settings and the child's environment."""

from __future__ import annotations

import os

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


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


def pick_cpus(threads: int, available: set[int]) -> list[int] | None:
    """The CPUs a case with `threads` threads is pinned to, or None when the machine has too few."""
    cpus = sorted(available)
    return cpus[:threads] if threads <= len(cpus) else None


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


def available_cpus() -> set[int]:
    return set(os.sched_getaffinity(0))
