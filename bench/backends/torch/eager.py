"""PyTorch eager with a chosen attention implementation (eager or sdpa): fp32, or bf16 as autocast over the fp32
weights or as weights converted to bf16 (option bf16: weights) run without autocast."""

from __future__ import annotations

from bench.backends.base import Backend
from bench.backends.torch.common import (
    configure_torch,
    inference_context,
    model_call_kwargs,
    to_tensors,
    torch_effective,
)
from bench.measure.hidden_state import hook_or_reason
from bench.measure.loading import load_model
from bench.measure.timing import timed


class PytorchBackend(Backend):
    def load(self) -> None:
        configure_torch(self.threads)
        self.model = load_model(self.job, attn_implementation=self.options["attn_implementation"])

    @property
    def autocast(self) -> bool:
        return self.case["precision"] == "bf16" and self.options.get("bf16", "autocast") == "autocast"

    def prepare(self, inputs) -> None:
        if self.case["precision"] == "bf16" and not self.autocast:
            import torch

            self.model, self.timings["to_bf16_ms"] = timed(lambda: self.model.to(torch.bfloat16))
        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case["task"])}

    def run(self):
        with inference_context("bf16" if self.autocast else "fp32"):
            return self.model(**self.inputs)

    def hidden_state(self):
        return hook_or_reason(self.model)

    def precision_mode(self) -> dict:
        from bench.backends.precision_mode import torch_mode

        return torch_mode(self.model, self.case["precision"], autocast=self.autocast)

    def effective(self) -> dict:
        return {**torch_effective(), "attn_implementation": self.model.config._attn_implementation}


BACKEND = PytorchBackend
