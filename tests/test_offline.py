"""The offline scenario: cases per split of the CPUs, the window's accounting of calls, and a real run whose streams'
throughput is known (a fixed spin per call dominates it)."""

import json

import pytest

from bench.measure import paired
from bench.plan.matrix import dropped_combinations, expand
from bench.plan.suite import load_suite
from bench.results.folder import row_is_good
from bench.measure.stats import percentiles
from bench.run.offline import stream_cpus, window_work
from conftest import TINY_GENERATOR, TINY_MODEL, bench_cli, two_cpus, write_suite

OFFLINE = """\
name: offline
defaults:
  seq_lens: [16]
  batch_sizes: [2]
  threads: [1, 2]
  streams: [1, 2]
  scenario: offline
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120,
            rounds: 2, passes: 2, block_seconds: 0.3}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
"""
SPIN_MS = 40
"""Each call spins this long on top of bert-tiny's own 1-3 ms: one stream completes about 1000/41 calls a second
whatever its thread count, two streams on a CPU each about twice that."""


def test_an_offline_suite_makes_a_case_per_split_and_single_stream_ids_do_not_change(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, OFFLINE))
    cases = expand(suite)
    splits = sorted((c.streams, c.threads) for c in cases)
    assert splits == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(c.offline and "-offline-" in c.case_id and f"-x{c.streams}-" in c.case_id for c in cases)
    assert not any(c.is_baseline for c in cases)  # the latency baseline is a single-stream case
    single = OFFLINE.replace("  scenario: offline\n", "")
    single_cases = expand(load_suite(write_suite(tmp_path, single, "single.yaml"))[0])
    plain = OFFLINE.replace("  scenario: offline\n", "").replace("  streams: [1, 2]\n", "")
    plain_cases = expand(load_suite(write_suite(tmp_path, plain, "plain.yaml"))[0])
    assert [c.case_id for c in single_cases] == [c.case_id for c in plain_cases]
    assert {c.streams for c in single_cases} == {1} and not any(c.offline for c in single_cases)
    notes = dropped_combinations(load_suite(write_suite(tmp_path, single, "single.yaml"))[0])
    assert any("streams [2] apply to the scenarios under load only" in n for n in notes), notes


def test_offline_leaves_generation_out_and_says_so(tmp_path):
    text = OFFLINE.replace(TINY_MODEL, TINY_GENERATOR)
    suite, _ = load_suite(write_suite(tmp_path, text))
    assert expand(suite) == []
    assert any("offline measures forward-pass cases only" in n for n in dropped_combinations(suite))


def test_validate_names_the_streams_field_that_asks_for_more_cpus_than_there_are(tmp_path):
    import os

    cpus = len(os.sched_getaffinity(0))
    text = OFFLINE.replace("threads: [1, 2]", "threads: [1]").replace("streams: [1, 2]", f"streams: [{cpus + 1}]")
    result = bench_cli("validate", write_suite(tmp_path, text))
    assert result.returncode == 0, result.stderr
    assert f"defaults.streams: {cpus + 1} streams × 1 threads is more than the {cpus} CPUs" in result.stdout + result.stderr


def test_a_window_counts_the_share_of_each_call_inside_it():
    ms = 1_000_000
    window = (100 * ms, 200 * ms)
    back_to_back = [[t * ms, (t + 30) * ms] for t in range(70, 230, 30)]  # a stream busy throughout, 30 ms a call
    assert window_work(back_to_back, *window) == pytest.approx(100 / 30)
    assert window_work([[50 * ms, 90 * ms], [210 * ms, 240 * ms]], *window) == 0  # ramp and tail left out
    assert window_work([[150 * ms, 250 * ms]], *window) == pytest.approx(0.5)
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 100.0}


def test_streams_get_disjoint_slices_of_the_cpus_or_none_when_there_are_too_few():
    from types import SimpleNamespace

    places = {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (0, 3)}
    layout = stream_cpus(SimpleNamespace(streams=2, threads=2, own_streams=False), places)
    assert len(layout) == 2 and all(len(s) == 2 for s in layout) and not set(layout[0]) & set(layout[1])
    assert stream_cpus(SimpleNamespace(streams=3, threads=2), places) is None


