"""The openvino backend: its cache key, and real runs of bert-tiny through the runner in real workers."""

import json

import pytest

from backend_jobs import check_tier_row, expected_exit, job_of, support_here
from bench.backends.openvino.ir import IrArtifacts
from bench.backends.openvino.runtime import OpenvinoOptions
from bench.results.rows import preparation_ms
from conftest import bench_cli, write_suite


def key(precision="fp32", seq_len=128, batch_size=1, threads=1, **options):
    job = job_of("openvino", precision=precision, seq_len=seq_len, batch_size=batch_size, threads=threads)
    artifacts = IrArtifacts(job, OpenvinoOptions(**options))
    return artifacts.parts(artifacts.kind())


def test_fp32_and_bf16_share_one_ir_and_int8_modes_each_have_their_own():
    assert key(precision="fp32") == key(precision="bf16")
    keys = [key(precision="fp32"), key(precision="int8"), key(precision="int8", int8_mode="static")]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == 3


def test_the_key_ignores_shape_threads_and_runtime_options_but_not_what_changes_the_file():
    base = key()
    assert key(seq_len=384, batch_size=8, threads=2, static_shape=True, compiled_cache=True, call="compiled") == base
    assert key(calibration_samples=32) == base  # calibration only matters to the static int8 IR
    static = key(precision="int8", int8_mode="static")
    assert key(precision="int8", int8_mode="static", calibration_samples=32) != static
    assert {"openvino", "optimum-intel", "nncf", "optimum", "transformers", "torch"} <= set(base["versions"])


def test_an_unknown_int8_mode_is_refused_with_the_field_named(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace("options: {int8_mode: static", "options: {int8_mode: dynamic"))
    result = bench_cli("validate", suite)
    assert result.returncode == 2
    message = "backends[2].options.int8_mode: expected 'weights' or 'static', got 'dynamic'"
    assert message in result.stdout + result.stderr


SUITE = """\
name: ov
defaults:
  seq_lens: [16]
  batch_sizes: [2]
  threads: [1]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 1, timeout: 300}
  # static int8 of a 2-layer random model, calibrated on synthetic inputs, lands near the default int8 bound (0.2
  # against 0.18): this test is about the IR cache and the precision hints; the gate has tests of its own
  tolerances: {int8: {max_relative_error: 0.3}}
models:
  - name: tiny
    config: bert-tiny
    task: text-classification
backends:
  - name: ov
    type: openvino
    options: {compiled_cache: true}
    precisions: [fp32, bf16, int8]
  - name: ov2
    type: openvino
    threads: [2]
  - name: ovstatic
    type: openvino
    options: {int8_mode: static, static_shape: true}
    precisions: [int8]
"""


OV_BF16 = support_here("openvino", "bf16")
BF16_HINT = "f32" if OV_BF16.tier == "kept fp32" else "bf16"
"""What OpenVINO reports for a bf16 hint on this CPU: bf16 where it runs bf16 (natively, or emulated on AVX-512),
f32 where it keeps fp32 (no AVX-512 BW/VL/DQ nor AVX-NE-CONVERT). The runs measure emulated bf16 (--emulated)."""
KEPT_WARNING = "asked OpenVINO for INFERENCE_PRECISION_HINT=bf16, it reports f32"


def rows_of(run_dir):
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {(r["backend"], r["precision"]): r for r in rows}


