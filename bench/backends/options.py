"""Options each backend accepts in a suite; validated in the parent, so nothing heavy is imported here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PytorchOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"


class OpenvinoOptions(Options):
    int8_mode: Literal["weights", "static"] = Field(
        "weights", description="int8: NNCF weight compression, or static quantization calibrated on synthetic inputs."
    )
    static_shape: bool = Field(False, description="Reshape to the case's batch x seq before compiling.")
    compiled_cache: bool = Field(False, description="Keep compiled blobs (OpenVINO CACHE_DIR) in the bench cache.")
    export_attn_implementation: Literal["eager", "sdpa"] = Field(
        "sdpa", description="Attention of the torch model the IR is exported from."
    )
    calibration_samples: int = Field(8, ge=1, description="Static int8: synthetic calibration samples.")
    calibration_seq_len: int = Field(128, ge=1, description="Static int8: sequence length of each sample.")
