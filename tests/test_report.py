"""The report from a small synthetic run folder whose rows have the structure the runner writes."""

import csv
import json
import random
import xml.etree.ElementTree as ET

import pytest

from bench.report import build_report, data
from bench.measure.stats import summarize, throughput
from conftest import bench_cli

EVIL = "<script>alert(1)</script>"
PEAK = {
    "measured": "2026-01-01T00:00:00+00:00",
    "method": "test",
    "torch": "test",
    "seconds": 1.0,
    "errors": [],
    "notes": [],
    "gflops": {"fp32": {"1": 100.0, "2": 190.0}, "int8": {"1": 400.0}, "bf16": {"1": 200.0}},
}


def make_row(model, backend, precision, seq, threads, median, *, task="feature-extraction", batch=1, flops=None,
             passed=True, status="ok", reason=None, warnings=(), backend_type=None):  # fmt: skip
    """A row as bench.run.runner.make_row writes it, with samples around `median` ms."""
    case_id = f"{model}-{backend}-{precision}-s{seq}-b{batch}-t{threads}-0000"
    row = {
        "schema": 1, "case_id": case_id, "status": status, "reason": reason, "suite": "synthetic",
        "model": model, "task": task, "backend": backend, "backend_type": backend_type or backend,
        "backend_options": {}, "environment": "main", "precision": precision, "seq_len": seq, "batch_size": batch,
        "threads": threads, "padding_ratio": 0.0, "pinned_cpus": list(range(threads)),
        "baseline": backend == "eager" and precision == "fp32", "wall_s": 3.0, "returncode": 0,
        "stderr_tail": None if status == "ok" else "Traceback (most recent call last):\n  boom <b>",
        "warnings": list(warnings), "flops": flops,
    }  # fmt: skip
    if status != "ok":
        keys = ("latency_ms", "samples_ms", "throughput", "accuracy", "effective", "timings_ms", "memory", "details")
        return {**row, **dict.fromkeys(keys)}
    rng = random.Random(case_id)
    samples = [median * (1 + rng.uniform(-0.05, 0.05)) for _ in range(20)]
    latency = summarize(samples)
    failures = [] if passed else ["logits relative error 0.4 > 0.18"]
    row.update(
        latency_ms=latency, samples_ms=samples, throughput=throughput(latency["median"], batch, batch * seq),
        accuracy={"relative_error": 0.01 if passed else 0.4, "max_abs_diff": 0.0 if passed else 0.4,
                  "mean_abs_diff": 0.0, "cosine": 1.0 if passed else 0.91, "argmax_agreement": None, "finite": True,
                  "passed": passed, "failures": failures,
                  "tolerance": {"max_relative_error": 0.18, "top1_margin": 1.0, "min_top1_agreement": 1.0}},
        effective={"threads": threads, "cpus": list(range(threads)), "versions": {}, "backend": {}},
        timings_ms={"load": 900.0, "prepare": 1200.0 if backend != "eager" else 0.1, "first_call": median * 3},
        memory={"peak_rss_mb": 480.0}, details={},
    )  # fmt: skip
    return row


def synthetic_rows(model="bert", backends=("eager", "sdpa", "ort"), threads=(1, 2), seqs=(32, 128)):
    """eager/sdpa fp32 plus an int8 ort that is fastest at s128 t1 but fails accuracy there; one crashed case."""
    rows = []
    flops = {32: 5_000_000_000, 128: 22_000_000_000}
    for seq in seqs:
        for t in threads:
            base = seq * 2.0 / t
            rows.append(make_row(model, "eager", "fp32", seq, t, base, flops=flops.get(seq)))
            if "sdpa" in backends:
                rows.append(make_row(model, "sdpa", "fp32", seq, t, base * 0.8, flops=flops.get(seq)))
            if "ort" in backends:
                failing = seq == 128 and t == 1
                rows.append(make_row(model, "ort", "int8", seq, t, base * 0.3, passed=not failing, flops=None))
    rows.append(make_row(model, "openvino", "bf16", seqs[0], threads[0], 0, status="crashed",
                         reason="worker killed by SIGSEGV before writing a result"))  # fmt: skip
    return rows


