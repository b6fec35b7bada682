"""The check before a case: busy CPUs are named with their processes, waited for up to a limit, and recorded."""

import os

import pytest

from bench.run.paired import name_others
from bench.run.quiet import BUSY_SHARE_MAX, SAMPLE_S, kernel_threads, sample, wait_for_quiet, warnings_of
from conftest import TINY_SUITE, bench_cli, write_suite
from test_interference import busy_process

BUSY = {"busy_share": 0.6, "top_processes": [{"pid": 4242, "name": "compiler", "cpu_percent": 97, "last_cpu": 1}]}
QUIET = {"busy_share": 0.01, "top_processes": []}


class FakeTime:
    """A clock that moves only when the code sleeps or checks, and checks that return prepared samples."""

    def __init__(self, samples):
        self.now, self.samples, self.sleeps, self.said = 1000.0, list(samples), [], []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def check(self, cpus):
        self.now += SAMPLE_S
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]

    def wait(self, max_wait_s):
        return wait_for_quiet([1], max_wait_s, self.said.append, self.check, self.clock, self.sleep)


def test_busy_cpus_are_waited_for_until_quiet_and_the_culprits_recorded():
    fake = FakeTime([BUSY, BUSY, QUIET])
    entry = fake.wait(60)
    assert entry["quiet"] is True and entry["busy_share"] == QUIET["busy_share"]
    assert entry["first_busy_share"] == BUSY["busy_share"] and entry["top_processes"] == BUSY["top_processes"]
    assert 0 < entry["waited_s"] < 60 and len(fake.sleeps) == 2
    assert len(fake.said) == 1 and "4242 compiler (97%)" in fake.said[0] and "60%" in fake.said[0]
    assert warnings_of(entry) == []


def test_cpus_that_stay_busy_are_waited_for_up_to_the_limit_then_measured_with_a_warning():
    fake = FakeTime([BUSY])
    entry = fake.wait(30)
    assert entry["quiet"] is False and 30 <= entry["waited_s"] < 30 + 2 * SAMPLE_S
    assert entry["max_wait_s"] == 30 and entry["top_processes"] == BUSY["top_processes"]
    assert "still busy" in fake.said[-1] and len(fake.said) >= 3  # said again every few seconds of waiting
    (warning,) = warnings_of(entry)
    assert "were busy before the case" in warning and "4242 compiler" in warning


def test_a_kernel_thread_that_took_the_cpus_is_said_in_a_users_words_with_how_to_stop_it():
    damon = {"pid": 106, "name": "kdamond.1", "cpu_percent": 5, "last_cpu": 0}
    others = [{"pid": 7, "name": "kswapd0", "cpu_percent": 2, "last_cpu": 1},
              {"pid": 4242, "name": "compiler", "cpu_percent": 97, "last_cpu": 1}]  # fmt: skip
    said = kernel_threads([damon, *others])
    assert len(said) == 2 and said[0].startswith("kdamond.1 is the kernel's DAMON")
    assert "/sys/kernel/mm/damon/admin/kdamonds/1/state" in said[0] and "free memory" in said[1]
    fake = FakeTime([{"busy_share": 0.3, "top_processes": [damon]}])
    fake.wait(0)
    assert "kdamonds/1/state" in fake.said[-1]
    row = {"interference": {"contaminated_blocks": 3},
           "warnings": ["contaminated: other processes used the pinned CPUs", "unstable"]}  # fmt: skip
    name_others(row, [damon])
    assert row["warnings"][0].endswith(f"106 kdamond.1 (5% of a CPU) ({said[0]})") and row["warnings"][1] == "unstable"
    assert kernel_threads(others[1:]) == []


def test_no_waiting_still_checks_and_records():
    fake = FakeTime([BUSY])
    entry = fake.wait(0)
    assert fake.sleeps == [] and entry["waited_s"] == 0 and entry["quiet"] is False
    assert entry["check"] == "on" and entry["busy_share"] == BUSY["busy_share"]
    quiet = FakeTime([QUIET]).wait(0)
    assert quiet["quiet"] is True and quiet["top_processes"] == [] and warnings_of(quiet) == []


def test_without_procfs_the_check_is_off(tmp_path):
    off = sample([0], seconds=0.01, proc_root=str(tmp_path))
    assert "cannot read" in off["off"]
    entry = wait_for_quiet([0], 60, print, check=lambda cpus: off)
    assert entry == {"check": "off", "reason": off["off"], "cpus": [0]} and warnings_of(entry) == []


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux procfs")
def test_a_real_busy_process_is_seen_named_and_waited_for():
    cpu = max(os.sched_getaffinity(0))
    hog = busy_process(cpu)
    said = []
    try:
        entry = wait_for_quiet([cpu], 1.0, said.append)
    finally:
        hog.kill()
        hog.wait()
    assert entry["quiet"] is False and entry["busy_share"] > BUSY_SHARE_MAX and entry["waited_s"] >= 1.0
    assert hog.pid in [p["pid"] for p in entry["top_processes"]]
    assert any(f"{hog.pid} " in line for line in said)


def test_a_bad_quiet_wait_is_one_line_and_writes_nothing(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out, "--quiet-wait", "-1")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "--quiet-wait" in result.stderr and "got -1" in result.stderr and not out.exists()
