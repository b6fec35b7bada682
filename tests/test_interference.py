"""The interference meter: its verdict on synthetic procfs snapshots, its reader on real and missing procfs,
and a real busy process on the same CPU."""

import json
import math
import os
import subprocess
import sys

import pytest

from bench.measure.interference import (
    FOREIGN_SHARE_MAX,
    OWN_FULL_SHARE,
    RESOLUTION_TICKS,
    STEAL_SHARE_MAX,
    WAIT_SHARE_MAX,
    assess,
    snapshot,
    warnings_of,
)
from bench.run.launch import pin_and_tie
from bench.paths import PROJECT_ROOT

HZ = 100
WINDOW = 10.0
CPUS = ("2", "3")
CAPACITY = WINDOW * len(CPUS)


def snap(clock=0.0, busy=0, steal=0, own=0.0, waits=None, switches=0):
    """A snapshot as `snapshot()` makes it; busy and steal ticks are spread over the CPUs."""
    return {
        "clock_s": clock,
        "ticks_per_s": HZ,
        "cpus": {cpu: {"busy": share(busy, i), "steal": share(steal, i)} for i, cpu in enumerate(CPUS)},
        "tasks": waits if waits is not None else {"100": 0},
        "loadavg": [0.5, 0.4, 0.3],
        "own_cpu_s": own,
        "involuntary_switches": switches,
    }


def share(ticks: int, index: int) -> int:
    """The index-th CPU's part of `ticks`, the remainder on the first."""
    part = ticks // len(CPUS)
    return part + (ticks - part * len(CPUS) if index == 0 else 0)


def window(foreign_s=0.0, own_s=None, wait_s=0.0, steal_s=0.0):
    """Two snapshots WINDOW seconds apart on CPUS with these amounts of each kind of time in between."""
    own_s = CAPACITY * 0.9 if own_s is None else own_s
    busy_ticks = round((own_s + foreign_s) * HZ)
    before = snap(clock=100.0, busy=1000, steal=40, own=5.0, waits={"100": 7_000, "101": 3_000})
    after = snap(
        clock=100.0 + WINDOW,
        busy=1000 + busy_ticks,
        steal=40 + round(steal_s * HZ),
        own=5.0 + own_s,
        waits={"100": 7_000 + round(wait_s * 1e9), "101": 3_000},
        switches=12,
    )
    return before, after


def test_a_quiet_window_is_not_contaminated_and_its_figures_are_the_differences():
    entry = assess(*window())
    assert entry["meter"] == "on" and entry["contaminated"] is False and entry["reasons"] == []
    figures = entry["figures"]
    assert figures["window_s"] == WINDOW and figures["own_cpu_s"] == pytest.approx(CAPACITY * 0.9)
    assert figures["foreign_cpu_s"] == pytest.approx(0, abs=1 / HZ) and figures["run_queue_wait_s"] == 0
    assert figures["involuntary_switches"] == 12 and figures["threads"] == 2
    assert entry["cpus"] == [2, 3] and entry["shares"]["own"] == pytest.approx(0.9)
    assert warnings_of(entry) == []


def foreign_limit_s():
    return FOREIGN_SHARE_MAX * CAPACITY + RESOLUTION_TICKS * len(CPUS) / HZ


@pytest.mark.parametrize("side, contaminated", [(-1, False), (+1, True)])
def test_foreign_time_contaminates_beyond_its_share_and_the_counters_resolution(side, contaminated):
    foreign = foreign_limit_s() + side / HZ  # one clock tick either side: the resolution margin is part of the limit
    entry = assess(*window(foreign_s=foreign, own_s=CAPACITY * 0.5))
    assert entry["contaminated"] is contaminated
    assert entry["figures"]["foreign_cpu_s"] == pytest.approx(foreign, abs=2 / HZ)
    assert entry["shares"]["foreign"] == pytest.approx(foreign / CAPACITY, abs=1e-3)
    assert any("other processes used" in r for r in entry["reasons"]) is contaminated


@pytest.mark.parametrize("side, contaminated", [(-1, False), (+1, True)])
def test_run_queue_wait_contaminates_beyond_its_share_of_the_window(side, contaminated):
    wait = WAIT_SHARE_MAX * WINDOW + side * 0.05
    entry = assess(*window(wait_s=wait, own_s=CAPACITY * 0.8))
    assert entry["contaminated"] is contaminated
    assert entry["figures"]["run_queue_wait_s"] == pytest.approx(wait)
    assert entry["shares"]["run_queue_wait"] == pytest.approx(wait / WINDOW, abs=1e-4)
    assert any("waited for a CPU" in r for r in entry["reasons"]) is contaminated


