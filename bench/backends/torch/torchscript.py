"""TorchScript: the model traced at the case's own inputs, then frozen (the path behind the Trainer's jit_mode_eval).

bf16 is traced under autocast, so the casts are part of the graph; the frozen module then runs without autocast.
The frozen module is an entry of the artifact cache (torch.jit.save), keyed by the model, the case's inputs and the
options: a later run loads it with torch.jit.load and builds no transformers model at all.
"""

from __future__ import annotations

import contextlib
import sys
import copy
import json
from importlib import metadata
from pathlib import Path

from bench.backends.base import Backend
from bench.backends.torch.common import configure_torch, to_tensors, torch_effective
from bench.backends.cache import artifacts_root, cache_key, get_or_build, verify
from bench.measure.loading import load_model
from bench.measure.timing import timed

MODULE_FILE = "module.pt"
TRACED_FILE = "traced.json"
"""What the model reported when it was traced (its attention), for effective() when no model is built."""
VERSIONED = ("torch", "transformers")
FROZEN_OUTPUTS = "the frozen TorchScript module returns only the task outputs it was traced with"


class TorchScriptBackend(Backend):
    def load(self) -> None:
        if "intel_extension_for_pytorch" in sys.modules:
            raise RuntimeError(
                "intel_extension_for_pytorch is imported in this process: it rewrites TorchScript graphs,"
                " so a plain TorchScript number would not be one"
            )
        self.torch = configure_torch(self.threads)
        self.model = None if is_cached(self.job, entry_name(self.case)) else self.load_model()

    def load_model(self):
        return load_model(traceable_job(self.job), attn_implementation=self.options["attn_implementation"])

    def prepare(self, inputs) -> None:
        self.inputs = to_tensors(inputs)
        entry = get_or_build(self.job["cache_dir"], entry_name(self.case), cache_parts(self.job), self.build)
        self.details["cache"] = entry.status
        self.details["module_bytes"] = (entry.path / MODULE_FILE).stat().st_size
        self.traced_with = json.loads((entry.path / TRACED_FILE).read_text())
        self.module, self.timings["jit_load_ms"] = timed(lambda: self.torch.jit.load(str(entry.path / MODULE_FILE)))
        self.profile()

    def build(self, folder: Path) -> None:
        """Trace, freeze (and optimize) into `folder`; the module measured is the one loaded back from it."""
        torch = self.torch
        if self.model is None:  # the entry looked whole at load time but failed its digest check
            self.model, self.timings["model_load_ms"] = timed(self.load_model)
        with trace_context(self.case["precision"]), traceable_causal_masks():
            traced, self.timings["trace_ms"] = timed(
                lambda: torch.jit.trace(self.model, example_kwarg_inputs=self.inputs, strict=False)
            )
        module, self.timings["freeze_ms"] = timed(lambda: torch.jit.freeze(traced.eval()))
        if self.options["optimize_for_inference"]:
            module, self.timings["optimize_ms"] = timed(lambda: torch.jit.optimize_for_inference(module))
        _, self.timings["save_ms"] = timed(lambda: torch.jit.save(module, str(folder / MODULE_FILE)))
        traced_with = {"attn_implementation": self.model.config._attn_implementation}
        (folder / TRACED_FILE).write_text(json.dumps(traced_with))
        self.model = None

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
        if self.case["precision"] == "bf16":
            return mode(weights, "bf16", FROZEN_CASTS)
        return mode(weights, weights, NATIVE)

    def effective(self) -> dict:
        torch = self.torch
        return {
            **torch_effective(),
            "attn_implementation": self.traced_with["attn_implementation"],
            "frozen": not list(self.module.parameters()),
            "optimize_for_inference": self.options["optimize_for_inference"],
            "graph_executor_optimize": torch._C._get_graph_executor_optimize(),
            "num_profiled_runs": torch._C._jit_get_num_profiled_runs(),
            "cpu_fuser": torch._C._jit_can_fuse_on_cpu(),
        }


def versions(packages=VERSIONED) -> dict:
    return {package: metadata.version(package) for package in packages}


def case_cache_parts(job: dict, backend: str) -> dict:
    """What a module built for this case depends on: the model, the case's inputs, precision, options, versions.

    The inputs' shape and the seed are in the key because a trace (or a static-shape compile) is specialised to the
    example it was made with: a causal LM's trace keeps its causal mask as a constant of its sequence length.
    Threads are not: the caller adds them where they matter.
    """
    case = job["case"]
    return {
        "backend": backend,
        "model": job["source"]["identity"],
        "task": case["task"],
        "precision": case["precision"],
        "options": dict(sorted(case["backend_options"].items())),
        "shape": {"batch": case["batch_size"], "seq_len": case["seq_len"], "padding": case["padding_ratio"]},
        "seed": case["seed"],
        "versions": versions(),
    }


def cache_parts(job: dict) -> dict:
    return case_cache_parts(job, "torchscript")


def entry_name(case: dict) -> str:
    return f"torchscript-{case['model']}-{case['precision']}"


def is_cached(job: dict, name: str) -> bool:
    """Whether a whole entry exists (sizes only: get_or_build checks the digests before it is used)."""
    folder = artifacts_root(job["cache_dir"]) / f"{name}-{cache_key(cache_parts(job))}"
    return folder.is_dir() and verify(folder, digests=False) is None


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
