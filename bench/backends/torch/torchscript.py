"""TorchScript: the model traced at the case's own inputs, then frozen (the path behind the Trainer's jit_mode_eval).

bf16 is traced under autocast, so the casts are part of the graph; the frozen module then runs without autocast.
The frozen module is an entry of the artifact cache (torch.jit.save), keyed by the model, the case's inputs and the
options: the transformers model is built only to make a missing entry, and a hit is read with torch.jit.load.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from bench.backends.cache import get_or_build
from bench.backends.options import Options
from bench.backends.torch.common import (
    FROZEN_OUTPUTS,
    TorchBackend,
    case_cache_parts,
    configure_torch,
    to_tensors,
    torch_effective,
    trace_context,
    traceable_job,
)
from bench.job import Case, Job
from bench.measure.loading import load_model
from bench.measure.timing import timed

MODULE_FILE = "module.pt"
TRACED_FILE = "traced.json"
"""What the model reported when it was traced (its attention), for effective() when no model is built."""


class TorchscriptOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    optimize_for_inference: bool = Field(False, description="Run torch.jit.optimize_for_inference after freezing.")


class TorchScriptBackend(
    TorchBackend, name="torchscript", options_model=TorchscriptOptions, precisions=("fp32", "bf16")
):
    def load(self) -> None:
        if "intel_extension_for_pytorch" in sys.modules:
            raise RuntimeError(
                "intel_extension_for_pytorch is imported in this process: it rewrites TorchScript graphs,"
                " so a plain TorchScript number would not be one"
            )
        self.torch = configure_torch(self.threads)

    def prepare(self, inputs) -> None:
        self.inputs = to_tensors(inputs)
        entry = get_or_build(self.job.cache_dir, entry_name(self.case), cache_parts(self.job), self.build)
        self.details["cache"] = entry.status
        self.details["module_bytes"] = (entry.path / MODULE_FILE).stat().st_size
        self.traced_with = json.loads((entry.path / TRACED_FILE).read_text())
        self.module, self.timings["jit_load_ms"] = timed(lambda: self.torch.jit.load(str(entry.path / MODULE_FILE)))
        self.profile()

    def build(self, folder: Path) -> None:
        """Build the model, trace, freeze (and optimize) into `folder`; the module measured is the one loaded back."""
        torch = self.torch
        model, self.timings["model_load_ms"] = timed(
            lambda: load_model(traceable_job(self.job), attn_implementation=self.options.attn_implementation)
        )
        with trace_context(self.case.precision), traceable_causal_masks():
            traced, self.timings["trace_ms"] = timed(
                lambda: torch.jit.trace(model, example_kwarg_inputs=self.inputs, strict=False)
            )
        module, self.timings["freeze_ms"] = timed(lambda: torch.jit.freeze(traced.eval()))
        if self.options.optimize_for_inference:
            module, self.timings["optimize_ms"] = timed(lambda: torch.jit.optimize_for_inference(module))
        _, self.timings["save_ms"] = timed(lambda: torch.jit.save(module, str(folder / MODULE_FILE)))
        traced_with = {"attn_implementation": model.config._attn_implementation}
        (folder / TRACED_FILE).write_text(json.dumps(traced_with))

    def profile(self) -> None:
        """The profiling executor records shapes on its first runs and optimizes the graph on the next one."""
        runs = self.torch._C._jit_get_num_profiled_runs() + 1
        _, self.timings["profiling_ms"] = timed(lambda: [self.run() for _ in range(runs)])
        self.details["profiling_runs"] = runs

    def run(self):
        with self.torch.inference_mode():
            return self.module(**self.inputs)

    def hidden_state(self):
        return FROZEN_OUTPUTS

    def precision_mode(self) -> dict:
        """bf16 is traced under autocast: the casts are frozen into the graph, the weights are its constants."""
        from bench.backends.precision_mode import FROZEN_CASTS, NATIVE, graph_constants_dtype, mode

        weights = graph_constants_dtype(self.module.graph)
        if self.case.precision == "bf16":
            return mode(weights, "bf16", FROZEN_CASTS)
        return mode(weights, weights, NATIVE)

    def effective(self) -> dict:
        torch = self.torch
        return {
            **torch_effective(),
            "attn_implementation": self.traced_with["attn_implementation"],
            "frozen": not list(self.module.parameters()),
            "optimize_for_inference": self.options.optimize_for_inference,
            "graph_executor_optimize": torch._C._get_graph_executor_optimize(),
            "num_profiled_runs": torch._C._jit_get_num_profiled_runs(),
            "cpu_fuser": torch._C._jit_can_fuse_on_cpu(),
        }


def cache_parts(job: Job) -> dict:
    return case_cache_parts(job, "torchscript")


def entry_name(case: Case) -> str:
    return f"torchscript-{case.model}-{case.precision}"


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

