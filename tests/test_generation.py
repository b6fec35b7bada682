"""Text generation cases: the plan, the per-token clock, the token-count check, token accuracy, and real runs of a
2-layer GPT-2 (random weights) through `bench run` in real workers."""

import csv
import json

import numpy as np
import pytest

from backend_jobs import expected_exit
from bench.errors import SuiteError
from bench.measure.generation import (
    MARGINS,
    PREFILL,
    TOKENS,
    compare_generation,
    compare_tokens,
    figures,
    merge_figures,
    top1_margins,
)
from bench.plan.matrix import case_id, dropped_combinations, expand
from bench.plan.suite import load_suite
from conftest import bench_cli, write_suite

SUITE = """\
name: gen
defaults:
  batch_sizes: [1]
  threads: [1]
  precisions: [fp32]
  generate: {prompt_lens: [16], new_tokens: [8]}
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 300}
models:
  - name: tiny
    config: gpt2
    task: text-generation
    config_overrides: {n_layer: 2, n_embd: 64, n_head: 2, n_positions: 128, vocab_size: 2048}
backends:
  - name: eager
    type: pytorch
    precisions: [fp32, bf16]
  - name: sdpa
    type: pytorch
    options: {attn_implementation: sdpa}
"""


# --- the plan ---------------------------------------------------------------------------------------------------


def test_a_generate_block_makes_generation_cases_at_its_prompt_lengths(tmp_path):
    text = SUITE.replace("prompt_lens: [16], new_tokens: [8]", "prompt_lens: [16, 32], new_tokens: [4, 8]")
    suite = load_suite(write_suite(tmp_path, text))[0]
    cases = expand(suite)
    assert {(c.seq_len, c.new_tokens) for c in cases} == {(16, 4), (16, 8), (32, 4), (32, 8)}
    assert all(c.generating for c in cases)
    assert {(c.precision, c.tolerance["top1_margin"]) for c in cases} == {("fp32", 0.01), ("bf16", 0.75)}
    assert not any("min_token_agreement" in c.tolerance for c in cases)  # gated only when a suite sets it
    case = next(c for c in cases if c.backend == "sdpa" and c.seq_len == 32 and c.new_tokens == 8)
    assert case.case_id.startswith("tiny-sdpa-fp32-s32-n8-b1-t1-")
    assert "generate" not in case.model_entry
    assert case.baseline_key[-1] == 8 and case.reference().new_tokens == 8


def test_a_forward_pass_case_keeps_its_id(tmp_path):
    text = SUITE.replace("  generate: {prompt_lens: [16], new_tokens: [8]}\n", "")
    suite = load_suite(write_suite(tmp_path, text))[0]
    cases = expand(suite)
    assert cases and not any(c.generating for c in cases)
    for case in cases:
        params = {k: v for k, v in case.to_dict().items() if k not in ("case_id", "new_tokens")}
        assert case.case_id == case_id(params) == case_id({**params, "new_tokens": 0})
        assert "-n" not in case.case_id.split("-b")[0]


def test_backends_without_generation_are_left_out_and_said_so(tmp_path):
    text = SUITE + "  - name: traced\n    type: torchscript\n"
    suite = load_suite(write_suite(tmp_path, text))[0]
    assert not any(c.backend == "traced" for c in expand(suite))
    notes = dropped_combinations(suite)
    assert any("traced (torchscript) does not support text generation" in n and "unsupported" in n for n in notes)


def test_generate_is_refused_on_another_task(tmp_path):
    text = SUITE.replace("  generate: {prompt_lens: [16], new_tokens: [8]}\n", "").replace(
        "    task: text-generation\n", "    task: feature-extraction\n    generate: {new_tokens: [8]}\n"
    )
    with pytest.raises(SuiteError) as error:
        load_suite(write_suite(tmp_path, text))
    assert "expected generate only with task text-generation" in str(error.value)


def test_prompt_and_new_tokens_must_fit_the_positions(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace("new_tokens: [8]", "new_tokens: [120]"))
    result = bench_cli("validate", suite)
    assert result.returncode == 2 and "got 16 + 120 new tokens" in result.stderr, result.stderr


# --- figures and accuracy, in this process ----------------------------------------------------------------------


