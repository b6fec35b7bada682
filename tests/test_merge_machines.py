"""Rows merged from two machines keep their machine: speedups, fastest and % of peak stay within one machine, the
report has a table group per machine headed by its name, and the plots label each series with its machine."""

import csv
import io
import json

import pytest

from bench.cli.show import show
from bench.report import build_report, data
from bench.report.plots import colours
from bench.report import charts
from bench.results.compare import shape_key, speedups
from bench.results.folder import RunDir
from bench.results.identity import kind_key
from bench.results.machines import Machines
from bench.results.merge import merge_runs
from test_report import PEAK, manifest, synthetic_rows, write_run

PEAK_B = {**PEAK, "gflops": {"fp32": {"1": 400.0, "2": 700.0}}}
NAME_A = "CPU A, 2 logical CPUs, host node-a"
NAME_B = "CPU B, 2 logical CPUs, host node-b"


def on_host(host, cpu, peak):
    data = manifest(cpu_model=cpu, peak=peak)
    data["machine"]["hostname"] = host
    return data


def measured_on(rows, machine_manifest):
    """The rows as that machine's runner writes them: its host and kind of machine in `provenance`."""
    machine = machine_manifest["machine"]
    provenance = {"host": machine["hostname"], "machine": kind_key(machine), "commit": "abc123", "dirty": False}
    return [{**row, "provenance": provenance} for row in rows]


def on_b(row):
    """Node b ran sequence 128, and the sdpa case at sequence 32 with 2 threads, whose eager baseline ran on a."""
    return row["seq_len"] == 128 or row["case_id"] == "bert-sdpa-fp32-s32-b1-t2-0000"


def merged_two_machines(tmp_path, peak_b=PEAK_B):
    rows = synthetic_rows()
    a, b = on_host("node-a", "CPU A", PEAK), on_host("node-b", "CPU B", peak_b)
    first = write_run(tmp_path / "a", measured_on([r for r in rows if not on_b(r)], a), a)
    second = write_run(tmp_path / "b", measured_on([r for r in rows if on_b(r)], b), b)
    merged_manifest, notes = merge_runs([first, second], tmp_path / "merged")
    rows = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    return merged_manifest, notes, rows


def test_merged_rows_name_their_machine_and_speedups_never_cross_machines(tmp_path):
    merged, notes, rows = merged_two_machines(tmp_path)
    hosts = {r["case_id"]: r["machine"]["hostname"] for r in rows}
    assert {h for c, h in hosts.items() if "-s128-" in c} == {"node-b"}
    assert hosts["bert-sdpa-fp32-s32-b1-t2-0000"] == "node-b" and hosts["bert-eager-fp32-s32-b1-t2-0000"] == "node-a"
    keys = {r["machine"]["hostname"]: r["machine"]["key"] for r in rows}
    assert keys == {h: r["provenance"]["machine"] for r in rows for h in [r["provenance"]["host"]]}
    assert keys["node-a"] != keys["node-b"]
    sdpa = next(r for r in rows if r["case_id"] == "bert-sdpa-fp32-s32-b1-t2-0000")
    assert shape_key(sdpa)[-1] == "node-b" and speedups(rows)[sdpa["case_id"]] is None
    assert "rows come from 2 machines (node-a, node-b)" in " ".join(notes)
    assert set(merged["merged"]["machines"]) == {"node-a", "node-b"}
    assert "hostname" not in merged["machine"] and merged["machine"]["memory_gib"] == 23.5  # what both share
    assert "peak" not in merged  # each machine has its own: kept per folder
    assert [s["machine"] for s in merged["merged"]["shards"]] == ["node-a", "node-b"]


def test_rows_are_grouped_by_the_kind_of_machine_the_baselines_key(tmp_path):
    merged, _, rows = merged_two_machines(tmp_path)
    machines = Machines(merged)
    grouped = machines.group(rows)
    assert len(grouped) == 2
    for key, members in grouped.items():
        assert {kind_key(merged["merged"]["machines"][r["machine"]["hostname"]]) for r in members} == {key}
    assert sorted(m.name for m in machines.known.values()) == [NAME_A, NAME_B]
    without_provenance = [{k: v for k, v in r.items() if k != "provenance"} for r in rows]
    assert {k: len(v) for k, v in machines.group(without_provenance).items()} == {k: len(v) for k, v in grouped.items()}


def test_speedup_fastest_and_percent_of_peak_within_each_machine(tmp_path):
    merged, _, rows = merged_two_machines(tmp_path)
    entries = {e.row["case_id"]: e for e in data.annotate(rows, None, merged)}
    lone = entries["bert-sdpa-fp32-s32-b1-t2-0000"]  # its eager fp32 ran on the other machine
    assert lone.speedup is None and lone.comparison.refused == data.NO_BASELINE_HERE
    assert lone.fastest  # the only trusted case of its shape on node-b, though node-a's ort was faster
    assert entries["bert-ort-int8-s32-b1-t2-0000"].fastest
    assert lone.median > entries["bert-ort-int8-s32-b1-t2-0000"].median
    sdpa_b, eager_b = entries["bert-sdpa-fp32-s128-b1-t1-0000"], entries["bert-eager-fp32-s128-b1-t1-0000"]
    assert sdpa_b.speedup == pytest.approx(eager_b.median / sdpa_b.median)
    assert entries["bert-sdpa-fp32-s32-b1-t1-0000"].speedup > 1  # node-a's own baseline
    assert eager_b.peak_gflops == PEAK_B["gflops"]["fp32"]["1"]
    assert eager_b.pct_peak == pytest.approx(100 * eager_b.gflops / PEAK_B["gflops"]["fp32"]["1"])
    eager_a = entries["bert-eager-fp32-s32-b1-t1-0000"]
    assert eager_a.peak_gflops == PEAK["gflops"]["fp32"]["1"]
    assert entries["bert-ort-int8-s128-b1-t2-0000"].peak_gflops is None  # node-b has no int8 peak


