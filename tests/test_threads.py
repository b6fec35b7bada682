import json
import os
import subprocess
import sys

import pytest

from bench.launch import pin_and_tie, worker_environment
from bench.paths import PROJECT_ROOT
from bench.threads import THREAD_ENV_VARS, child_environment, pick_cpus, thread_settings


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_every_family_gets_the_case_threads_as_intra_op_and_one_inter_op(threads):
    assert thread_settings("torch", threads) == {"intra_op_threads": threads, "inter_op_threads": 1}
    ort = thread_settings("onnxruntime", threads)
    assert (ort["intra_op_num_threads"], ort["inter_op_num_threads"], ort["execution_mode"]) == (
        threads, 1, "ORT_SEQUENTIAL",
    )  # fmt: skip
    ov = thread_settings("openvino", threads)
    assert (ov["INFERENCE_NUM_THREADS"], ov["NUM_STREAMS"], ov["PERFORMANCE_HINT"]) == (threads, 1, "LATENCY")


def test_bad_thread_requests():
    with pytest.raises(ValueError, match="at least 1"):
        thread_settings("torch", 0)
    with pytest.raises(ValueError, match="unknown thread family 'tensorflow'"):
        thread_settings("tensorflow", 1)


def test_cpus_are_the_first_n_allowed_or_none():
    assert pick_cpus(1, {3, 1, 2}) == [1]
    assert pick_cpus(2, {3, 1, 2}) == [1, 2]
    assert pick_cpus(4, {0, 1}) is None


def test_child_environment_sizes_every_pool_and_leaves_the_parent_alone():
    parent = dict(os.environ)
    env = child_environment({"OMP_NUM_THREADS": "64", "KMP_AFFINITY": "x", "PATH": "/bin"}, 2)
    assert {env[v] for v in THREAD_ENV_VARS} == {"2"}
    assert env["HF_HUB_OFFLINE"] == "1" and "KMP_AFFINITY" not in env and env["PATH"] == "/bin"
    assert dict(os.environ) == parent


def test_worker_environment_puts_this_checkout_first_on_the_path():
    env = worker_environment({"PYTHONPATH": "/elsewhere"}, 1)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(PROJECT_ROOT), "/elsewhere"]


def test_a_real_child_is_pinned_and_sized_while_the_parent_is_not():
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed[:1]
    probe = "import json, os; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS']]))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=worker_environment(dict(os.environ), 1),
        preexec_fn=pin_and_tie(cpus),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [cpus, "1"]
    assert sorted(os.sched_getaffinity(0)) == allowed


def test_waiting_blocks_until_exit_or_timeout():
    import time

    from bench.launch import wait_blocking

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_blocking(quick, timeout=60) is True
    assert quick.wait() == 0
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    assert wait_blocking(slow, timeout=0.5) is False
    assert time.monotonic() - started < 30
    slow.kill()
    slow.wait()