def test_prefill_decode_and_tail_sum_to_the_call():
    from bench.measure.generation import CallRecord, raw_timings

    records = [CallRecord(1_000, [5_000, 5_800, 6_900], 7_000), CallRecord(10_000, [13_000, 13_500, 14_100], 14_150)]
    token_ms, tail_ms = raw_timings(records)
    assert token_ms[0] == [0.004, 0.0008, 0.0011] and tail_ms[0] == pytest.approx(0.0001)
    entry = figures(token_ms, tail_ms, batch_size=2)
    for call, tail, record in zip(token_ms, tail_ms, records):
        assert sum(call) + tail == pytest.approx((record.end_ns - record.start_ns) / 1e6, abs=1e-9)
    assert entry["new_tokens"] == 3 and entry["calls"] == 2
    assert entry["ttft_ms"]["median"] == pytest.approx(0.0035)
    assert entry["decode_ms_per_token"]["min"] == pytest.approx(0.0005)
    assert entry["e2e_ms"]["median"] == pytest.approx((0.006 + 0.00415) / 2)
    assert entry["tokens_per_s"] == pytest.approx(2 * 3 / (entry["e2e_ms"]["median"] / 1000))
    pooled = merge_figures([entry, entry], batch_size=2)
    assert pooled["calls"] == 4 and pooled["ttft_ms"]["median"] == entry["ttft_ms"]["median"]


def reference_of(tokens, margins=None):
    tokens = np.asarray(tokens, np.int64)
    return {TOKENS: tokens, MARGINS: np.ones(tokens.shape, np.float32) if margins is None else margins}


FP32 = {"top1_margin": 0.01}


def test_a_divergence_where_the_reference_was_decisive_fails_and_says_where():
    ref = reference_of([[5, 6, 7, 8], [1, 2, 3, 4]])
    same = compare_tokens([[5, 6, 7, 8], [1, 2, 3, 4]], ref, "fp32", FP32)
    assert same["passed"] and same["token_agreement"] == 1.0 and same["first_divergence"] is None
    off = compare_tokens([[5, 6, 9, 9], [1, 2, 3, 4]], ref, "fp32", FP32)
    assert not off["passed"] and off["first_divergence"] == 2 and off["first_divergence_per_sequence"] == [2, None]
    assert off["token_agreement"] == 0.75 and off["prefix_agreement"] == pytest.approx((0.5 + 1) / 2)
    assert off["decisive_divergence"] == 2 and off["argmax_agreement"] == 0.75 and off["relative_error"] is None
    assert off["failures"] == [
        "token 2 of sequence 0 differs from eager fp32's where its choice was decisive (top-1 margin 1.00 std, at least"
        " 0.01)"
    ]


def test_a_divergence_at_a_near_tie_is_counted_not_judged_and_later_tokens_are_not_judged():
    margins = np.array([[2.0, 2.0, 0.005, 3.0]], np.float32)  # position 2 a near-tie, then decisive again
    ref = reference_of([[1, 2, 3, 4]], margins)
    tied = compare_tokens([[1, 2, 9, 9]], ref, "fp32", FP32)
    assert tied["passed"] and tied["first_divergence"] == 2 and tied["decisive_divergence"] is None
    assert tied["token_agreement"] == 0.5 and tied["reference_margin_at_divergence"] == pytest.approx(0.005)
    assert not compare_tokens([[1, 9, 9, 9]], ref, "bf16", {"top1_margin": 0.75})["passed"]  # 2.0 std there


def test_the_prefill_logits_are_gated_as_outputs_are_and_fail_the_case_with_equal_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 50)).astype(np.float32)
    reference = {**reference_of([[1, 2, 3, 4]]), PREFILL: logits}
    close = compare_generation({TOKENS: [[1, 2, 3, 4]], PREFILL: logits * 1.001}, reference, "bf16",
                               {"max_relative_error": 0.15, "min_token_agreement": 0.5})  # fmt: skip
    assert close["passed"] and 0 < close["relative_error"] < 0.01
    assert close["outputs"][PREFILL]["relative_error"] == close["relative_error"]
    skewed = logits + rng.normal(scale=0.5, size=logits.shape).astype(np.float32)
    wrong = compare_generation({TOKENS: [[1, 2, 3, 4]], PREFILL: skewed}, reference, "fp32",
                               {"max_relative_error": 1e-4, "min_token_agreement": 1.0})  # fmt: skip
    assert not wrong["passed"] and wrong["token_agreement"] == 1.0
    assert wrong["failures"][0].startswith("prefill logits relative error")
    missing = compare_generation({TOKENS: [[1, 2, 3, 4]], PREFILL: logits[:, :10]}, reference, "fp32", {})
    assert not missing["passed"] and "prefill logits have shape [1, 10]" in missing["failures"][0]


