"""PyTorch eager with a chosen attention implementation (eager or sdpa): fp32, or bf16 as autocast over the fp32
weights or as weights converted to bf16 (option bf16: weights) run without autocast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.backends.options import Options
from bench.backends.torch.common import (
    TorchBackend,
    configure_torch,
    inference_context,
    to_tensors,
    torch_effective,
)
from bench.measure.loading import load_model, model_call_kwargs
from bench.measure.timing import timed


class PytorchOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    bf16: Literal["autocast", "weights"] = Field(
        "autocast",
        description="bf16: autocast over the fp32 weights (cast on every call), or the weights converted to bf16"
        " once in preparation (model.to(torch.bfloat16)) and run without autocast.",
    )


class PytorchBackend(
    TorchBackend, name="pytorch", options_model=PytorchOptions, precisions=("fp32", "bf16"), generates=True,
    pipelines=True,
):
    def load(self) -> None:
        configure_torch(self.threads)
        self.model = load_model(self.job, attn_implementation=self.options.attn_implementation)

    @property
    def autocast(self) -> bool:
        return self.case.precision == "bf16" and self.options.bf16 == "autocast"

    def prepare(self, inputs) -> None:
        if self.case.precision == "bf16" and not self.autocast:
            import torch

            self.model, self.timings["to_bf16_ms"] = timed(lambda: self.model.to(torch.bfloat16))
        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case.task)}

    def run(self):
        with inference_context("bf16" if self.autocast else "fp32"):
            return self.model(**self.inputs)

    def generate_model(self):
        """The transformers model itself: generate runs it with its own KV cache (DynamicCache)."""
        return self.model

    def generate_context(self):
        return inference_context("bf16" if self.autocast else "fp32")

    def precision_mode(self) -> dict:
        from bench.backends.precision_mode import torch_mode

        return torch_mode(self.model, self.case.precision, autocast=self.autocast)

    def effective(self) -> dict:
        return {**torch_effective(), "attn_implementation": self.model.config._attn_implementation}
