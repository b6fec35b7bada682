"""The allocator a worker runs with (`measure.allocator`): `steady` fixes glibc's thresholds so that a call's buffers
come from the heap with no page fault, where glibc's moving thresholds map fresh pages for them call after call; the
row records what took effect, and the choice is part of the case's identity."""

import json
import subprocess
import sys

import pytest

from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from conftest import TINY_DEFAULTS, TINY_MODEL, bench_cli, write_suite

FAULTS_A_CALL = """
import json, resource, statistics, sys
from pathlib import Path
import torch
import bench
from bench.worker import allocator
state = allocator.apply(sys.argv[1])
from transformers import BertConfig, BertModel
torch.set_num_threads(1)
torch.manual_seed(0)
model = BertModel(BertConfig.from_pretrained(Path(bench.__file__).parent / "plan" / "configs" / "bert-tiny")).eval()
ids = torch.randint(1000, 2000, (8, 128))
faults = []
with torch.inference_mode():
    for _ in range(5):
        model(input_ids=ids)
    for _ in range(15):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(input_ids=ids)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"state": state, "faults": statistics.median(faults)}))
"""


GLIBC_AND_STEADY = """\
backends:
  - name: eager
    type: pytorch
  - name: eager-steady
    type: pytorch
    measure: {allocator: steady}
"""
STEADY_LINE = "    measure: {allocator: steady}\n"


def faults_a_call(name: str) -> dict:
    done = subprocess.run([sys.executable, "-c", FAULTS_A_CALL, name], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_steady_calls_take_no_page_fault_where_glibcs_own_thresholds_map_fresh_pages_each_call():
    """bert-tiny at batch 8 and 128 tokens: buffers of 0.5-2 MiB a call, around glibc's moving mmap threshold."""
    steady, glibc = faults_a_call("steady"), faults_a_call("glibc")
    assert steady["state"] == {"name": "steady", "mmap_threshold": 32 << 20, "trim_threshold": 1 << 30,
                               "took_effect": True}  # fmt: skip
    assert steady["faults"] == 0, steady
    assert glibc["state"] == {"name": "glibc"} and glibc["faults"] > 100, glibc


def test_the_allocator_is_recorded_in_the_row_and_a_steady_case_has_an_id_of_its_own(tmp_path):
    suite = write_suite(tmp_path, TINY_DEFAULTS + TINY_MODEL + GLIBC_AND_STEADY)
    plain = write_suite(tmp_path, TINY_DEFAULTS + TINY_MODEL + GLIBC_AND_STEADY.replace(STEADY_LINE, ""), "plain.yaml")
    ids, plain_ids = ({case.backend: case.case_id for case in expand(load_suite(path)[0])} for path in (suite, plain))
    assert ids["eager"] == plain_ids["eager"] and ids["eager-steady"] != plain_ids["eager-steady"]
    done = bench_cli("run", str(suite), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = {row["backend"]: row for row in map(json.loads, (tmp_path / "out" / "results.jsonl").open())}
    assert rows["eager"]["effective"]["allocator"] == {"name": "glibc"}
    assert rows["eager-steady"]["effective"]["allocator"]["took_effect"] is True
    assert rows["eager-steady"]["status"] == "ok"


@pytest.mark.parametrize("value", ["jemalloc", 1])
def test_an_unknown_allocator_is_refused_in_one_line(tmp_path, value):
    defaults = TINY_DEFAULTS.replace("timeout: 120}", f"timeout: 120, allocator: {value}}}")
    suite = write_suite(tmp_path, defaults + TINY_MODEL + GLIBC_AND_STEADY)
    done = bench_cli("validate", str(suite))
    assert done.returncode == 2 and not (tmp_path / "results").exists()
    assert done.stderr.strip().count("\n") == 0
    assert "defaults.measure.allocator: expected 'glibc' or 'steady'" in done.stderr
