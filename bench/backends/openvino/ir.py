"""OpenVINO IR artifacts: export from the loaded torch model, int8 by NNCF, each kept in the artifact cache.

The fp32 IR serves fp32 and bf16 alike (the execution precision is a runtime hint, not part of the file); an int8 IR
is built from the cached fp32 IR. Seq, batch and threads are applied after loading, so they are in no key.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends.artifacts import ArtifactChain
from bench.backends.feed import graph_feed
from bench.measure.timing import timed

OV_CLASSES = {
    "feature-extraction": "OVModelForFeatureExtraction",
    "text-classification": "OVModelForSequenceClassification",
    "question-answering": "OVModelForQuestionAnswering",
    "text-generation": "OVModelForCausalLM",
}
IR_FILES = (".xml", ".bin")


def artifact_kind(precision: str, options) -> str:
    """fp32 and bf16 share the fp32 IR; int8 has one IR per quantization mode."""
    return f"int8-{options.int8_mode}" if precision == "int8" else "fp32"


def ov_model_class(task: str):
    import optimum.intel

    return getattr(optimum.intel, OV_CLASSES[task])


def read_ir(folder: Path, task: str, ov_config: dict, generating: bool = False):
    """The OVModelFor<task> over an IR folder, not compiled yet; a generation case's IR keeps its KV cache as state."""
    if generating:
        extra = {"use_cache": True}
    else:
        extra = {"use_cache": False, "stateful": False} if task == "text-generation" else {}
    return ov_model_class(task).from_pretrained(folder, compile=False, ov_config=ov_config, **extra)


def ir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in IR_FILES)


class IrArtifacts(
    ArtifactChain,
    backend="openvino",
    export_kind="fp32",
    export_attn="sdpa",  # as `optimum-cli export openvino` does (an eager export runs the same)
    export_step="convert_ms",
    export_details=("fp32_ir_cache", "fp32_model_bytes"),
    versioned=("optimum", "optimum-intel", "openvino", "nncf", "transformers", "torch"),
    seeded=False,
):
    def kind(self) -> str:
        kind = artifact_kind(self.case.precision, self.options)
        if kind == "int8-static" and self.case.generating:
            raise ValueError(
                "int8_mode static is not supported for generation cases (its calibration feeds have no past"
                " key/values); use int8_mode: weights"
            )
        return kind

    def extra_parts(self, kind: str) -> dict:
        if kind != "int8-static":
            return {}
        options = self.options
        calibration = {"samples": options.calibration_samples, "seq_len": options.calibration_seq_len}
        return {"calibration": {**calibration, "seed": self.case.seed}}

    def export(self, model, folder: Path) -> None:
        export_ir(model, folder, self.task(), stateful=self.case.generating)

    def derive(self, kind: str, export: Path, folder: Path) -> None:
        model = read_ir(export, self.case.task, {}, generating=self.case.generating)
        mode = self.options.int8_mode
        calibration = calibration_dataset(model, self.job, self.options) if mode == "static" else None
        _, self.timings["quantize_ms"] = timed(lambda: quantize_ir(model, folder, mode, calibration))

    def size(self, folder: Path) -> int:
        return ir_bytes(folder)


def export_ir(model, folder: Path, task: str, stateful: bool = False) -> None:
    """optimum-intel's export of a loaded model, weights kept in fp32: without a KV cache for a causal LM's forward
    pass; for generation ("text-generation-with-past") with it, kept as the IR's state (stateful, optimum-intel's
    default for causal LMs)."""
    from optimum.exporters.openvino import export_from_model
    from optimum.intel import OVConfig

    export_from_model(model, folder, task=task, ov_config=OVConfig(dtype="fp32"), stateful=stateful)


def quantize_ir(model, folder: Path, mode: str, calibration) -> None:
    """NNCF through OVQuantizer: int8 weights only ("weights"), or weights and activations ("static")."""
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer, OVWeightQuantizationConfig

    config = OVWeightQuantizationConfig(bits=8) if mode == "weights" else OVQuantizationConfig(bits=8)
    OVQuantizer(model).quantize(
        calibration_dataset=calibration, ov_config=OVConfig(quantization_config=config), save_directory=folder
    )


def calibration_dataset(model, job, options):
    """Seeded synthetic batches from the same generator as the measured inputs, one feed per model input."""
    import nncf

    from bench.measure.inputs import make_inputs

    size, pad, seed, feeds = job.vocab["size"], job.vocab["pad_token_id"], job.case.seed, []
    for index in range(options.calibration_samples):
        inputs = make_inputs(1, options.calibration_seq_len, size, pad, 0.0, seed + 1 + index)
        feeds.append(graph_feed(model.input_names, inputs, "the OpenVINO IR"))
    return nncf.Dataset(feeds)
