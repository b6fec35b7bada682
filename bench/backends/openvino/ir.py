"""OpenVINO IR artifacts: export from the loaded torch model, int8 by NNCF, each kept in the artifact cache.

The fp32 IR serves fp32 and bf16 alike (the execution precision is a runtime hint, not part of the file); an int8 IR
is built from the cached fp32 IR, so the torch model is loaded only when no fp32 IR exists yet.
"""

from __future__ import annotations

from pathlib import Path

from bench.machine import installed_versions
from bench.backends.cache import CacheEntry, get_or_build
from bench.measure.timing import timed

OV_CLASSES = {
    "feature-extraction": "OVModelForFeatureExtraction",
    "text-classification": "OVModelForSequenceClassification",
    "question-answering": "OVModelForQuestionAnswering",
    "text-generation": "OVModelForCausalLM",
}
EXPORT_ATTENTION = "sdpa"
"""The torch attention the IR is exported from, as `optimum-cli export openvino` does (an eager export runs the same)."""
VERSIONED = ("optimum", "optimum-intel", "openvino", "nncf", "transformers", "torch")
IR_FILES = (".xml", ".bin")


def versions() -> dict:
    return installed_versions(VERSIONED, keep_missing=True)


def artifact_kind(precision: str, options: dict) -> str:
    """fp32 and bf16 share the fp32 IR; int8 has one IR per quantization mode."""
    return f"int8-{options['int8_mode']}" if precision == "int8" else "fp32"


def cache_parts(job: dict, kind: str) -> dict:
    """Everything that determines the IR's bytes; seq, batch and threads are applied after loading, so not here."""
    case, options = job["case"], job["case"]["backend_options"]
    parts = {
        "backend": "openvino",
        "model": job["source"]["identity"],
        "task": case["task"],
        "artifact": kind,
        "export_attn_implementation": EXPORT_ATTENTION,
        "versions": versions(),
    }
    if kind == "int8-static":
        parts["calibration"] = {
            "samples": options["calibration_samples"],
            "seq_len": options["calibration_seq_len"],
            "seed": case["seed"],
        }
    return parts


def ov_model_class(task: str):
    import optimum.intel

    return getattr(optimum.intel, OV_CLASSES[task])


def read_ir(folder: Path, task: str, ov_config: dict):
    """The OVModelFor<task> over an IR folder, not compiled yet."""
    extra = {"use_cache": False, "stateful": False} if task == "text-generation" else {}
    return ov_model_class(task).from_pretrained(folder, compile=False, ov_config=ov_config, **extra)


def cache_status(entry: CacheEntry) -> str:
    if entry.hit:
        return "hit"
    return f"rebuilt: {entry.rebuilt_reason}" if entry.rebuilt_reason else "miss"


def ir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in IR_FILES)


class IrBuilder:
    """Gets the case's IR from the cache or builds it; `timings` and `details` say what that took."""

    def __init__(self, job: dict):
        self.job = job
        self.case = job["case"]
        self.options = self.case["backend_options"]
        self.timings: dict[str, float] = {}
        self.details: dict = {}

    def get(self) -> Path:
        kind = artifact_kind(self.case["precision"], self.options)
        entry = self._entry(kind, self._export if kind == "fp32" else self._quantize)
        self.details.update({"cache": cache_status(entry), "artifact": kind, "model_bytes": ir_bytes(entry.path)})
        return entry.path

    def _entry(self, kind: str, build) -> CacheEntry:
        name = f"openvino-{self.case['model']}-{kind}"
        return get_or_build(self.job["cache_dir"], name, cache_parts(self.job, kind), build)

    def _export(self, folder: Path) -> None:
        from bench.measure.loading import load_model

        model, self.timings["torch_load_ms"] = timed(lambda: load_model(self.job, attn_implementation=EXPORT_ATTENTION))
        _, self.timings["convert_ms"] = timed(lambda: export_ir(model, folder, self.case["task"]))

    def _quantize(self, folder: Path) -> None:
        fp32 = self._entry("fp32", self._export)
        self.details["fp32_ir_cache"] = cache_status(fp32)
        self.details["fp32_model_bytes"] = ir_bytes(fp32.path)
        model = read_ir(fp32.path, self.case["task"], {})
        calibration = calibration_dataset(model, self.job) if self.options["int8_mode"] == "static" else None
        _, self.timings["quantize_ms"] = timed(
            lambda: quantize_ir(model, folder, self.options["int8_mode"], calibration)
        )


def export_ir(model, folder: Path, task: str) -> None:
    """optimum-intel's export of a loaded model, weights kept in fp32, without a KV cache for causal LMs."""
    from optimum.exporters.openvino import export_from_model
    from optimum.intel import OVConfig

    export_from_model(model, folder, task=task, ov_config=OVConfig(dtype="fp32"), stateful=False)


def quantize_ir(model, folder: Path, mode: str, calibration) -> None:
    """NNCF through OVQuantizer: int8 weights only ("weights"), or weights and activations ("static")."""
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer, OVWeightQuantizationConfig

    config = OVWeightQuantizationConfig(bits=8) if mode == "weights" else OVQuantizationConfig(bits=8)
    OVQuantizer(model).quantize(
        calibration_dataset=calibration, ov_config=OVConfig(quantization_config=config), save_directory=folder
    )


def calibration_dataset(model, job: dict):
    """Seeded synthetic batches from the same generator as the measured inputs, one feed per model input."""
    import nncf
    import numpy as np

    from bench.measure.inputs import make_inputs

    options, vocab, seed = job["case"]["backend_options"], job["vocab"], job["case"]["seed"]
    seq_len, feeds = options["calibration_seq_len"], []
    for index in range(options["calibration_samples"]):
        inputs = make_inputs(1, seq_len, vocab["size"], vocab["pad_token_id"], 0.0, seed + 1 + index)
        feeds.append(model_feed(model.input_names, inputs, np))
    return nncf.Dataset(feeds)


def model_feed(input_names, inputs: dict, np) -> dict:
    """The inputs an IR declares, from input_ids and attention_mask (token types 0, positions counted)."""
    feed = {}
    for name in input_names:
        if name in inputs:
            feed[name] = inputs[name]
        elif name == "token_type_ids":
            feed[name] = np.zeros_like(inputs["input_ids"])
        elif name == "position_ids":
            feed[name] = np.maximum(np.cumsum(inputs["attention_mask"], axis=1) - 1, 0)
        else:
            raise ValueError(f"cannot make calibration data for model input {name!r}")
    return feed
