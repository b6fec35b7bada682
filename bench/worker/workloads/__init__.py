"""What a worker times, by kind of case: one module per workload, each with `run(prepared) -> dict` (the worker's
answer, reference or measured row) for a case its worker has loaded and prepared (bench.worker.case.PreparedCase).

A new workload is one module here and one line in WORKLOADS (docs/architecture.md has the checklist).
"""

from __future__ import annotations

import importlib

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


def workload(case: Case):
    """The module that runs `case`'s timed call."""
    return importlib.import_module(WORKLOADS[workload_name(case)])
