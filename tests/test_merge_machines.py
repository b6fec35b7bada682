"""Rows merged from two machines keep their machine: speedups stay within one machine and the report's tables
are grouped by machine."""

import csv
import json

from bench.results.compare import shape_key, speedups
from bench.results.merge import merge_runs
from bench.report import build_report
from test_report import manifest, synthetic_rows, write_run


def on_host(host, cpu):
    data = manifest(cpu_model=cpu)
    data["machine"]["hostname"] = host
    return data


def merged_two_machines(tmp_path):
    rows = synthetic_rows()
    first = write_run(tmp_path / "a", [r for r in rows if r["backend"] != "ort"], on_host("node-a", "CPU A"))
    second = write_run(tmp_path / "b", [r for r in rows if r["backend"] == "ort"], on_host("node-b", "CPU B"))
    merged_manifest, notes = merge_runs([first, second], tmp_path / "merged")
    rows = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    return merged_manifest, notes, rows


def test_merged_rows_name_their_machine_and_speedups_never_cross_machines(tmp_path):
    merged, notes, rows = merged_two_machines(tmp_path)
    hosts = {r["backend"]: r["machine"]["hostname"] for r in rows}
    assert hosts == {"eager": "node-a", "sdpa": "node-a", "openvino": "node-a", "ort": "node-b"}
    assert {r["machine"]["cpu"] for r in rows if r["backend"] == "ort"} == {"CPU B"}
    factors = speedups(rows)
    assert all(factors[r["case_id"]] is None for r in rows if r["backend"] == "ort")  # no eager on node-b
    assert all(factors[r["case_id"]].ratio > 1 for r in rows if r["backend"] == "sdpa")
    ort = next(r for r in rows if r["backend"] == "ort")
    assert shape_key(ort)[-1] == "node-b" and shape_key({**ort, "machine": None}) == shape_key(ort)[:-1]
    assert "rows come from 2 machines (node-a, node-b)" in " ".join(notes)
    assert set(merged["merged"]["machines"]) == {"node-a", "node-b"}
    assert "hostname" not in merged["machine"] and merged["machine"]["memory_gib"] == 23.5  # what both share
    assert "peak" not in merged  # each machine has its own: kept per folder
    assert [s["machine"] for s in merged["merged"]["shards"]] == ["node-a", "node-b"]


def test_the_report_groups_tables_by_machine(tmp_path):
    merged_two_machines(tmp_path)
    written = build_report(tmp_path / "merged", tmp_path / "report")
    md = written.markdown.read_text()
    assert "### bert (feature-extraction) on node-a" in md and "### bert (feature-extraction) on node-b" in md
    assert md.index("on node-a") < md.index("on node-b")
    summary = md.split("## Fastest passing configuration per shape")[1].split("## Results")[0]
    assert summary.splitlines()[2].startswith("| machine | model |")
    assert "| node-b | bert |" in summary and "| node-a | bert |" in summary
    assert "| Machines | node-a (CPU A); node-b (CPU B) (each with its own matmul peak, in its folder) |" in md
    assert "| CPU | several: see Machines |" in md
    html = written.html.read_text()
    assert "<h3>bert (feature-extraction) on node-b</h3>" in html
    records = list(csv.DictReader(written.csv.open()))
    assert {r["backend"]: r["machine"] for r in records}["ort"] == "node-b"


def test_a_single_machine_report_is_unchanged(tmp_path):
    written = build_report(write_run(tmp_path / "run", synthetic_rows()), tmp_path / "report")
    md = written.markdown.read_text()
    assert "### bert (feature-extraction)\n" in md and " on " not in md.split("## Results")[1].split("## Plots")[0]
    assert "| model | task |" in md and "Machines" not in md
