"""Baselines kept per kind of machine: save, list, compare with the one saved for the new run's machine."""

import json

from bench.results.baselines import BASELINES_VAR
from bench.results.identity import machine_identity, machine_key
from conftest import bench_cli
from test_regression import suite_rows
from test_report import manifest, write_run


def machine_of(cpu_model="Test CPU", memory_gib=23.5, logical_cpus=2, isa=None):
    data = manifest(cpu_model=cpu_model)
    data["machine"].update(memory_gib=memory_gib, hostname="node-1")
    data["machine"]["cpu"]["logical_cpus"] = logical_cpus
    if isa is not None:
        data["machine"]["cpu"]["isa"] = isa
    return data


def test_the_machine_key_is_the_kind_of_machine_not_the_host():
    key = machine_key(machine_identity(machine_of()["machine"]))
    assert key.startswith("test-cpu-2cpu-24gib-")
    same_kind = machine_of(memory_gib=23.6)
    same_kind["machine"]["hostname"] = "node-2"
    assert machine_key(machine_identity(same_kind["machine"])) == key
    for other in (machine_of(cpu_model="Other CPU"), machine_of(logical_cpus=4), machine_of(memory_gib=64),
                  machine_of(isa={"avx512f": True, "avx512_bf16": False, "amx_tile": False})):  # fmt: skip
        assert machine_key(machine_identity(other["machine"])) != key
    xeon = machine_identity({"cpu": {"model": "Intel(R) Xeon(R) Platinum 8480C CPU @ 2.0GHz", "logical_cpus": 8},
                             "memory_gib": 31.2})  # fmt: skip
    assert machine_key(xeon).startswith("intel-xeon-platinum-8480c-8cpu-31gib-")


def test_save_list_and_compare_with_the_baseline_of_the_runs_machine(tmp_path):
    env = {BASELINES_VAR: str(tmp_path / "baselines")}
    run = write_run(tmp_path / "run-a", suite_rows(), machine_of())
    (run / "logs").mkdir()
    (run / "logs" / "case.log").write_text("worker output")
    saved = bench_cli("baseline", "save", run, "nightly", env=env)
    assert saved.returncode == 0, saved.stderr
    key = machine_key(machine_identity(machine_of()["machine"]))
    (version,) = (tmp_path / "baselines" / key / "nightly").iterdir()
    assert sorted(p.name for p in version.iterdir()) == ["baseline.json", "manifest.json", "results.jsonl"]
    assert (version / "results.jsonl").read_text() == (run / "results.jsonl").read_text()
    info = json.loads((version / "baseline.json").read_text())
    assert info["machine_key"] == key and info["cases"] == 4 and info["source"] == str(run.resolve())

    other = write_run(tmp_path / "run-other", suite_rows(slow_factor=0.5), machine_of(cpu_model="Other CPU"))
    assert bench_cli("baseline", "save", other, "nightly", env=env).returncode == 0
    listed = bench_cli("baseline", "list", "--json", env=env)
    assert sorted(e["machine_key"] for e in json.loads(listed.stdout)) == sorted([key, other_key(other)])
    only = json.loads(bench_cli("baseline", "list", "--run", run, "--json", env=env).stdout)
    assert [e["machine_key"] for e in only] == [key]

    slow = write_run(tmp_path / "run-b", suite_rows(slow_factor=1.3), machine_of())
    result = bench_cli("compare", "--baseline", "nightly", slow, "--json", tmp_path / "c.json", env=env)
    assert result.returncode == 1, result.stderr  # against run-a, not the other machine's (faster) run
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["base"]["path"] == str(version) and data["cases"][0]["case_id"] == "bert-sdpa-t1"

    assert bench_cli("baseline", "save", slow, "nightly", env=env).returncode == 0  # accepted: a newer version
    result = bench_cli("compare", "--baseline", "nightly", slow, env=env)
    assert result.returncode == 0, result.stdout
    assert len(list((tmp_path / "baselines" / key / "nightly").iterdir())) == 2


def other_key(run):
    return machine_key(machine_identity(json.loads((run / "manifest.json").read_text())["machine"]))


def test_no_baseline_for_this_machine_is_bad_input_naming_the_machines_that_have_one(tmp_path):
    env = {BASELINES_VAR: str(tmp_path / "baselines")}
    other = write_run(tmp_path / "other", suite_rows(), machine_of(cpu_model="Other CPU"))
    assert bench_cli("baseline", "save", other, "nightly", env=env).returncode == 0
    run = write_run(tmp_path / "run", suite_rows(), machine_of())
    result = bench_cli("compare", "--baseline", "nightly", run, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "expected one saved for this kind of machine (test-cpu-2cpu-24gib-" in result.stderr
    assert other_key(other) in result.stderr and "bench baseline save RUN nightly" in result.stderr
    assert bench_cli("baseline", "save", run, "../escape", env=env).returncode == 2
    assert not (tmp_path / "escape").exists()
    assert json.loads(bench_cli("baseline", "list", "--run", run, "--json", env=env).stdout) == []