def test_a_suite_may_gate_the_share_of_equal_tokens_too():
    ref = reference_of([[1, 2, 3, 4]], np.zeros((1, 4), np.float32))  # every position a near-tie
    assert compare_tokens([[1, 2, 9, 9]], ref, "bf16", {"top1_margin": 0.75, "min_token_agreement": 0.5})["passed"]
    low = compare_tokens([[1, 9, 9, 9]], ref, "int8", {"top1_margin": 1.0, "min_token_agreement": 0.5})
    assert not low["passed"] and low["failures"][0].startswith("token agreement 0.250 < 0.5; first divergence at token 1")
    wrong_shape = compare_tokens([[1, 2, 3]], ref, "fp32", {})
    assert not wrong_shape["passed"] and "shape [1, 3], the reference [1, 4]" in wrong_shape["failures"][0]


def test_margins_are_top1_minus_top2_in_standard_deviations_of_finite_scores():
    scores = np.array([[[0.0, 1.0, 3.0, -np.inf]]])
    std = np.std([0.0, 1.0, 3.0])
    assert top1_margins(scores)[0, 0] == pytest.approx(2.0 / std, rel=1e-6)


# --- the clock on a real generate, in this process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=500, n_positions=64, n_embd=32, n_layer=2, n_head=2, eos_token_id=3, bos_token_id=3)
    return GPT2LMHeadModel(config).eval()


def prompt(batch=1, length=8):
    from bench.measure.inputs import make_inputs

    return make_inputs(batch, length, 500, None, 0.0, 0)


def test_the_clock_stamps_every_token_and_the_stamps_sum_to_the_call(tiny_model):
    from bench.measure.generation import GenerationCall, raw_timings

    call = GenerationCall(tiny_model, prompt(batch=2), 6, None)
    for _ in range(3):
        call()
    assert call.tokens().shape == (2, 6) and call.tokens().dtype == np.int64
    for record in call.records:
        assert len(record.stamps_ns) == 6
        assert record.start_ns < record.stamps_ns[0] and record.stamps_ns == sorted(record.stamps_ns)
        assert record.stamps_ns[-1] <= record.end_ns
    token_ms, tail_ms = raw_timings(call.records)
    for call_ms, tail, record in zip(token_ms, tail_ms, call.records):
        assert len(call_ms) == 6
        assert abs(sum(call_ms) + tail - (record.end_ns - record.start_ns) / 1e6) < 1e-6  # 1 ns: the timer's unit


def test_a_generate_that_stops_early_fails_with_the_count(tiny_model):
    from bench.measure.generation import GenerationCall, GenerationCountError, stop_after

    call = GenerationCall(tiny_model, prompt(), 6, None, stopping=[stop_after(8, 3)])
    with pytest.raises(GenerationCountError, match="generate produced 3 new tokens in 3 steps, not the 6 asked"):
        call()


def test_a_diverging_processor_changes_the_tokens_from_its_position(tiny_model):
    from bench.measure.generation import GenerationCall, diverge_at

    reference = GenerationCall(tiny_model, prompt(), 6, None).reference()
    call = GenerationCall(tiny_model, prompt(), 6, None, processors=[diverge_at(8, 2)])
    call()
    result = compare_tokens(call.tokens(), reference, "fp32", FP32)
    assert not result["passed"] and result["first_divergence"] == 2 and result["decisive_divergence"] == 2
    assert result["reference_margin_at_divergence"] is not None and reference[MARGINS].shape == (1, 6)
    again = GenerationCall(tiny_model, prompt(), 6, None)
    again()
    assert compare_tokens(again.tokens(), reference, "fp32", FP32)["passed"]


# --- real runs --------------------------------------------------------------------------------------------------


