"""FLOP counts, the matmul peak probe and the share of it a case reaches."""

import json
import os

import pytest

from bench.job import MAIN, Case, Job, Source
from bench.measure.flops import count_flops
from bench.paths import PROJECT_ROOT
from bench.run.peak import busy_notes, probe_thread_counts, record_peak, summary
from bench.report import roofline
from bench.results.folder import RunDir
from bench.worker.peak import median_rate
from conftest import bench_cli

BERT_TINY = PROJECT_ROOT / "bench" / "plan" / "configs" / "bert-tiny" / "config.json"


def bert_classifier_flops(config: dict, batch: int, seq: int, labels: int = 2) -> int:
    """2·m·n·k per matrix product: per layer Q, K, V, output, two FFN products and the two attention products."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    tokens = batch * seq
    per_layer = 4 * 2 * tokens * hidden * hidden + 2 * 2 * tokens * hidden * inner + 2 * 2 * batch * seq * seq * hidden
    return layers * per_layer + 2 * batch * hidden * hidden + 2 * batch * hidden * labels


@pytest.mark.parametrize("batch, seq", [(2, 16), (1, 48)])
def test_flop_count_of_a_bert_classifier_is_its_matrix_products(batch, seq):
    case = Case(
        suite="s", model="bert-tiny", task="text-classification", model_entry={}, backend="eager",
        backend_type="pytorch", backend_options={}, environment=MAIN, precision="fp32", seq_len=seq,
        batch_size=batch, threads=1, padding_ratio=0.0, seed=0, measure={}, tolerance={},
    )  # fmt: skip
    job = Job("measure", case, Source("config", str(BERT_TINY), ""), {}, {}, [], "", "")
    assert count_flops(job) == bert_classifier_flops(json.loads(BERT_TINY.read_text()), batch, seq)


def test_the_peak_rate_is_the_median_calls_as_the_cases_are():
    ticks = iter([0.0, 0.0, 1.0, 1.5, 1.75, 2.0, 3.0, 9.0])  # deadline, then (start, end) x3, then past it
    calls = []
    rate, count, median = median_rate(lambda: calls.append(1), operations=2e9, seconds=0.1, clock=lambda: next(ticks))
    assert count == 3 and len(calls) == 4  # one untimed call first
    assert rate == pytest.approx(2e9 / 1.0 / 1e9)  # durations 1.0, 0.25, 1.0: the median, not the best
    assert median == 1.0  # longer than the 0.1 s given: the probe tries no larger size


def test_probe_thread_counts_are_one_all_and_the_cases_that_fit():
    assert probe_thread_counts({1, 4, 64}, [0, 1, 2, 3, 4, 5, 6, 7]) == [1, 4, 8]
    assert probe_thread_counts({2}, [3]) == [1]


def test_a_lower_peak_on_more_threads_is_noted():
    notes = busy_notes({"fp32": {"1": 100.0, "2": 60.0}, "bf16": {"1": 200.0, "2": 390.0}})
    assert len(notes) == 1 and notes[0].startswith("fp32: 60.0 GFLOP/s on 2 threads is below 100.0 on 1")


def test_peak_lookup_needs_the_same_precision_and_thread_count():
    peak = {"gflops": {"fp32": {"1": 100.0, "2": 190.0}}}
    assert roofline.peak_gflops(peak, "fp32", 2) == 190.0
    assert roofline.peak_gflops(peak, "fp32", 4) is None
    assert roofline.peak_gflops(peak, "int8", 1) is None and roofline.peak_gflops(None, "fp32", 1) is None
    gflops = roofline.achieved_gflops(22_300_000_000, 262.0)
    assert gflops == pytest.approx(85.1, abs=0.1)
    assert roofline.percent_of_peak(gflops, 95.0) == pytest.approx(100 * gflops / 95.0)


def test_a_resumed_run_keeps_its_first_probe(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    first = {"gflops": {"fp32": {"1": 1.0}}, "errors": []}
    run_dir.create({"schema": 1, "peak": first})
    assert record_peak(run_dir, cases=[]) == first
    assert run_dir.read_manifest()["peak"] == first


def test_bench_peak_measures_pinned_at_one_and_all_cpus():
    result = bench_cli("peak", "--json")
    assert result.returncode == 0, result.stderr
    peak = json.loads(result.stdout)
    cpus = sorted(os.sched_getaffinity(0))
    counts = {"1", str(len(cpus))}
    assert set(peak["gflops"]["fp32"]) == counts and all(v > 0 for v in peak["gflops"]["fp32"].values())
    from bench.run.cpus import pick_cpus
    from bench.topology import available_cpus

    assert peak["cpus"] == {t: pick_cpus(int(t), available_cpus()) for t in counts}  # the CPUs cases get
    assert peak["torch"] and peak["errors"] == []


def test_a_rate_over_the_peak_and_a_padding_skipping_backend_are_flagged_and_int8_is_mixed():
    from bench.report.roofline import mixed, rating_notes

    plain = {"precision": "fp32", "backend_type": "pytorch", "padding_ratio": 0.3}
    assert rating_notes(plain, 80.0) == []
    assert rating_notes(plain, 104.0)[0].startswith("104% of the peak is impossible")
    skipping = {"precision": "fp32", "backend_type": "bettertransformer", "padding_ratio": 0.3}
    assert rating_notes(skipping, 50.0) == ["FLOPs counted on the padded shape; this backend skips padding, so its rate reads high"]
    assert rating_notes({**skipping, "padding_ratio": 0.0}, 50.0) == []
    assert mixed({"precision": "int8"}) and not mixed({"precision": "bf16"})


def test_a_run_probes_only_what_this_cpu_runs_natively_or_the_run_measures(tmp_path, monkeypatch):
    """On AVX2 (faked) with only fp32 cases: bf16 and int8 are not probed, and the peak says why."""
    from types import SimpleNamespace

    from bench.cpu import FAKE_FLAGS_VAR

    monkeypatch.setenv(FAKE_FLAGS_VAR, "avx2,fma")
    run_dir = RunDir(tmp_path / "run")
    run_dir.create({"schema": 1})
    case = SimpleNamespace(threads=1, backend_type="pytorch", precision="fp32", backend_options={})
    peak = record_peak(run_dir, cases=[case])
    assert list(peak["gflops"]) == ["fp32"] and sorted(peak["skipped"]) == ["bf16", "int8"]
    assert peak["skipped"]["bf16"] == "this CPU has no AVX512_BF16 or AMX-BF16 and the run measures no bf16 case"
    assert "bf16 not probed: this CPU has no AVX512_BF16" in summary(peak)
