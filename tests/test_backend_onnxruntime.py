"""The onnxruntime backend: its cache keys, its input feed, and real runs of bert-tiny in real workers."""

import json

import numpy as np
import pytest

from backend_jobs import expected_exit, job_of
from bench.backends.feed import graph_feed
from bench.cpu import FAKE_FLAGS_VAR, cpu_flags, int8_recipe
from bench.backends.onnxruntime.artifacts import OnnxArtifacts
from bench.backends.onnxruntime.runtime import OnnxruntimeOptions
from bench.plan.matrix import case_id
from conftest import bench_cli, write_suite


def key(precision="fp32", seq_len=128, batch_size=1, threads=1, **options):
    job = job_of("onnxruntime", precision=precision, seq_len=seq_len, batch_size=batch_size, threads=threads)
    artifacts = OnnxArtifacts(job, OnnxruntimeOptions(**options))
    return artifacts.parts(artifacts.kind())


def test_one_export_serves_every_shape_and_thread_count():
    assert key(seq_len=384, batch_size=8, threads=2) == key()
    assert {"optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch"} == set(key()["versions"])
    assert key()["model"] == "abc" and key()["task"] == "text-classification"


def test_each_option_changes_only_the_artifact_it_shapes():
    export, int8 = key(), key(precision="int8")
    assert export["artifact"] == "export" and int8["artifact"] == "int8"
    assert int8["quantization"] == {"preset": int8_recipe(cpu_flags()), "chosen_by": "cpu", "is_static": False,
                                    "per_channel": True, "reduce_range": int8_recipe(cpu_flags()) != "avx512_vnni"}
    assert key(per_channel=False) == export  # fp32 is not quantized
    assert key(precision="int8", per_channel=False) != int8
    assert key(precision="int8", optimization_level="O2") == int8  # int8 is quantized from the plain export
    assert key(optimization_level="O2")["artifact"] == "optimized-O2"
    assert key(call="session") == export and key(precision="int8", call="iobinding") == int8


@pytest.mark.parametrize(
    ("flags", "preset", "reduce_range"),
    [("avx2,fma", "avx2", True), ("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq", "avx512", True),
     ("avx2,avx512f,avx512_vnni", "avx512_vnni", False), ("avx2,avx_vnni", "avx512_vnni", False)],
)  # fmt: skip
def test_the_int8_recipe_follows_the_cpu_unless_the_suite_forces_one(monkeypatch, flags, preset, reduce_range):
    monkeypatch.setenv(FAKE_FLAGS_VAR, flags)
    chosen = key(precision="int8")["quantization"]
    assert (chosen["preset"], chosen["reduce_range"], chosen["chosen_by"]) == (preset, reduce_range, "cpu")
    forced = key(precision="int8", int8_recipe="avx512_vnni")["quantization"]
    assert (forced["preset"], forced["reduce_range"], forced["chosen_by"]) == ("avx512_vnni", False, "suite")
    assert (forced == chosen) is False  # each recipe is its own cached artifact


def test_the_call_is_left_out_of_a_case_at_its_default_so_its_id_is_unchanged():
    before = {"optimization_level": None, "per_channel": True}  # a case's options before `call` existed
    assert OnnxruntimeOptions().model_dump() == OnnxruntimeOptions.model_validate(before).model_dump() == before
    assert OnnxruntimeOptions(call="iobinding").model_dump() == {**before, "call": "iobinding"}
    params = job_of("onnxruntime").case.to_dict()
    assert case_id(params) == case_id({**params, "backend_options": before})


