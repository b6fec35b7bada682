"""ONNX artifacts for ONNX Runtime: export from the loaded torch model, Optimum's graph optimizer, int8 quantization.

Each step is one entry of the artifact cache, keyed by what determines its bytes. The export has dynamic batch and
sequence axes, so sequence length, batch size and threads are not part of any key: one export serves every shape.
int8 is quantized from the plain export, so fp32 and int8 cases of a model share it, and the torch model is loaded
only when no export exists yet.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.machine import installed_versions
from bench.backends.cache import CacheEntry, get_or_build
from bench.measure.timing import timed

VERSIONED = ("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch")
MODEL_FILE = "model.onnx"
EXPORT_ATTN = "eager"
"""The attention the exported graph is traced with: the MatMul/Softmax pattern ORT's fusions know."""
QUANTIZATION = "avx512_vnni"
"""Optimum's AutoQuantizationConfig preset: u8 activations, s8 weights, no reduced range (VNNI does not saturate)."""


def versions() -> dict:
    return installed_versions(VERSIONED, keep_missing=True)


def artifact_kind(precision: str, options: dict) -> str:
    """export, optimized-O<n> (fp32 with an optimization level) or int8."""
    if precision == "int8":
        return "int8"
    return f"optimized-{options['optimization_level']}" if options["optimization_level"] else "export"


def cache_parts(job: dict, kind: str) -> dict:
    case = job["case"]
    parts = {
        "backend": "onnxruntime",
        "model": job["source"]["identity"],
        "task": case["task"],
        "seed": case["seed"],  # weights of any head a checkpoint lacks
        "artifact": kind,
        "export_attn_implementation": EXPORT_ATTN,
        "versions": versions(),
    }
    if kind == "int8":
        parts["quantization"] = {
            "preset": QUANTIZATION,
            "is_static": False,
            "per_channel": case["backend_options"]["per_channel"],
        }
    return parts


def onnx_bytes(folder: Path) -> int:
    """The model's size on disk: the .onnx file and any external weight data beside it."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith(MODEL_FILE))


class ArtifactBuilder:
    """Gets the case's ONNX folder from the cache or builds it; `timings` and `details` say what that took."""

    def __init__(self, job: dict):
        self.job = job
        self.case = job["case"]
        self.options = self.case["backend_options"]
        self.timings: dict[str, float] = {}
        self.details: dict = {}
        self.warnings: list[str] = []

    def get(self) -> Path:
        kind = artifact_kind(self.case["precision"], self.options)
        if kind == "int8" and self.options["optimization_level"]:
            self.warnings.append(
                f"optimization_level {self.options['optimization_level']} is not applied to int8: the quantizer"
                " needs the unfused graph; ORT fuses the quantized graph when the session is created"
            )
        builders = {"export": self._export, "int8": self._quantize}
        entry = self._entry(kind, builders.get(kind, self._optimize))
        self.details.update({"cache": entry.status, "artifact": kind, "model_bytes": onnx_bytes(entry.path)})
        return entry.path

    def _entry(self, kind: str, build) -> CacheEntry:
        name = f"onnxruntime-{self.case['model']}-{kind}"
        return get_or_build(self.job["cache_dir"], name, cache_parts(self.job, kind), build)

    def _upstream_export(self) -> Path:
        entry = self._entry("export", self._export)
        self.details["export_cache"] = entry.status
        self.details["export_model_bytes"] = onnx_bytes(entry.path)
        return entry.path

    def _export(self, folder: Path) -> None:
        from bench.measure.loading import load_model

        model, self.timings["torch_load_ms"] = timed(lambda: load_model(self.job, attn_implementation=EXPORT_ATTN))
        _, self.timings["export_ms"] = timed(lambda: export_onnx(model, folder, self.case["task"]))

    def _optimize(self, folder: Path) -> None:
        source = self._upstream_export()
        level = self.options["optimization_level"]
        _, self.timings["optimize_ms"] = timed(lambda: optimize_onnx(source, folder, level))

    def _quantize(self, folder: Path) -> None:
        source = self._upstream_export()
        per_channel = self.options["per_channel"]
        _, self.timings["quantize_ms"] = timed(lambda: quantize_onnx(source, folder, per_channel))


def export_onnx(model, folder: Path, task: str) -> None:
    """Optimum's export of the loaded model (its weights, not a checkpoint's), dynamic axes, no KV cache.

    The task is given without "-with-past", so a causal LM is exported as one graph without past key/values.
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


def quantize_onnx(source: Path, folder: Path, per_channel: bool) -> None:
    """Dynamic int8: weights quantized ahead, activations at run time (no calibration data)."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

    config = getattr(AutoQuantizationConfig, QUANTIZATION)(is_static=False, per_channel=per_channel)
    ORTQuantizer.from_pretrained(source, file_name=MODEL_FILE).quantize(config, folder, file_suffix="")
