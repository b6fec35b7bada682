"""ONNX artifacts for ONNX Runtime: export from the loaded torch model, Optimum's graph optimizer, int8 quantization.

The export has dynamic batch and sequence axes, so sequence length, batch size and threads are not part of any key:
one export serves every shape. int8 is quantized from the plain export, so fp32 and int8 cases of a model share it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.backends.artifacts import ArtifactChain
from bench.measure.timing import timed

MODEL_FILE = "model.onnx"
REDUCED_RANGE = ("avx512", "avx2")
"""Recipes quantized with 7-bit weights: without VNNI, u8 x s8 products summed in pairs can saturate int16."""


def artifact_kind(precision: str, options) -> str:
    """export, optimized-O<n> (fp32 with an optimization level) or int8."""
    if precision == "int8":
        return "int8"
    return f"optimized-{options.optimization_level}" if options.optimization_level else "export"


def onnx_bytes(folder: Path) -> int:
    """The model's size on disk: the .onnx file and any external weight data beside it."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith(MODEL_FILE))


class OnnxArtifacts(
    ArtifactChain,
    backend="onnxruntime",
    export_kind="export",
    export_attn="eager",  # the MatMul/Softmax pattern ORT's fusions know
    export_step="export_ms",
    export_details=("export_cache", "export_model_bytes"),
    versioned=("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch"),
    seeded=True,
):
    def kind(self) -> str:
        kind = artifact_kind(self.case.precision, self.options)
        if kind == "int8" and self.options.optimization_level:
            self.warnings.append(
                f"optimization_level {self.options.optimization_level} is not applied to int8: the quantizer"
                " needs the unfused graph; ORT fuses the quantized graph when the session is created"
            )
        return kind

    def extra_parts(self, kind: str) -> dict:
        if kind != "int8":
            return {}
        self.details["quantization"] = quantization(self.options)
        return {"quantization": self.details["quantization"]}

    def export(self, model, folder: Path) -> None:
        export_onnx(model, folder, self.task())

    def derive(self, kind: str, export: Path, folder: Path) -> None:
        if kind == "int8":
            _, self.timings["quantize_ms"] = timed(lambda: quantize_onnx(export, folder, quantization(self.options)))
        else:
            level = self.options.optimization_level
            _, self.timings["optimize_ms"] = timed(lambda: optimize_onnx(export, folder, level))

    def size(self, folder: Path) -> int:
        return onnx_bytes(folder)


def export_onnx(model, folder: Path, task: str) -> None:
    """Optimum's export of the loaded model (its weights, not a checkpoint's), dynamic axes.

    A forward-pass case gives the task without "-with-past", so a causal LM is exported as one graph without past
    key/values; a generation case gives "text-generation-with-past": one model.onnx that takes and returns them
    (an empty past on the first step), as ORTModelForCausalLM(use_cache=True) runs it.
    Optimum's own output check is skipped: every case is compared with the eager reference anyway.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    onnx_export_from_model(model, folder, task=task, do_validation=False)


def optimize_onnx(source: Path, folder: Path, level: str) -> None:
    """ORTOptimizer at an AutoOptimizationConfig level (O1 basic, O2 + transformer fusions, O3 + GELU approximation).

    It reads hard links of the export's files: after optimizing, ORTOptimizer deletes its source's external weight
    file (`model.onnx_data`, models over 2 GB), which must not be the cached export's.
    """
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    config = getattr(AutoOptimizationConfig, level)()
    with tempfile.TemporaryDirectory(prefix=".building-links-", dir=folder.parent) as links:
        for path in source.iterdir():
            os.link(path, Path(links) / path.name)
        ORTOptimizer.from_pretrained(links).optimize(config, folder, file_suffix="")


def quantization(options) -> dict:
    """The dynamic quantization config an int8 case uses: the suite's int8_recipe, or the one for this CPU."""
    from bench.cpu import cpu_flags, int8_recipe

    recipe = options.int8_recipe
    chosen = int8_recipe(cpu_flags()) if recipe == "auto" else recipe
    return {
        "preset": chosen,
        "chosen_by": "cpu" if recipe == "auto" else "suite",
        "is_static": False,
        "per_channel": options.per_channel,
        "reduce_range": chosen in REDUCED_RANGE,
    }


def quantize_onnx(source: Path, folder: Path, recipe: dict) -> None:
    """Dynamic int8: weights quantized ahead, activations at run time (no calibration data)."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

    make = getattr(AutoQuantizationConfig, recipe["preset"])
    extra = {"reduce_range": True} if recipe["reduce_range"] else {}
    config = make(is_static=False, per_channel=recipe["per_channel"], **extra)
    ORTQuantizer.from_pretrained(source, file_name=MODEL_FILE).quantize(config, folder, file_suffix="")