def run(suite, out, env=None, *filters):
    """bf16 is measured on every CPU (--emulated where it lacks bf16 instructions): these tests are about generate."""
    result = bench_cli("run", suite, "--out", out, "--emulated", *(f"--filter={f}" for f in filters), env=env)
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = {(r["backend"], r["precision"]): r for r in map(json.loads, lines)}
    return result, rows


def check_generation(row, new_tokens=8, accurate=True):
    assert row["status"] == "ok", row["reason"]
    assert row["accuracy"]["passed"] or not accurate, row["accuracy"]
    assert 0 <= row["accuracy"]["token_agreement"] <= 1 and row["accuracy"]["tokens_compared"] == new_tokens
    assert row["new_tokens"] == new_tokens and row["seq_len"] == 16
    generation = row["generation"]
    assert generation["prompt_len"] == 16 and generation["new_tokens"] == new_tokens
    assert generation["calls"] == len(row["samples_ms"]) and len(generation["token_ms"]) == generation["calls"]
    for call, tail, sample in zip(generation["token_ms"], generation["tail_ms"], row["samples_ms"]):
        assert len(call) == new_tokens and all(value > 0 for value in call) and tail >= 0
        assert sum(call) + tail <= sample + 1e-3  # the loop's own clock reads are around the call's
    for key in ("ttft_ms", "decode_ms_per_token", "e2e_ms"):
        assert 0 < generation[key]["median"] <= generation[key]["p90"]
    assert generation["decode_tokens_per_s"] > 0 and generation["tokens_per_s"] > 0
    assert row["throughput"]["tokens_per_s"] == pytest.approx(
        row["batch_size"] * new_tokens / (row["latency_ms"]["median"] / 1000)
    )


@pytest.mark.slow
def test_eager_sdpa_and_bf16_generate_checked_against_eager_fp32(tmp_path):
    suite = write_suite(tmp_path, SUITE)
    result, rows = run(suite, tmp_path / "out")
    accurate = all(row["accuracy"]["passed"] for row in rows.values() if row["status"] == "ok")
    expected = max(expected_exit(rows.values()), 0 if accurate else 1)
    assert result.returncode == expected, result.stdout + result.stderr
    assert set(rows) == {("eager", "fp32"), ("eager", "bf16"), ("sdpa", "fp32")}
    for row in rows.values():
        check_generation(row, accurate=row["precision"] == "fp32")  # bf16 may flip a near-tie of random weights
    assert rows["eager", "fp32"]["accuracy"]["token_agreement"] == 1.0
    assert rows["sdpa", "fp32"]["accuracy"]["first_divergence"] is None
    assert rows["eager", "bf16"]["precision_mode"]["how"] == "autocast"
    shown = bench_cli("show", tmp_path / "out")
    assert "+8 new tokens" in shown.stdout and "TTFT" in shown.stdout, shown.stdout + shown.stderr


@pytest.mark.slow
def test_an_early_stop_fails_its_case_and_a_wrong_backend_fails_accuracy(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace("precisions: [fp32, bf16]", "precisions: [fp32]"))
    env = {"BENCH_GENERATION_FAULT": "tiny-sdpa-fp32:stop=3"}
    result, rows = run(suite, tmp_path / "stop", env)
    assert result.returncode == 1
    stopped = rows["sdpa", "fp32"]
    assert stopped["status"] == "error" and "GenerationCountError" in stopped["reason"]
    assert "generate produced 3 new tokens in 3 steps, not the 8 asked" in stopped["reason"]
    check_generation(rows["eager", "fp32"])  # the reference and the baseline were not touched

    env = {"BENCH_GENERATION_FAULT": "tiny-sdpa-fp32:diverge=5"}
    result, rows = run(suite, tmp_path / "diverge", env)
    assert result.returncode == 1
    wrong = rows["sdpa", "fp32"]
    assert wrong["status"] == "ok" and not wrong["accuracy"]["passed"]
    assert wrong["accuracy"]["first_divergence"] == 5 and wrong["accuracy"]["token_agreement"] < 1
    assert wrong["accuracy"]["decisive_divergence"] == 5
    assert wrong["accuracy"]["failures"][0].startswith("token 5 differs from eager fp32's where its choice was decisive")


RUNTIMES = """\
  - name: ort
    type: onnxruntime
    precisions: [fp32, int8]
  - name: ov
    type: openvino
    precisions: [fp32, bf16, int8]
"""