RUN = OFFLINE.replace("  streams: [1, 2]\n", "  streams: [1, 2]\n").replace(
    "backends:", "exclude:\n  - {streams: 2, threads: 2}\nbackends:"
)
"""Three splits of two CPUs: 1 stream × 2 threads (the group's baseline), 1 × 1 and 2 × 1."""


@two_cpus
@pytest.mark.slow
def test_a_real_offline_run_measures_each_split_and_pairs_it_with_the_single_stream_one(tmp_path):
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, RUN), "--out", out, env={"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"})
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = {(r["streams"], r["threads"]): r for r in map(json.loads, lines)}
    clean_code = 0 if all(map(row_is_good, rows.values())) else 1  # a window another process used fails the run
    assert result.returncode == clean_code, result.stdout + result.stderr
    assert set(rows) == {(1, 2), (1, 1), (2, 1)}
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert row["scenario"] == "offline" and row["throughput"] is None and row["accuracy"]["passed"]
        load = row["load"]
        per_round = 5 if row["paired"]["role"] == "baseline" else 2  # B X B Y B, twice, as one chain
        assert [len(w) for w in load["windows"]] == [per_round, per_round]  # 2 rounds
        every_window = sum(len(w) for w in load["windows"])
        assert load["samples_per_s"] is None and load["contaminated_windows"] == every_window or load["samples_per_s"] > 0
        assert load["latency_ms"][0]["p50"] >= SPIN_MS
        assert len(load["stream_cpus"]) == row["streams"]
        assert sorted(c for s in load["stream_cpus"] for c in s) == row["pinned_cpus"]
    baseline = rows[1, 2]
    assert baseline["paired"]["role"] == "baseline"
    for split in ((1, 1), (2, 1)):
        assert rows[split]["paired"]["role"] == "configuration"
        assert rows[split]["paired"]["baseline"] == baseline["case_id"]
    per_call_s = (SPIN_MS + 2) / 1000  # the spin and about bert-tiny's own call
    if baseline["load"]["samples_per_s"] is not None:  # the median of its clean windows
        assert 0.6 < baseline["load"]["samples_per_s"] * per_call_s / 2 < 1.1  # batch 2 per call
    from bench.results.offline import split_ratios, throughputs

    every = list(rows.values())
    ratios = split_ratios(every)
    for split, low, high in (((2, 1), 1.6, 2.2), ((1, 1), 0.8, 1.2)):  # two streams spin on two CPUs at once; the
        row = rows[split]  # spin takes one thread either way
        figure = ratios[row["case_id"]]
        value = figure.value
        if value is None:  # refused: a busy machine, which the row must name; its clean pairs still show the split
            named = row["interference"]["reasons"] or baseline["interference"]["reasons"]  # its own, or its baseline's
            assert "contaminated" in figure.why_not and named, (figure, row["interference"], baseline["interference"])
            clean = [r for r in row["paired"]["log_speedups"] if r]
            if not clean:
                pytest.skip(f"every window of a split was contaminated: {row['interference']['reasons']}")
            value = paired.ratios({"split": paired.Rounds.of(clean)})["split"].ratio
        assert low < value < high, (figure, [r["interference"] for r in every])
    rate = throughputs(every)[baseline["case_id"]]
    assert rate.interval is not None or "contaminated" in rate.why_not, (rate, baseline["interference"])
    shown = bench_cli("show", out)
    assert shown.returncode == clean_code, shown.stdout + shown.stderr
    assert "offline: tiny (text-classification)  eager fp32" in shown.stdout and "2 × 1" in shown.stdout
    assert "vs 1 stream" in shown.stdout and "fastest trusted case" not in shown.stdout
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Offline throughput" in markdown and "fastest" not in markdown
    summary = bench_cli("show", out, "--summary").stdout
    assert "### Offline throughput" in summary and "No case was measured" not in summary
    report = bench_cli("report", out, "--out", tmp_path / "report", "--format", "md")
    assert report.returncode == 0, report.stderr
    assert "## Offline throughput" in (tmp_path / "report" / "report.md").read_text()