@pytest.mark.slow
def test_fp32_bf16_int8_run_checked_and_a_second_run_hits_both_caches(tmp_path):
    suite = write_suite(tmp_path, SUITE)
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}  # starts empty, whatever ran before in this session
    result = bench_cli("run", suite, "--out", tmp_path / "first", "--no-report", "--no-peak", "--emulated", env=cache)
    first = rows_of(tmp_path / "first")
    assert result.returncode == expected_exit(first.values()), result.stdout + result.stderr
    assert len(first) == 5
    for key, row in first.items():
        assert row["status"] == "ok" and row["accuracy"]["passed"], row["reason"] or row["accuracy"]
        assert row["effective"]["threads"] == row["threads"] == row["effective"]["backend"]["INFERENCE_NUM_THREADS"]
        assert row["effective"]["backend"]["NUM_STREAMS"] == 1
        said = [w for w in row["warnings"] if w.startswith("asked") or "OpenVINO" in w]
        assert said == ([KEPT_WARNING] if key == ("ov", "bf16") and BF16_HINT == "f32" else []), row["warnings"]
        assert row["details"]["model_bytes"] > 0 and row["timings_ms"]["compile_ms"] > 0
        capabilities = row["effective"]["cpu_view"]["openvino"]["optimization_capabilities"]
        assert ("BF16" in capabilities) == (OV_BF16.tier != "kept fp32"), capabilities
    check_tier_row(first["ov", "bf16"], "openvino")
    hints = {k: r["effective"]["backend"]["INFERENCE_PRECISION_HINT"] for k, r in first.items()}
    assert hints == {("ov", "fp32"): "f32", ("ov", "bf16"): BF16_HINT, ("ov", "int8"): "f32",
                     ("ov2", "fp32"): "f32", ("ovstatic", "int8"): "f32"}  # fmt: skip
    assert first["ov", "fp32"]["accuracy"]["max_abs_diff"] <= 1e-5
    fp32, int8 = first["ov", "fp32"], first["ov", "int8"]
    assert fp32["details"]["cache"] == "miss" and "convert_ms" in fp32["timings_ms"]
    assert fp32["details"]["compiled_from_cache"] is ("built_ahead_on" in fp32["details"])  # its build compiled it
    assert "compiled_from_cache" not in first["ov2", "fp32"]["details"]  # ov2 does not use the compiled cache
    assert first["ov", "bf16"]["details"]["cache"] == first["ov2", "fp32"]["details"]["cache"] == "hit"
    assert int8["details"]["cache"] == "miss" and int8["details"]["fp32_ir_cache"] == "hit"
    assert "quantize_ms" in int8["timings_ms"] and "convert_ms" not in int8["timings_ms"]
    assert int8["details"]["model_bytes"] < fp32["details"]["model_bytes"] / 2
    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" in int8["effective"]["backend"]
    assert first["ovstatic", "int8"]["details"]["static_shape"] == [2, 16]

    damaged = next((tmp_path / "cache").glob("artifacts/openvino-tiny-int8-weights-*/openvino_model.bin"))
    damaged.write_bytes(damaged.read_bytes()[:100])
    result = bench_cli(
        "run", suite, "--out", tmp_path / "second", "--no-report", "--no-peak",
        "--filter", "backend=ov", "--filter", "precision=fp32", "--filter", "precision=int8", env=cache,
    )  # fmt: skip
    second = rows_of(tmp_path / "second")
    assert result.returncode == expected_exit(second.values()), result.stdout + result.stderr
    assert len(second) == 2 and second["ov", "fp32"]["details"]["cache"] == "hit"
    assert not {"convert_ms", "torch_load_ms", "quantize_ms"} & set(second["ov", "fp32"]["timings_ms"])
    assert second["ov", "fp32"]["details"]["compiled_from_cache"] is True
    assert second["ov", "fp32"]["timings_ms"]["prepare"] < preparation_ms(fp32) / 2
    assert second["ov", "int8"]["details"]["cache"].startswith("rebuilt: openvino_model.bin has 100 bytes")
    assert all(r["status"] == "ok" and r["accuracy"]["passed"] for r in second.values())


CALLS_SUITE = SUITE.split("backends:")[0].replace("name: ov", "name: ov-calls") + """\
backends:
  - name: ov
    type: openvino
  - name: ov-compiled
    type: openvino
    options: {call: compiled}
    precisions: [fp32, bf16]
"""


@pytest.mark.slow
def test_the_bare_compiled_model_is_timed_on_the_same_compile_and_the_row_says_so(tmp_path):
    suite = write_suite(tmp_path, CALLS_SUITE)
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    result = bench_cli("run", suite, "--out", tmp_path / "run", "--emulated", env=cache)
    rows = rows_of(tmp_path / "run")
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    assert set(rows) == {("ov", "fp32"), ("ov-compiled", "fp32"), ("ov-compiled", "bf16")}
    for (backend, precision), row in rows.items():
        assert row["status"] == "ok" and row["accuracy"]["passed"], row["reason"] or row["accuracy"]
        assert row["effective"]["backend"]["call"] == ("compiled" if backend == "ov-compiled" else "optimum")
        hint = row["effective"]["backend"]["INFERENCE_PRECISION_HINT"]
        assert hint == {"fp32": "f32", "bf16": BF16_HINT}[precision]
        assert row["precision_mode"]["label"] == {"f32": "fp32", "bf16": "bf16 hint"}[hint]
        check_tier_row(row, "openvino")
    assert "call" not in rows["ov", "fp32"]["backend_options"]
    optimum, compiled = rows["ov", "fp32"]["accuracy"], rows["ov-compiled", "fp32"]["accuracy"]
    assert optimum["outputs"] == compiled["outputs"]  # one IR compiled with one configuration: the same numbers
    assert rows["ov-compiled", "fp32"]["details"]["cache"] == "hit"