@pytest.mark.slow
def test_onnxruntime_and_openvino_generate_with_their_kv_cache_and_reuse_their_exports(tmp_path):
    text = SUITE.replace("    precisions: [fp32, bf16]\n", "") + RUNTIMES
    suite = write_suite(tmp_path, text)
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    result, rows = run(suite, tmp_path / "first", cache)
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    assert set(rows) == {("eager", "fp32"), ("sdpa", "fp32"), ("ort", "fp32"), ("ort", "int8"), ("ov", "fp32"),
                         ("ov", "bf16"), ("ov", "int8")}  # fmt: skip
    for row in rows.values():
        check_generation(row, accurate=row["precision"] == "fp32")
        assert row["accuracy"]["outputs"]["prefill_logits"]["relative_error"] is not None
    assert rows["ov", "int8"]["precision_mode"]["weights"] == "int8"
    assert rows["ort", "fp32"]["accuracy"]["relative_error"] < 1e-4 and rows["ov", "fp32"]["accuracy"]["passed"]
    assert rows["ort", "fp32"]["details"]["cache"] == "miss" and rows["ov", "fp32"]["details"]["cache"] == "miss"
    assert list((tmp_path / "cache").glob("artifacts/onnxruntime-tiny-export-with-past-*"))
    assert list((tmp_path / "cache").glob("artifacts/openvino-tiny-fp32-with-past-*"))
    result, again = run(suite, tmp_path / "second", cache, "backend=ort", "backend=ov", "precision=fp32")
    assert set(again) == {("ort", "fp32"), ("ov", "fp32")}
    assert again["ort", "fp32"]["details"]["cache"] == "hit" and again["ov", "fp32"]["details"]["cache"] == "hit"


# --- the report and bench show, on synthetic rows ---------------------------------------------------------------


def generation_row(backend, precision, median, agreement=1.0, first=None):
    from test_report import make_row

    row = make_row("gpt", backend, precision, 32, 1, median, task="text-generation", backend_type="pytorch")
    row["case_id"] = row["case_id"].replace("-s32-", "-s32-n4-")
    token_ms = [[median * 0.4, median * 0.2, median * 0.2, median * 0.15]] * 5
    row["new_tokens"] = 4
    row["generation"] = {"prompt_len": 32, **figures(token_ms, [median * 0.05] * 5, batch_size=1)}
    passed = agreement >= (1.0 if precision == "fp32" else 0.5)
    row["accuracy"] = {
        **compare_tokens([[1, 2, 3, 4]], reference_of([[1, 2, 3, 4]]), precision, {}),
        "token_agreement": agreement, "argmax_agreement": agreement, "first_divergence": first, "passed": passed,
        "failures": [] if passed else [f"token agreement {agreement:.3f} < 1"],
    }  # fmt: skip
    return row


def test_the_report_and_show_have_a_generation_table(tmp_path):
    from bench.report import build_report
    from test_report import write_run

    rows = [generation_row("eager", "fp32", 20.0), generation_row("sdpa", "fp32", 16.0),
            generation_row("eager", "bf16", 12.0, agreement=0.75, first=3)]  # fmt: skip
    run_dir = write_run(tmp_path / "run", rows)
    written = build_report(run_dir, tmp_path / "out", formats=["md", "csv", "html"])
    md = written.markdown.read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    assert '<h2 id="text-generation">Text generation</h2>' in html and "75% (first divergence at 3)" in html
    plots = {path.name for path in (tmp_path / "out" / "plots").glob("*.png")}
    assert {"decode_rate.png", "time_to_first_token.png"} <= plots and "tokens_per_s.png" not in plots
    records = {r["backend"] + r["precision"]: r for r in csv.DictReader(written.csv.open())}
    assert float(records["sdpafp32"]["ttft_median_ms"]) == pytest.approx(6.4)
    assert records["eagerbf16"]["first_divergence"] == "3" and records["eagerbf16"]["new_tokens"] == "4"
    assert "## Text generation" in md and "| TTFT ms | decode ms/token |" in md
    sdpa = next(line for line in md.splitlines() if line.startswith("| gpt | 32 | 4 | 1 | 1 | sdpa |"))
    assert "| 6.40 | 3.20 |" in sdpa and "100%" in sdpa  # TTFT 0.4 × 16 ms, a decode step 0.2 × 16 ms
    bf16 = next(line for line in md.splitlines() if "| eager | bf16" in line and line.startswith("| gpt | 32 | 4"))
    assert "75% (first divergence at 3)" in bf16
    shown = bench_cli("show", run_dir)
    assert "TTFT" in shown.stdout and "+4 new tokens" in shown.stdout, shown.stdout
    assert "75%" in shown.stdout
    markdown = bench_cli("show", run_dir, "--format", "md")
    assert "### Text generation" in markdown.stdout


