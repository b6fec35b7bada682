import json
import os
import subprocess
import sys

import pytest

from bench.run.launch import pin_and_tie, worker_environment
from bench.paths import PROJECT_ROOT
from bench.backends.threads import NOT_THREAD_VARS, THREAD_ENV_VARS, child_environment, thread_settings, thread_variables
from bench.run.cpus import core_sharing, pick_cpus
from bench.topology import cpu_places, frequency_info, parse_cpu_list, topology_info


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


def separate_cores(*cpus):
    """A topology without SMT, in one package: each CPU a core of its own."""
    return {cpu: (0, cpu) for cpu in cpus}


def test_cpus_are_the_lowest_allowed_or_none_when_too_few():
    assert pick_cpus(1, separate_cores(3, 1, 2)) == [1]
    assert pick_cpus(2, separate_cores(3, 1, 2)) == [1, 2]
    assert pick_cpus(4, separate_cores(0, 1)) is None


def test_cpu_0_is_left_out_while_the_machine_has_spare_cpus():
    two = separate_cores(0, 1)
    assert pick_cpus(1, two) == [1] and pick_cpus(2, two) == [0, 1]
    assert pick_cpus(3, separate_cores(0, 1, 2, 3)) == [1, 2, 3]


SMT_2X2 = {0: (0, 0), 2: (0, 0), 1: (0, 1), 3: (0, 1)}  # 2 cores, siblings 0+2 and 1+3


def test_one_cpu_per_physical_core_before_any_smt_sibling():
    assert pick_cpus(1, SMT_2X2) == [1]
    assert pick_cpus(2, SMT_2X2) == [1, 2]  # both cores; CPU 0's sibling rather than CPU 0 itself
    assert core_sharing([1, 2], SMT_2X2) is None
    assert pick_cpus(3, SMT_2X2) == [1, 2, 3]
    assert pick_cpus(4, SMT_2X2) == [0, 1, 2, 3]
    assert pick_cpus(5, SMT_2X2) is None


def test_threads_that_must_share_a_core_are_warned_about():
    warning = core_sharing(pick_cpus(3, SMT_2X2), SMT_2X2)
    assert "3 threads on 2 physical cores" in warning and "1+3" in warning and "0+2" not in warning
    assert "0+2, 1+3" in core_sharing([0, 1, 2, 3], SMT_2X2)


def test_a_case_stays_in_one_package_when_one_has_room():
    two_packages = {0: (0, 0), 1: (0, 1), 2: (1, 2), 3: (1, 3)}
    assert pick_cpus(1, two_packages) == [2]
    assert pick_cpus(2, two_packages) == [2, 3]
    assert pick_cpus(3, two_packages) == [1, 2, 3]
    lopsided = {**separate_cores(0, 1, 2, 3, 4), 5: (1, 5)}
    assert pick_cpus(2, lopsided) == [1, 2]
    assert pick_cpus(5, lopsided) == [0, 1, 2, 3, 4]


def write_sysfs(root, siblings: dict[int, str], package: dict[int, str], extra: dict[str, str] = None):
    for cpu, text in siblings.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(text + "\n")
        (topology / "physical_package_id").write_text(package[cpu] + "\n")
    for relative, text in (extra or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text + "\n")


def test_the_topology_is_read_from_sysfs_and_picked_from(tmp_path):
    write_sysfs(
        tmp_path,
        {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"},
        {0: "0", 1: "0", 2: "0", 3: "0"},
        {
            "smt/control": "on",
            "smt/active": "1",
            "cpu0/cpufreq/scaling_governor": "powersave",
            "cpu1/cpufreq/scaling_governor": "performance",
            "cpu0/cpufreq/scaling_driver": "intel_pstate",
            "intel_pstate/no_turbo": "0",
        },
    )
    places = cpu_places({0, 1, 2, 3}, str(tmp_path))
    assert places == SMT_2X2 and pick_cpus(2, places) == [1, 2]
    info = topology_info({0, 1, 2, 3}, str(tmp_path))
    assert info == {
        "cores": [[0, 2], [1, 3]], "packages": [0], "smt_control": "on", "smt_active": True, "threads_per_core": 2,
    }  # fmt: skip
    freq = frequency_info({0, 1, 2, 3}, str(tmp_path))
    assert freq["governors"] == {"powersave": [0], "performance": [1]} and freq["driver"] == "intel_pstate"
    assert freq["intel_pstate_no_turbo"] is False and freq["boost"] is None


def test_an_unreadable_topology_is_each_cpu_on_its_own_and_nothing_guessed(tmp_path):
    assert cpu_places({0, 1}, str(tmp_path)) == separate_cores(0, 1)
    assert topology_info({0, 1}, str(tmp_path))["smt_active"] is None
    assert frequency_info({0, 1}, str(tmp_path)) == {
        "driver": None, "governors": None, "boost": None, "intel_pstate_no_turbo": None,
    }  # fmt: skip


def test_cpu_lists_in_sysfs_form():
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11] and parse_cpu_list("5") == [5]


def test_child_environment_sizes_every_pool_and_leaves_the_parent_alone():
    parent = dict(os.environ)
    env = child_environment({"OMP_NUM_THREADS": "64", "KMP_AFFINITY": "x", "PATH": "/bin"}, 2)
    assert {env[v] for v in THREAD_ENV_VARS} == {"2"}
    assert env["HF_HUB_OFFLINE"] == "1" and "KMP_AFFINITY" not in env and env["PATH"] == "/bin"
    assert dict(os.environ) == parent


def test_every_variable_the_worker_environment_sets_is_recorded():
    base = {"PATH": "/bin", "OMP_PROC_BIND": "close", "KMP_BLOCKTIME": "1", "ONEDNN_VERBOSE": "0",
            "TORCHINDUCTOR_COMPILE_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": "/tmp/x"}  # fmt: skip
    env = child_environment(base, 3)
    changed = {k: v for k, v in env.items() if base.get(k) != v}
    recorded = thread_variables(env)
    unrecorded = {k for k, v in changed.items() if k not in NOT_THREAD_VARS and recorded.get(k) != v}
    assert not unrecorded, f"set by child_environment but not recorded: {sorted(unrecorded)}"
    assert {k: recorded[k] for k in ("OMP_PROC_BIND", "KMP_BLOCKTIME", "ONEDNN_VERBOSE")} == {
        "OMP_PROC_BIND": "close", "KMP_BLOCKTIME": "1", "ONEDNN_VERBOSE": "0"
    }
    assert recorded["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
    assert not {"PATH", "HF_HUB_OFFLINE", "TORCHINDUCTOR_CACHE_DIR"} & set(recorded)


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

    from bench.run.launch import wait_blocking

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_blocking(quick, timeout=60) is True
    assert quick.wait() == 0
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    assert wait_blocking(slow, timeout=0.5) is False
    assert time.monotonic() - started < 30
    slow.kill()
    slow.wait()
