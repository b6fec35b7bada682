"""The worker's workloads: each kind of case has its module, and each module answers for its cases."""

import importlib
from dataclasses import replace

from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from bench.worker.workloads import WORKLOADS, workload, workload_name
from conftest import TINY_SUITE, write_suite


def test_every_kind_of_case_runs_through_its_registered_module(tmp_path):
    case = expand(load_suite(write_suite(tmp_path, TINY_SUITE))[0])[0]
    kinds = {
        "forward": case,
        "generate": replace(case, task="text-generation", new_tokens=4),
        "pipeline": replace(case, texts="short"),
    }
    assert set(kinds) == set(WORKLOADS)
    for name, kind in kinds.items():
        assert workload_name(kind) == name
        module = workload(kind)
        assert module is importlib.import_module(WORKLOADS[name]) and callable(module.run)