def test_waiting_behind_its_own_threads_is_a_note_not_contamination():
    entry = assess(*window(wait_s=WINDOW * 0.3, own_s=CAPACITY * OWN_FULL_SHARE + 0.1))
    assert entry["contaminated"] is False
    assert len(entry["notes"]) == 1 and "behind its own threads" in entry["notes"][0]
    just_below = assess(*window(wait_s=WINDOW * 0.3, own_s=CAPACITY * OWN_FULL_SHARE - 0.1))
    assert just_below["contaminated"] is True and just_below["notes"] == []


@pytest.mark.parametrize("side, contaminated", [(-1, False), (+1, True)])
def test_steal_time_contaminates_beyond_its_share_and_the_tick_resolution(side, contaminated):
    steal = STEAL_SHARE_MAX * CAPACITY + RESOLUTION_TICKS * len(CPUS) / HZ + side * 0.06
    entry = assess(*window(steal_s=steal))
    assert entry["contaminated"] is contaminated
    assert entry["figures"]["steal_s"] == pytest.approx(steal, abs=1 / HZ)
    assert any("steal time" in r for r in entry["reasons"]) is contaminated


def test_steal_under_load_is_noted_with_its_share_and_other_reasons_still_contaminate():
    steal = STEAL_SHARE_MAX * CAPACITY * 3 + RESOLUTION_TICKS * len(CPUS) / HZ
    quiet = assess(*window(steal_s=steal), steal_contaminates=False)
    assert quiet["contaminated"] is False and quiet["reasons"] == []
    assert any("steal time" in n for n in quiet["notes"]) and quiet["shares"]["steal"] > STEAL_SHARE_MAX
    busy = assess(*window(steal_s=steal, foreign_s=CAPACITY * 0.4, own_s=CAPACITY * 0.5), steal_contaminates=False)
    assert busy["contaminated"] is True and not any("steal time" in r for r in busy["reasons"])


def test_a_thread_started_inside_the_window_counts_all_its_wait():
    before, after = window(own_s=CAPACITY * 0.5)
    after["tasks"]["102"] = round(WINDOW * 0.2 * 1e9)
    entry = assess(before, after)
    assert entry["figures"]["run_queue_wait_s"] == pytest.approx(WINDOW * 0.2) and entry["contaminated"]


def test_every_reason_is_in_the_rows_warning():
    entry = assess(*window(foreign_s=CAPACITY * 0.4, own_s=CAPACITY * 0.5, wait_s=WINDOW * 0.4, steal_s=1.0))
    assert len(entry["reasons"]) == 3
    (warning,) = warnings_of(entry)
    assert warning.startswith("contaminated: ") and all(reason in warning for reason in entry["reasons"])


def test_snapshots_survive_json_and_give_the_same_verdict():
    before, after = window(foreign_s=CAPACITY * 0.3, own_s=CAPACITY * 0.5)
    again = assess(json.loads(json.dumps(before)), json.loads(json.dumps(after)))
    assert again == assess(before, after) and again["contaminated"]


