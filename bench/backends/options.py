"""Options each backend accepts in a suite; validated in the parent, so nothing heavy is imported here."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Options(BaseModel):
    """No unknown options, no coercion ("yes" is not a boolean), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class PytorchOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    bf16: Literal["autocast", "weights"] = Field(
        "autocast",
        description="bf16: autocast over the fp32 weights (cast on every call), or the weights converted to bf16"
        " once in preparation (model.to(torch.bfloat16)) and run without autocast.",
    )


class TorchscriptOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    optimize_for_inference: bool = Field(False, description="Run torch.jit.optimize_for_inference after freezing.")


class TorchCompileOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    fullgraph: bool = Field(False, description="Fail on a graph break instead of falling back to Python.")


class OnnxruntimeOptions(Options):
    optimization_level: Optional[Literal["O1", "O2", "O3"]] = Field(
        None,
        description="fp32: Optimum's offline graph optimizer (O1 basic, O2 + transformer fusions, O3 + approximate"
        " GELU, not fp32-exact) before the session; none: ORT's own ORT_ENABLE_ALL at session creation only."
        " O4 (fp16) is for GPUs.",
    )
    per_channel: bool = Field(True, description="int8: one scale per output channel of each weight, not per tensor.")

    @field_validator("optimization_level", mode="before")
    @classmethod
    def _not_o4(cls, value):
        if value == "O4":
            raise ValueError("expected 'O1', 'O2', 'O3' or null, got 'O4' (fp16 mixed precision, for GPUs only)")
        return value


class OpenvinoOptions(Options):
    int8_mode: Literal["weights", "static"] = Field(
        "weights", description="int8: NNCF weight compression, or static quantization calibrated on synthetic inputs."
    )
    static_shape: bool = Field(False, description="Reshape to the case's batch x seq before compiling.")
    compiled_cache: bool = Field(False, description="Keep compiled blobs (OpenVINO CACHE_DIR) in the bench cache.")
    calibration_samples: int = Field(8, ge=1, description="Static int8: synthetic calibration samples.")
    calibration_seq_len: int = Field(128, ge=1, description="Static int8: sequence length of each sample.")


class IpexOptions(Options):
    jit: bool = Field(True, description="After ipex.optimize, torch.jit.trace + torch.jit.freeze (graph mode).")
    auto_kernel_selection: bool = Field(False, description="ipex.optimize's auto_kernel_selection (oneDNN linear).")
    attn_implementation: Literal["eager", "sdpa"] = "eager"


class BetterTransformerOptions(Options):
    """optimum's BetterTransformer (model.to_bettertransformer()) on a model loaded with eager attention."""


class TrainerOptions(Options):
    use_ipex: bool = Field(True, description="TrainingArguments(use_ipex=...): ipex.optimize through the Trainer.")
    jit_mode_eval: bool = Field(True, description="TrainingArguments(jit_mode_eval=...): trace + freeze for eval.")