def test_a_machine_without_a_peak_gets_no_percent_of_peak(tmp_path):
    merged, _, rows = merged_two_machines(tmp_path, peak_b=None)
    entries = data.annotate(rows, None, merged)
    on_b = [e for e in entries if e.row["machine"]["hostname"] == "node-b" and e.ok]
    on_a = [e for e in entries if e.row["machine"]["hostname"] == "node-a" and e.ok]
    assert on_b and all(e.pct_peak is None and e.peak_gflops is None for e in on_b)
    assert any(e.pct_peak is not None for e in on_a)
    md = build_report(tmp_path / "merged", tmp_path / "report", formats={"md"}).markdown.read_text()
    peak = md.split("### Matmul peak")[1]
    assert f"#### {NAME_B}\n\nNo matmul peak was recorded for this machine: its cases have no % of peak." in peak
    assert f"#### {NAME_A}\n\n| precision |" in peak


def test_the_report_has_a_table_group_per_machine_headed_by_its_name(tmp_path):
    merged_two_machines(tmp_path)
    written = build_report(tmp_path / "merged", tmp_path / "report")
    md = written.markdown.read_text()
    for section in ("## Verdict", "## Fastest passing configuration per shape", "## Results"):
        part = md.split(section)[1].split("\n## ")[0]
        assert part.index(f"### On {NAME_A}") < part.index(f"### On {NAME_B}")
    results = md.split("## Results")[1].split("## Plots")[0]
    assert results.count("#### bert (feature-extraction)") == 2
    node_a, node_b = results.split(f"### On {NAME_B}")
    assert f"— {data.NO_BASELINE_HERE}" in node_b and f"— {data.NO_BASELINE_HERE}" not in node_a
    assert "| 128 |" in node_b and "| 128 |" not in node_a
    summary = md.split("## Fastest passing configuration per shape")[1].split("## Results")[0]
    assert "| machine |" not in summary and summary.count("| model | task |") == 2
    assert "| Machines | node-a (CPU A); node-b (CPU B) (each with its own matmul peak: see Matmul peak) |" in md
    header = "| precision | 1 thread GFLOP/s | 2 threads GFLOP/s |\n|---|---|---|"
    assert f"#### {NAME_B}\n\n{header}\n| fp32 | 400.0 | 700.0 |" in md
    html = written.html.read_text()
    assert html.count(f'<h3 class="machine">On {NAME_B}</h3>') == 3 and "<h4>bert (feature-extraction)</h4>" in html
    records = list(csv.DictReader(written.csv.open()))
    assert {r["case_id"]: r["machine"] for r in records}["bert-sdpa-fp32-s32-b1-t2-0000"] == "node-b"


def test_plots_label_each_series_with_its_machine(tmp_path):
    merged, _, rows = merged_two_machines(tmp_path)
    entries = data.annotate(rows, None, merged)
    palette = colours(entries)
    assert "sdpa fp32 on node-a" in palette and "sdpa fp32 on node-b" in palette
    for draw in (charts.latency_vs_seq, charts.thread_scaling, charts.speedup_bars):
        figure, _ = draw(entries, palette)
        labels = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
        series = [label for label in labels if label != "linear scaling"]
        assert series and all(label.endswith((" on node-a", " on node-b")) for label in series), labels
    plots = build_report(tmp_path / "merged", tmp_path / "report", formats={"plots"}).plots
    assert plots
    md = build_report(tmp_path / "merged", tmp_path / "report", formats={"md"}).markdown.read_text()
    assert "The cases come from 2 machines (node-a; node-b): each series is one machine's" in md


def test_bench_show_separates_machines(tmp_path):
    merged_two_machines(tmp_path)
    for fmt in ("md", "table"):
        out = io.StringIO()
        show(RunDir(tmp_path / "merged"), fmt=fmt, out=out, color=False)
        text = out.getvalue()
        assert text.index(f"## On {NAME_A}") < text.index(f"## On {NAME_B}")
    out = io.StringIO()
    show(RunDir(tmp_path / "merged"), summary=True, out=out, color=False)
    assert out.getvalue().index(f"# On {NAME_A}") < out.getvalue().index(f"# On {NAME_B}")


def test_a_single_machine_report_is_unchanged(tmp_path):
    written = build_report(write_run(tmp_path / "run", synthetic_rows()), tmp_path / "report")
    md = written.markdown.read_text()
    assert "### bert (feature-extraction)\n" in md and " on " not in md.split("## Results")[1].split("## Plots")[0]
    assert "| model | task |" in md and "Machines" not in md and "### On " not in md and "####" not in md
    assert "on node" not in md and "machines" not in md.split("## Verdict")[0]
    assert 'class="machine"' not in written.html.read_text()