def test_the_meter_is_off_without_procfs_and_guesses_nothing(tmp_path):
    off = snapshot([0], proc_root=str(tmp_path))
    assert set(off) == {"off"} and str(tmp_path / "stat") in off["off"]
    entry = assess(off, off)
    assert entry == {"meter": "off", "reason": off["off"], "contaminated": None}
    assert warnings_of(entry) == []
    (tmp_path / "stat").write_text("cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    no_tasks = snapshot([0], proc_root=str(tmp_path))
    assert "cannot list" in no_tasks["off"] and "task" in no_tasks["off"]
    assert "no per-CPU line" in snapshot([5], proc_root=str(tmp_path))["off"]


def test_one_off_snapshot_turns_the_meter_off():
    before, after = window()
    entry = assess(before, {"off": "cannot read /proc/stat: Permission denied"})
    assert entry["meter"] == "off" and entry["contaminated"] is None and "Permission denied" in entry["reason"]


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux procfs")
def test_a_real_snapshot_reads_every_counter():
    cpus = sorted(os.sched_getaffinity(0))
    before = snapshot(cpus)
    sum(i * i for i in range(200_000))
    entry = assess(before, snapshot(cpus))
    assert entry["meter"] == "on", entry
    assert entry["figures"]["own_cpu_s"] > 0 and entry["figures"]["threads"] >= 1
    assert entry["cpus"] == cpus and len(entry["figures"]["loadavg"]) == 3
    assert all(math.isfinite(share) and share >= 0 for share in entry["shares"].values())


SPIN_AND_ASSESS = """
import json, os, time
from bench.measure.interference import assess, snapshot
cpus = sorted(os.sched_getaffinity(0))
before = snapshot(cpus)
end = time.monotonic() + 1.0
while time.monotonic() < end:
    pass
print(json.dumps(assess(before, snapshot(cpus))))
"""


def busy_process(cpu: int) -> subprocess.Popen:
    """A Python busy loop pinned to `cpu`."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin_and_tie([cpu]))


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux procfs")
def test_a_real_busy_process_on_the_same_cpu_contaminates_a_real_loop():
    cpu = max(os.sched_getaffinity(0))
    hog = busy_process(cpu)
    try:
        out = subprocess.run(
            [sys.executable, "-c", SPIN_AND_ASSESS],
            preexec_fn=pin_and_tie([cpu]),
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        hog.kill()
        hog.wait()
    entry = json.loads(out)
    assert entry["contaminated"] is True, entry
    assert entry["shares"]["run_queue_wait"] > WAIT_SHARE_MAX and entry["shares"]["foreign"] > FOREIGN_SHARE_MAX
    assert entry["figures"]["involuntary_switches"] > 0


def run_tiny_suite(tmp_path, hog_cpu=None):
    """The shared tiny suite, measured for real; with a busy process on its CPU when `hog_cpu` is given."""
    from conftest import TINY_SUITE, bench_cli, write_suite

    suite = write_suite(tmp_path, TINY_SUITE)
    out = tmp_path / "run"
    hog = busy_process(hog_cpu) if hog_cpu is not None else None
    try:
        result = bench_cli("run", suite, "--out", out)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    assert result.returncode in (0, 1), result.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}, [r["reason"] for r in rows]
    return rows, hog


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux procfs")
def test_a_real_case_measured_beside_a_busy_process_is_contaminated(tmp_path):
    from bench.run.cpus import pick_cpus
    from bench.topology import available_cpus

    (cpu,) = pick_cpus(1, available_cpus())  # where the tiny suite's 1-thread cases will be pinned
    rows, hog = run_tiny_suite(tmp_path, hog_cpu=cpu)
    machine = json.loads((tmp_path / "run" / "manifest.json").read_text())["machine"]
    assert sorted(sum(machine["topology"]["cores"], [])) == sorted(os.sched_getaffinity(0))
    assert set(machine["frequency"]) == {"driver", "governors", "boost", "intel_pstate_no_turbo"}
    for row in rows:
        assert row["pinned_cpus"] == [cpu]
        entry = row["interference"]
        assert entry["meter"] == "on" and entry["contaminated"] is True, entry
        assert any(w.startswith("contaminated: ") for w in row["warnings"])
        check = row["quiet_check"]
        assert check["check"] == "on" and check["quiet"] is False and check["busy_share"] > 0.1
        assert hog.pid in [p["pid"] for p in check["top_processes"]]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux procfs")
def test_a_paired_row_measured_beside_a_busy_process_names_it(tmp_path):
    """The meter says that something else ran; the row also says what: the busiest processes outside the run while
    its blocks ran, in `interference.others` and in its warning. The run's own workers are never named."""
    from bench.run.cpus import pick_cpus
    from bench.topology import available_cpus
    from conftest import TINY_SUITE, bench_cli, write_suite

    (cpu,) = pick_cpus(1, available_cpus())
    suite = write_suite(tmp_path, TINY_SUITE.replace("timeout: 120}", "timeout: 120, paired: true, passes: 2}"))
    hog = busy_process(cpu)
    try:
        result = bench_cli("run", suite, "--out", tmp_path / "run", "--quiet-wait", "0")
    finally:
        hog.kill()
        hog.wait()
    assert result.returncode in (0, 1), result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    workers = {row["effective"]["pid"] for row in rows if row.get("effective")}
    for row in rows:
        entry = row["interference"]
        assert entry["contaminated"] is True and entry["contaminated_blocks"] > 0, entry
        named = [p["pid"] for p in entry["others"]]
        assert hog.pid in named and not workers & set(named), (entry["others"], workers)
        [warning] = [w for w in row["warnings"] if w.startswith("contaminated: ")]
        assert f"busiest other processes meanwhile: {hog.pid} " in warning, warning


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux procfs")
def test_a_real_case_on_a_quiet_machine_is_not_flagged(tmp_path):
    """Right on a quiet machine; another program busy on the same CPU makes it fail, as it should."""
    rows, _ = run_tiny_suite(tmp_path)
    for row in rows:
        entry = row["interference"]
        assert entry["meter"] == "on" and entry["contaminated"] is False, (entry, row["quiet_check"])
        assert not any(w.startswith("contaminated: ") for w in row["warnings"])


def test_a_malformed_proc_stat_turns_the_meter_off_instead_of_failing_the_case(tmp_path):
    (tmp_path / "stat").write_text("\ncpu0 1 2 x 4 5 6 7 8 0 0\n")
    off = snapshot([0], proc_root=str(tmp_path))
    assert "expected numbers on the cpu0 line" in off["off"]
