"""One place that turns a case's thread count into every backend family's own settings and the child's environment.

Both sides use it: the parent sizes the worker's settings and variables, the worker records the variables it ran with.
"""

from __future__ import annotations

from collections.abc import Mapping

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
"""The pools the worker sizes to the case's threads."""
THREAD_ENV_PREFIXES = ("OMP_", "KMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "GOMP_", "ONEDNN_", "DNNL_")
THREAD_ENV_NAMES = ("TORCHINDUCTOR_COMPILE_THREADS",)
"""Every variable named here or with one of these prefixes can change how many threads run, where, or on which
kernels: the worker records each one it runs with (those it sets and those inherited), so the row says what the
thread pools were told."""
NOT_THREAD_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONUNBUFFERED")
"""What the worker's environment sets besides the thread pools."""


def thread_settings(family: str, threads: int, streams: int = 1) -> dict:
    """The settings a backend family applies in the worker for `threads` intra-op threads (OpenVINO: split into
    `streams` streams of its own, as benchmark_app's -nstreams does, when more than one).

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
    if family == "openvino" and streams > 1:
        return {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": streams,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "ENABLE_CPU_PINNING": True,
        }
    if family == "openvino":
        return {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": True,
        }
    raise ValueError(f"unknown thread family {family!r}; expected one of 'torch', 'onnxruntime', 'openvino'")


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
