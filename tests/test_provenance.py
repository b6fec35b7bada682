"""Every row says where, when and from what it was measured; a resume refuses a folder measured elsewhere."""

import json

from conftest import TINY_SUITE, bench_cli, write_suite

from bench.machine import git_state, machine_info
from bench.results.identity import kind_key_if_known
from bench.results.provenance import differences


def run_tiny(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out, "--filter", "backend=eager")
    assert result.returncode in (0, 1), result.stderr
    return out


def test_every_row_records_its_start_host_machine_commit_and_load(tmp_path):
    out = run_tiny(tmp_path)
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    provenance = row["provenance"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert provenance["host"] == manifest["machine"]["hostname"]
    assert provenance["machine"] == kind_key_if_known(manifest["machine"])
    assert provenance["commit"] == manifest["git"]["commit"]
    assert provenance["started"] >= manifest["runs"][0]["started"]
    assert len(provenance["load"]) == 3


def test_a_resume_from_another_commit_is_refused_with_the_difference_named_unless_forced(tmp_path):
    out = run_tiny(tmp_path)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["git"]["commit"] = "0123456789abcdef"
    manifest["software"]["packages"]["numpy"] = "0.0.1"
    manifest_path.write_text(json.dumps(manifest))
    before = manifest_path.read_bytes()
    refused = bench_cli("run", "--resume", out)
    assert refused.returncode == 2
    assert "commit: 0123456789 then" in refused.stderr and "numpy: 0.0.1 then" in refused.stderr
    assert "--force" in refused.stderr and manifest_path.read_bytes() == before
    forced = bench_cli("run", "--resume", out, "--force")
    assert forced.returncode in (0, 1) and "nothing to run" in forced.stderr, forced.stderr
    last = json.loads(manifest_path.read_text())["runs"][-1]
    assert any(d.startswith("commit: ") for d in last["forced_despite"])


def test_another_kind_of_machine_is_a_difference_and_the_same_one_is_not():
    here = {"machine": machine_info(), "git": git_state(), "software": None}
    assert not [d for d in differences(here) if d.startswith("machine")]
    elsewhere = json.loads(json.dumps(here))
    elsewhere["machine"]["cpu"]["model"] = "Some Other CPU"
    assert kind_key_if_known(elsewhere["machine"]) != kind_key_if_known(here["machine"])
    assert any(d.startswith("machine: Some Other CPU") for d in differences(elsewhere))
