"""optimum's BetterTransformer: the model loaded with eager attention, then model.to_bettertransformer().

Its encoder fast path (torch._transformer_encoder_layer_fwd on nested tensors) skips padding tokens, and runs only
without autocast: under bf16 autocast every layer falls back to plain SDPA, so the backend offers fp32 only.

For a causal LM it generates too (its attention layers replaced, transformers' generate and KV cache). optimum
declines the model types whose attention transformers already runs with SDPA (gpt_bigcode, for one): such a case
has status unsupported, with optimum's reason and the equivalent, the pytorch backend with attn_implementation sdpa.
"""

from __future__ import annotations

import sys

from bench.backends.options import Options
from bench.job import Unsupported
from bench.backends.torch.common import (
    TORCH,
    TorchBackend,
    configure_torch,
    inference_context,
    to_tensors,
    torch_effective,
)
from bench.measure.loading import load_model, model_call_kwargs
from bench.measure.timing import timed


class BetterTransformerOptions(Options):
    """optimum's BetterTransformer (model.to_bettertransformer()) on a model loaded with eager attention."""


class BetterTransformerBackend(
    TorchBackend,
    name="bettertransformer",
    options_model=BetterTransformerOptions,
    precisions=("fp32",),
    environment="intel",
    requires=(*TORCH, "optimum.bettertransformer"),
    records=(*TORCH, "optimum"),
    generates=True,
):
    def load(self) -> None:
        configure_torch(self.threads)
        self.model = load_model(self.job, attn_implementation="eager")

    def prepare(self, inputs) -> None:
        self.model, self.timings["to_bettertransformer_ms"] = timed(self.convert)
        self.details["converted_layers"] = converted_layers(self.model)
        if not self.details["converted_layers"]:
            self.warnings.append("to_bettertransformer() replaced no layer: this is the plain eager model")
        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case.task)}

    def convert(self):
        try:
            return self.model.to_bettertransformer()
        except ValueError as exc:
            if "natively" not in str(exc):
                raise
            model_type = self.model.config.model_type
            raise Unsupported(
                f"optimum's BetterTransformer declines {model_type}: transformers runs its attention with PyTorch's"
                " scaled_dot_product_attention natively; the equivalent is the pytorch backend with"
                f" attn_implementation: sdpa (optimum: {str(exc).split('. ')[0]})"
            ) from exc

    def run(self):
        with inference_context(self.case.precision):
            return self.model(**self.inputs)

    def generate_model(self):
        return self.model

    def generate_context(self):
        return inference_context(self.case.precision)

    def effective(self) -> dict:
        import torch

        return {
            **torch_effective(),
            "threads": torch.get_num_threads(),
            "bettertransformer": bool(getattr(self.model, "use_bettertransformer", False)),
            "ipex_imported": "intel_extension_for_pytorch" in sys.modules,
        }


def converted_layers(model) -> int:
    return sum(1 for module in model.modules() if type(module).__name__.endswith("BetterTransformer"))