def manifest(name="synthetic", cpu_model="Test CPU", peak=PEAK):
    return {
        "schema": 1, "suite_file": "/x/suite.yaml", "suite": {"name": name}, "filters": [],
        "machine": {"cpu": {"model": cpu_model, "isa": {"avx512f": True, "avx512_bf16": True, "amx_tile": False},
                            "logical_cpus": 2, "allowed_cpus": [0, 1]}, "memory_gib": 23.5, "os": "Linux"},
        "software": {"python": "3.11", "executable": "/venv/bin/python", "packages": {"torch": "2.13.0"}},
        "git": {"commit": "abc123", "dirty": False},
        "runs": [{"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00"}],
        **({"peak": peak} if peak else {}),
    }  # fmt: skip


def write_run(directory, rows, manifest_data=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(manifest_data or manifest()))
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def entries_by_case(rows, peak=PEAK):
    return {e.row["case_id"]: e for e in data.annotate(rows, peak)}


def test_the_fastest_is_chosen_among_passing_cases_and_a_faster_failing_one_is_flagged():
    entries = entries_by_case(synthetic_rows())
    failing = entries["bert-ort-int8-s128-b1-t1-0000"]
    assert not failing.fastest and failing.beats_fastest_but_fails
    assert entries["bert-sdpa-fp32-s128-b1-t1-0000"].fastest  # faster than eager, passes
    assert entries["bert-ort-int8-s32-b1-t1-0000"].fastest  # passes where it is fastest
    for group in data.groups(list(entries.values())).values():
        assert sum(e.fastest for e in group) <= 1


def test_gflops_and_percent_of_peak_match_precision_and_threads_and_share_counts_across_backends():
    entries = entries_by_case(synthetic_rows())
    eager = entries["bert-eager-fp32-s128-b1-t2-0000"]
    assert eager.gflops == pytest.approx(22e9 / (eager.median / 1000) / 1e9)
    assert eager.pct_peak == pytest.approx(100 * eager.gflops / PEAK["gflops"]["fp32"]["2"])
    ort = entries["bert-ort-int8-s128-b1-t1-0000"]  # no count of its own: the shape's count applies
    assert ort.flops == 22_000_000_000 and ort.peak_gflops == PEAK["gflops"]["int8"]["1"]
    assert entries["bert-ort-int8-s128-b1-t2-0000"].pct_peak is None  # no int8 peak at 2 threads
    assert entries["bert-openvino-bf16-s32-b1-t1-0000"].gflops is None  # crashed: no latency


def test_report_writes_markdown_html_csv_and_plots(tmp_path):
    rows = synthetic_rows()
    written = build_report(write_run(tmp_path / "run", rows), tmp_path / "out")
    md = written.markdown.read_text()
    assert "★ fastest" in md and "⚠ fails accuracy" in md and "SIGSEGV" in md
    assert "| ⚠ fails accuracy | 128 | 1 | 1 | ort | int8 |" in md and "FAIL: logits relative error 0.4 &gt; 0.18" in md
    assert "## Machine and environment" in md and "Test CPU" in md and "AVX-512: yes (avx512f)" in md
    records = list(csv.DictReader(written.csv.open()))
    assert len(records) == len(rows)
    assert "latency_cv" in records[0] and "latency_cv_ms" not in records[0] and "latency_median_ms" in records[0]
    assert {r["environment"] for r in records} == {"main"} and records[0]["samples"] == "20"
    flagged = [r["case_id"] for r in records if r["faster_but_fails_accuracy"] == "True"]
    assert flagged == ["bert-ort-int8-s128-b1-t1-0000"]
    names = {p.name for p in written.plots}
    assert {"latency_vs_seq.png", "speedup.svg", "thread_scaling.png", "distributions.png"} <= names
    assert {"percent_of_peak.png"} <= names and "tokens_per_s.png" not in names
    for path in written.plots:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            ET.parse(path)
    assert "prompt tokens per second" in md.lower() and "the run has no forward-pass text-generation cases" in md
    assert "decode tokens per second" in md.lower() and "the run has no text generation cases" in md


def test_html_is_self_contained(tmp_path):
    written = build_report(write_run(tmp_path / "run", synthetic_rows()), tmp_path / "out")
    page = written.html.read_text()
    pngs = [p for p in written.plots if p.suffix == ".png"]
    assert page.count('src="data:image/png;base64,') == len(pngs) > 0
    assert "<link" not in page and "<script" not in page and "http" not in page.lower().replace("https", "http")