def test_only_the_backends_with_a_generate_path_declare_it():
    from bench.backends import BACKENDS

    assert {name for name, info in BACKENDS.items() if info.generates} == {
        "pytorch", "torch_compile", "onnxruntime", "openvino", "ipex", "bettertransformer",
    }  # fmt: skip


def test_rounds_pool_their_generate_calls():
    from bench.run.rounds import merge

    first, second = generation_row("sdpa", "fp32", 10.0), generation_row("sdpa", "fp32", 30.0)
    for row in (first, second):
        row["measure"] = {"rounds": 2, "min_iterations": 3}
    merged = merge([first, second])
    assert merged["generation"]["calls"] == 10 and merged["generation"]["prompt_len"] == 32
    assert merged["generation"]["token_ms"] == first["generation"]["token_ms"] + second["generation"]["token_ms"]
    assert merged["generation"]["ttft_ms"]["min"] == pytest.approx(4.0)
    assert merged["generation"]["ttft_ms"]["max"] == pytest.approx(12.0)


COMPILED = """\
  - name: compiled
    type: torch_compile
    options: {attn_implementation: sdpa}
"""


@pytest.mark.slow
def test_torch_compile_generates_with_a_static_cache_and_compiled_decode_steps(tmp_path):
    text = SUITE.replace("    precisions: [fp32, bf16]\n", "").replace("n_layer: 2", "n_layer: 1") + COMPILED
    suite = write_suite(tmp_path, text)  # one layer: inductor's compile is most of this test's time
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    result, rows = run(suite, tmp_path / "first", cache)
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    compiled = rows["compiled", "fp32"]
    check_generation(compiled)
    assert compiled["effective"]["backend"]["cache_implementation"] == "static"
    assert compiled["effective"]["backend"]["compiled"] == "decode steps"
    assert compiled["details"]["graphs_compiled"] >= 1 and compiled["details"]["recompilations"] == 0
    assert compiled["details"]["cache"] == "miss" and compiled["timings_ms"]["compile_ms"] > 0
    result, again = run(suite, tmp_path / "second", cache, "backend=compiled")
    assert again["compiled", "fp32"]["details"]["cache"] == "hit", again["compiled", "fp32"]["details"]


INTEL_SUITE = SUITE.split("backends:")[0].replace("name: gen\n", "name: gen-intel\n") + """\
  - name: tinysc
    config: tiny_starcoder_py
    task: text-generation
    config_overrides: {n_layer: 2, n_embd: 64, n_head: 2, n_positions: 128, vocab_size: 2048}
backends:
  - name: eager
    type: pytorch
  - name: ipex
    type: ipex
  - name: bt
    type: bettertransformer
"""


@pytest.mark.slow
def test_ipex_and_bettertransformer_generate_in_intel_and_optimum_declining_gpt_bigcode_is_said(tmp_path):
    from test_backends_intel import INTEL

    if not INTEL.built:
        pytest.skip(f"environment 'intel' is not built ({INTEL.python}); build it with: bench env create intel")
    result, _ = run(write_suite(tmp_path, INTEL_SUITE), tmp_path / "out")
    rows = {(r["model"], r["backend"]): r for r in map(json.loads, (tmp_path / "out/results.jsonl").open())}
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    for key in (("tiny", "ipex"), ("tinysc", "ipex"), ("tiny", "bt")):
        check_generation(rows[key])
        assert rows[key]["environment"] == "intel" and rows[key]["effective"]["backend"].get("jit") in (False, None)
    declined = rows["tinysc", "bt"]
    assert declined["status"] == "unsupported" and "gpt_bigcode" in declined["reason"]
    assert "attn_implementation: sdpa" in declined["reason"]
    shown = bench_cli("show", tmp_path / "out")
    assert "Not supported or not measured (1)" in shown.stdout, shown.stdout
