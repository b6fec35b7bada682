"""PyTorch eager with a chosen attention implementation (eager or sdpa), fp32 or bf16 autocast."""

from __future__ import annotations

from bench.backends.base import Backend
from bench.backends.torch_common import (
    configure_torch,
    inference_context,
    model_call_kwargs,
    to_tensors,
    torch_effective,
)
from bench.hidden_state import hook_or_reason
from bench.loading import load_model


class PytorchBackend(Backend):
    def load(self) -> None:
        configure_torch(self.threads)
        self.model = load_model(self.job, attn_implementation=self.options["attn_implementation"])

    def prepare(self, inputs) -> None:
        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case["task"])}

    def run(self):
        with inference_context(self.case["precision"]):
            return self.model(**self.inputs)

    def hidden_state(self):
        return hook_or_reason(self.model)

    def effective(self) -> dict:
        return {**torch_effective(), "attn_implementation": self.model.config._attn_implementation}


BACKEND = PytorchBackend
