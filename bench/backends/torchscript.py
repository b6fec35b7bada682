"""TorchScript: the model traced at the case's own inputs, then frozen (the path behind the Trainer's jit_mode_eval).

bf16 is traced under autocast, so the casts are part of the graph; the frozen module then runs without autocast.
"""

from __future__ import annotations

import contextlib
import copy

from bench.backends.base import Backend
from bench.backends.torch_common import configure_torch, to_tensors, torch_effective
from bench.loading import load_model
from bench.timing import timed


class TorchScriptBackend(Backend):
    def load(self) -> None:
        self.torch = configure_torch(self.threads)
        self.model = load_model(traceable_job(self.job), attn_implementation=self.options["attn_implementation"])

    def prepare(self, inputs) -> None:
        torch = self.torch
        self.inputs = to_tensors(inputs)
        with trace_context(self.case["precision"]), traceable_causal_masks():
            traced, self.timings["trace_ms"] = timed(
                lambda: torch.jit.trace(self.model, example_kwarg_inputs=self.inputs, strict=False)
            )
        self.module, self.timings["freeze_ms"] = timed(lambda: torch.jit.freeze(traced.eval()))
        if self.options["optimize_for_inference"]:
            self.module, self.timings["optimize_ms"] = timed(
                lambda: torch.jit.optimize_for_inference(self.module)
            )
        self.profile()

    def profile(self) -> None:
        """The profiling executor records shapes on its first runs and optimizes the graph on the next one."""
        runs = self.torch._C._jit_get_num_profiled_runs() + 1
        _, self.timings["profiling_ms"] = timed(lambda: [self.run() for _ in range(runs)])
        self.details["profiling_runs"] = runs

    def run(self):
        with self.torch.inference_mode():
            return self.module(**self.inputs)

    def effective(self) -> dict:
        torch = self.torch
        return {
            **torch_effective(),
            "attn_implementation": self.model.config._attn_implementation,
            "frozen": not list(self.module.parameters()),
            "optimize_for_inference": self.options["optimize_for_inference"],
            "graph_executor_optimize": torch._C._get_graph_executor_optimize(),
            "num_profiled_runs": torch._C._jit_get_num_profiled_runs(),
            "cpu_fuser": torch._C._jit_can_fuse_on_cpu(),
        }


def traceable_job(job: dict) -> dict:
    """The job with the config transformers expects for tracing: tuple outputs, and no KV cache for a causal LM."""
    job = copy.deepcopy(job)
    overrides = job["case"]["model_entry"].setdefault("config_overrides", {})
    overrides["torchscript"] = True
    if job["case"]["task"] == "text-generation":
        overrides["use_cache"] = False
    return job


def trace_context(precision: str):
    """no_grad, plus bf16 autocast without its weight-cast cache (a cached cast cannot become a graph constant)."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if precision == "bf16":
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False))
    return stack


@contextlib.contextmanager
def traceable_causal_masks():
    """Causal masks built without vmap while tracing: transformers' vmap-based builder does not trace."""
    from unittest import mock

    from transformers import masking_utils

    older = masking_utils.sdpa_mask_older_torch
    with (
        mock.patch.object(masking_utils, "sdpa_mask", older),
        mock.patch.dict(masking_utils.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, {"sdpa": older}),
    ):
        yield


BACKEND = TorchScriptBackend
