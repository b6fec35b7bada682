"""What a worker times, by kind of case: one module per workload, each with `run(prepared) -> dict` (the worker's
answer, reference or measured row) for a case its worker has loaded and prepared (bench.worker.case.PreparedCase).

A new workload is one module here and one line in WORKLOADS (docs/architecture.md has the checklist).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from bench.job import Case

WORKLOADS = {
    "forward": "bench.worker.workloads.forward",
    "generate": "bench.worker.workloads.generate",
    "pipeline": "bench.worker.workloads.pipeline",
}


def workload_name(case: Case) -> str:
    if case.generating:
        return "generate"
    if case.pipelined:
        return "pipeline"
    return "forward"


@dataclass
class ResidentCalls:
    """What a resident worker (bench.worker.resident) needs of a workload, after the case's warm-up: the timed call,
    the warm-up calls' durations (ms), the measured result from the samples and interference of every block, one
    more call's accuracy, when the last call's tokens came (ns before its end; None: no tokens), and the calls of
    the backend's own streams."""

    call: Callable
    warm_ms: list[float]
    result: Callable[[list[int], dict], dict]
    accuracy: Callable[[], dict]
    token_times: Optional[Callable[[], list[int]]] = None
    batch_call: Optional[Callable[[list[int]], object]] = None
    """One call on the given queries together (a pipeline's texts, padded to the longest of them), for dynamic
    batching; None: every batched call runs the case's prepared batch."""
    stream_calls: Optional[list[Callable]] = None
    """The backend's own streams' calls, one per stream (OpenVINO's own_streams): served at once, a thread each."""


def resident_calls(prepared) -> ResidentCalls:
    """The workload's calls for a resident worker; a workload without `resident` runs single-stream only."""
    return workload(prepared.job.case).resident(prepared)


def workload(case: Case):
    """The module that runs `case`'s timed call."""
    return importlib.import_module(WORKLOADS[workload_name(case)])
