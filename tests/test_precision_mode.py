"""What a row says was computed (precision_mode) and its memory figures, from real tiny runs; the fallbacks."""

import json

from bench.measure.memory import LoopMemory
from bench.backends.precision_mode import AUTOCAST, CONVERTED, FROZEN_CASTS, HINT, NATIVE, label_of, mode, row_label
from bench.cli.table import render
from backend_jobs import support_here
from bench.backends.openvino.runtime import ONEDNN_CAPS
from bench.cpu import cpu_flags, int8_recipe
from conftest import TINY_SUITE, bench_cli, write_suite

SUITE = TINY_SUITE.split("backends:")[0] + """\
backends:
  - name: eager
    type: pytorch
    precisions: [fp32, bf16]
  - name: eager-bf16w
    type: pytorch
    options: {bf16: weights}
    precisions: [bf16]
"""


def test_a_real_run_records_bf16_weights_without_autocast_apart_from_autocast_over_fp32_weights(tmp_path):
    out = tmp_path / "run"
    result = bench_cli("run", write_suite(tmp_path, SUITE), "--out", out, "--emulated")  # bf16 on every CPU
    rows = {(r["backend"], r["precision"]): r for r in map(json.loads, (out / "results.jsonl").open())}
    assert {r["status"] for r in rows.values()} == {"ok"}, result.stderr
    assert rows["eager", "fp32"]["precision_mode"] == mode("fp32", "fp32", NATIVE)
    assert rows["eager", "bf16"]["precision_mode"] == {
        "weights": "fp32", "compute": "bf16", "how": AUTOCAST, "label": "bf16 autocast"
    }
    assert rows["eager-bf16w", "bf16"]["precision_mode"] == {
        "weights": "bf16", "compute": "bf16", "how": CONVERTED, "label": "bf16 weights"
    }
    assert "to_bf16_ms" in rows["eager-bf16w", "bf16"]["timings_ms"]
    for row in rows.values():
        memory = row["memory"]
        assert 10 < memory["rss_after_prepare_mb"] <= memory["peak_rss_loop_mb"] <= memory["peak_rss_mb"]
        assert "peak_rss_loop_unavailable" not in memory
    shown = render(list(rows.values()))
    assert "bf16 autocast" in shown and "bf16 weights" in shown
    emulated = support_here("pytorch", "bf16").tier == "emulated"  # where this CPU has no bf16 instructions
    suffix = " (emulated)" if emulated else ""
    assert {row_label(row) for row in rows.values()} == {"fp32", f"bf16 autocast{suffix}", f"bf16 weights{suffix}"}
    assert ("(emulated)" in shown) == emulated


def test_labels_tell_the_techniques_apart_and_old_rows_keep_their_precision():
    assert label_of("fp32", "bf16", AUTOCAST) == "bf16 autocast"
    assert label_of("bf16", "bf16", FROZEN_CASTS) == "bf16 traced casts"
    assert label_of("fp32", "bf16", HINT) == "bf16 hint"
    assert mode("torch.bfloat16", "bfloat16", CONVERTED)["label"] == "bf16 weights"
    assert row_label({"precision": "bf16"}) == "bf16"
    assert row_label({"precision": "bf16", "precision_mode": mode("fp32", "bf16", HINT)}) == "bf16 hint"


def test_without_a_resettable_peak_the_loop_figure_is_null_with_the_reason(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "statm").write_text("5000 2560 300 1 0 2000 0\n")
    (proc / "status").write_text("VmHWM:\t  90000 kB\nVmRSS:\t  10240 kB\n")
    (proc / "clear_refs").mkdir()  # cannot be written, as in a container without it
    memory = LoopMemory(proc)
    memory.prepared()
    memory.looped()
    figures = memory.figures()
    assert figures["peak_rss_loop_mb"] is None and "cannot be reset" in figures["peak_rss_loop_unavailable"]
    assert figures["rss_after_prepare_mb"] > 0 and figures["peak_rss_mb"] > 0


def test_a_reset_that_does_not_take_is_not_taken_for_a_loop_peak(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "statm").write_text("5000 2560 300 1 0 2000 0\n")
    (proc / "status").write_text("VmHWM:\t  90000 kB\nVmRSS:\t  10240 kB\n")
    (proc / "clear_refs").write_text("")  # written, but the high-water mark stays where it was
    memory = LoopMemory(proc)
    memory.prepared()
    memory.looped()
    assert memory.figures()["peak_rss_loop_mb"] is None
    assert "did not reset VmHWM" in memory.figures()["peak_rss_loop_unavailable"]


OTHERS = TINY_SUITE.split("backends:")[0] + """\
backends:
  - name: torchscript
    type: torchscript
    precisions: [bf16]
  - name: onnxruntime
    type: onnxruntime
    precisions: [int8]
  - name: openvino
    type: openvino
    precisions: [fp32, bf16, int8]
"""


def test_traced_casts_dynamic_int8_a_runtime_hint_and_weight_only_int8_are_read_from_what_was_built(tmp_path):
    out = tmp_path / "run"
    # OpenVINO's CPU plugin reads oneDNN's cap too but picks its kernels from the real CPU: capped to AVX2 on an AMX
    # Xeon, its bf16 fails to compile and its int8 returns empty outputs. The AVX2 lane's cap is for torch; here only
    # bench's decisions (the faked flags) are under test.
    uncapped = {name: None for name in ONEDNN_CAPS}
    result = bench_cli("run", write_suite(tmp_path, OTHERS), "--out", out, "--emulated", env=uncapped)
    rows = {(r["backend"], r["precision"]): r for r in map(json.loads, (out / "results.jsonl").open())}
    assert {r["status"] for r in rows.values()} == {"ok"}, result.stderr
    modes = {key: row["precision_mode"] for key, row in rows.items()}
    assert modes["torchscript", "bf16"] == mode("bf16", "bf16", FROZEN_CASTS)  # freezing folds the weights' casts
    assert modes["onnxruntime", "int8"]["label"] == f"int8 dynamic ({int8_recipe(cpu_flags())})"
    assert modes["openvino", "fp32"]["label"] == "fp32"
    assert modes["openvino", "int8"]["label"] == "int8 weight-only" and modes["openvino", "int8"]["weights"] == "int8"
    hint = rows["openvino", "bf16"]["effective"]["backend"]["INFERENCE_PRECISION_HINT"]
    assert modes["openvino", "bf16"]["label"] == ("bf16 hint" if hint == "bf16" else "fp32")