def test_plots_without_an_axis_are_skipped_and_said(tmp_path):
    rows = synthetic_rows(backends=("eager", "sdpa"), threads=(1,), seqs=(64,))
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "thread_scaling.png").write_bytes(b"stale")
    written = build_report(write_run(tmp_path / "run", rows, manifest(peak=None)), out)
    names = {p.name for p in written.plots}
    assert "thread_scaling.png" not in names and not (out / "plots" / "thread_scaling.png").exists()
    assert "latency_vs_seq.png" not in names and "speedup.png" in names
    page, md = written.html.read_text(), written.markdown.read_text()
    for reason in ("every case ran at a single thread count", "at a single sequence length", "--no-peak"):
        assert reason in page and reason in md


def test_every_text_from_a_suite_or_result_is_escaped(tmp_path):
    rows = synthetic_rows(model=EVIL, backends=("eager", "ort"), threads=(1,), seqs=(32, 128))
    for row in rows:
        row["backend"] = EVIL if row["backend"] == "ort" else row["backend"]
        row["task"] = EVIL + "$_{$"  # a `$` pair would start matplotlib math mode
        row["warnings"] = [EVIL]
        row["reason"] = EVIL if row["status"] != "ok" else None
    rows[0]["case_id"] = EVIL
    written = build_report(write_run(tmp_path / "run", rows, manifest(name=EVIL, cpu_model=EVIL)), tmp_path / "out")
    page = written.html.read_text()
    assert EVIL not in page and "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") > 10
    assert "boom &lt;b&gt;" in page  # the crashed case's log tail
    md = written.markdown.read_text()
    assert EVIL not in md and "&lt;script&gt;" in md


def test_markdown_cells_keep_table_columns_when_names_hold_pipes(tmp_path):
    rows = synthetic_rows(backends=("eager",), threads=(1,), seqs=(32,))
    rows[0]["backend"] = "a|b"
    written = build_report(write_run(tmp_path / "run", rows), tmp_path / "out")
    lines = written.markdown.read_text().splitlines()
    line = next(line for line in lines if "a\\|b" in line and line.startswith("| ★"))
    header = next(line for line in lines if line.startswith("|  | seq"))
    assert line.replace("\\|", "").count("|") == header.count("|")


def test_bench_report_command(tmp_path):
    run = write_run(tmp_path / "run", synthetic_rows())
    result = bench_cli("report", run, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "out" / "report.html") in result.stdout
    assert (tmp_path / "out" / "results.csv").exists()
    missing = bench_cli("report", tmp_path / "nowhere")
    assert missing.returncode == 2
    manifest_path = tmp_path / "nowhere" / "manifest.json"
    expected = f"error: {manifest_path}: expected a run folder with a manifest.json, got no such file"
    assert missing.stderr.strip() == expected


def test_bench_report_writes_the_formats_asked_for(tmp_path):
    run = write_run(tmp_path / "run", synthetic_rows())
    result = bench_cli("report", run, "--out", tmp_path / "out", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "results.csv")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv"]
    both = bench_cli("report", run, "--out", tmp_path / "md", "--format", "plots", "--format", "md")
    assert both.returncode == 0 and both.stdout.splitlines() == [str(tmp_path / "md" / "report.md")]
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == ["plots", "report.md"]
    wrong = bench_cli("report", run, "--format", "pdf")
    assert wrong.returncode == 2 and "invalid choice: 'pdf'" in wrong.stderr


def test_needs_attention_groups_warnings_by_kind_with_one_explanation_each(tmp_path):
    from bench.report.attention import groups

    rows = synthetic_rows()
    unstable = "unstable: the standard deviation is 12% of the mean (over 10%); rerun on a quieter machine"
    busy = "CPUs [1] were busy before the case (waited 0 s): 98% busy with other processes"
    for row in rows[:3]:
        row["warnings"] = [unstable, busy, "something else entirely"]
    found = {g.kind: g for g in groups(data.collect_warnings(data.annotate(rows, None)))}
    details = [detail for _, detail in found["unstable"].items]
    assert details == ["the standard deviation is 12% of the mean (over 10%)"] * 3
    assert len(found["busy-before"].items) == 3 and len(found["other"].items) == 3
    assert {"failed", "accuracy", "faster-but-failing"} <= set(found)
    written = build_report(write_run(tmp_path / "run", rows), tmp_path / "out")
    report_text = written.markdown.read_text()
    assert report_text.count("give the suite more measure.rounds") == 1  # the advice once, for its kind
    assert "rerun on a quieter machine" not in report_text  # the warning's own advice is left to its kind's
    records = {r["case_id"]: r for r in csv.DictReader(written.csv.open())}
    assert records[rows[0]["case_id"]]["warnings"] == "; ".join(rows[0]["warnings"])  # plain text, not JSON