def test_the_feed_adds_the_inputs_the_graph_declares():
    ids = np.array([[5, 6, 7], [8, 9, 0]], dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    made = graph_feed({"input_ids": 0, "attention_mask": 1, "token_type_ids": 2, "position_ids": 3}, inputs, "g")
    assert list(made) == ["input_ids", "attention_mask", "token_type_ids", "position_ids"]
    assert made["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert made["position_ids"].tolist() == [[0, 1, 2], [0, 1, 2]] and made["position_ids"].dtype == np.int64
    assert list(graph_feed({"input_ids": 0, "attention_mask": 1}, inputs, "g")) == ["input_ids", "attention_mask"]
    with pytest.raises(ValueError, match="the ONNX graph wants an input 'pixel_values'"):
        graph_feed({"pixel_values": 0}, inputs, "the ONNX graph")


SUITE = """\
name: ort
defaults:
  seq_lens: [16]
  batch_sizes: [2]
  padding_ratios: [0.25]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 1, timeout: 300}
models:
  - name: tiny
    config: bert-tiny
    task: text-classification
backends:
  - name: ort
    type: onnxruntime
    threads: [1]
  - name: ort-o2
    type: onnxruntime
    options: {optimization_level: O2}
    threads: [1]
  - name: ort-int8
    type: onnxruntime
    options: {optimization_level: O2}
    precisions: [int8]
    threads: [2]
"""
BUILD_STEPS = {"torch_load_ms", "export_ms", "optimize_ms", "quantize_ms"}


def test_o4_and_misspelled_options_are_refused_with_the_field_named(tmp_path):
    o2 = "{optimization_level: O2}\n    threads"
    suite = write_suite(tmp_path, SUITE.replace(o2, "{optimization_level: O4}\n    threads"))
    result = bench_cli("validate", suite)
    assert result.returncode == 2
    assert "backends[1].options.optimization_level: expected 'O1', 'O2', 'O3' or null, got 'O4'" in result.stderr
    suite = write_suite(tmp_path, SUITE.replace(o2, "{per_chanel: true}\n    threads"))
    result = bench_cli("validate", suite)
    assert result.returncode == 2 and "backends[1].options.per_chanel: unknown field" in result.stderr


def run(suite, out, cache, *filters):
    args = [f"--filter={f}" for f in filters]
    result = bench_cli("run", suite, "--out", out, "--no-report", "--no-peak", *args, env=cache)
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    return rows


def check_row(row):
    assert row["status"] == "ok" and row["accuracy"]["passed"], row["reason"] or row["accuracy"]
    reported = row["effective"]["backend"]
    assert row["effective"]["threads"] == row["threads"] == reported["intra_op_num_threads"]
    assert reported["inter_op_num_threads"] == 1 and reported["execution_mode"] == "ORT_SEQUENTIAL"
    assert reported["graph_optimization_level"] == "ORT_ENABLE_ALL" and reported["intra_op_spinning"] == "1"
    assert reported["providers"] == ["CPUExecutionProvider"] and reported["use_io_binding"] is False
    assert row["details"]["model_bytes"] > 0 and row["timings_ms"]["session_ms"] > 0


@pytest.mark.slow
def test_fp32_optimized_and_int8_run_checked_then_hit_the_cache_or_rebuild_a_damaged_entry(tmp_path):
    suite = write_suite(tmp_path, SUITE)
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}  # starts empty, whatever ran before in this session
    first = run(suite, tmp_path / "first", cache)
    assert set(first) == {"ort", "ort-o2", "ort-int8"}
    for row in first.values():
        check_row(row)
    fp32, optimized, int8 = first["ort"], first["ort-o2"], first["ort-int8"]
    assert fp32["accuracy"]["max_abs_diff"] <= 1e-5 and optimized["accuracy"]["max_abs_diff"] <= 1e-5
    assert fp32["details"]["cache"] == "miss" and {"torch_load_ms", "export_ms"} <= set(fp32["timings_ms"])
    for row in (optimized, int8):
        assert (row["details"]["cache"], row["details"]["export_cache"]) == ("miss", "hit")
    assert "optimize_ms" in optimized["timings_ms"] and "quantize_ms" in int8["timings_ms"]
    assert not {"torch_load_ms", "export_ms"} & (set(optimized["timings_ms"]) | set(int8["timings_ms"]))
    assert int8["details"]["model_bytes"] < fp32["details"]["model_bytes"] / 2
    assert [w for w in int8["warnings"] if "optimization_level O2 is not applied to int8" in w]
    recipe = int8_recipe(cpu_flags())  # the one for this CPU: it passes the gate where the VNNI one saturates
    assert int8["details"]["quantization"]["preset"] == recipe and int8["cpu_support"]["tier"] == "native"
    assert int8["precision_mode"]["label"] == f"int8 dynamic ({recipe})"

    damaged = next((tmp_path / "cache").glob("artifacts/onnxruntime-tiny-int8-*/model.onnx"))
    damaged.write_bytes(damaged.read_bytes()[:100])
    listed = bench_cli("cache", "list", env=cache)
    assert listed.returncode == 1 and "3 artifact(s)" in listed.stdout
    assert "model.onnx has 100 bytes, the record says" in listed.stdout

    second = run(suite, tmp_path / "second", cache)
    for row in second.values():
        check_row(row)
    for row in (second["ort"], second["ort-o2"]):
        assert row["details"]["cache"] == "hit" and not BUILD_STEPS & set(row["timings_ms"])
    rebuilt = second["ort-int8"]
    assert rebuilt["details"]["cache"].startswith("rebuilt: model.onnx has 100 bytes, the record says")
    assert rebuilt["details"]["export_cache"] == "hit" and "quantize_ms" in rebuilt["timings_ms"]
    assert bench_cli("cache", "list", "--verify", env=cache).returncode == 0

    cleared = bench_cli("cache", "clear", env=cache)
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 3 artifact(s)")
    assert "0 artifact(s)" in bench_cli("cache", "list", env=cache).stdout


CALLS_SUITE = SUITE.split("backends:")[0].replace("name: ort", "name: ort-calls") + """\
backends:
  - name: ort
    type: onnxruntime
  - name: ort-session
    type: onnxruntime
    options: {call: session}
  - name: ort-iobinding
    type: onnxruntime
    options: {call: iobinding}
    precisions: [fp32, int8]
"""


@pytest.mark.slow
def test_the_bare_session_and_io_binding_time_the_same_session_and_say_which_call_was_timed(tmp_path):
    suite = write_suite(tmp_path, CALLS_SUITE)
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    result = bench_cli("run", suite, "--out", tmp_path / "run", "--no-report", "--no-peak", env=cache)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    rows = {(r["backend"], r["precision"]): r for r in rows}
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    assert set(rows) == {("ort", "fp32"), ("ort-session", "fp32"), ("ort-iobinding", "fp32"), ("ort-iobinding", "int8")}
    for (backend, precision), row in rows.items():
        assert row["status"] == "ok" and row["accuracy"]["passed"], row["reason"] or row["accuracy"]
        assert row["effective"]["backend"]["call"] == {"ort": "optimum"}.get(backend, backend.removeprefix("ort-"))
        assert row["effective"]["backend"]["use_io_binding"] is (backend == "ort-iobinding")
        recipe = int8_recipe(cpu_flags())
        assert row["precision_mode"]["label"] == {"fp32": "fp32", "int8": f"int8 dynamic ({recipe})"}[precision]
    assert "call" not in rows["ort", "fp32"]["backend_options"]
    assert rows["ort-session", "fp32"]["backend_options"]["call"] == "session"
    fp32 = [rows[b, "fp32"]["accuracy"]["outputs"] for b in ("ort", "ort-session", "ort-iobinding")]
    assert fp32[0] == fp32[1] == fp32[2]  # one graph, one session's settings: the same numbers whatever the call
    assert rows["ort-session", "fp32"]["details"]["cache"] == rows["ort-iobinding", "fp32"]["details"]["cache"] == "hit"
