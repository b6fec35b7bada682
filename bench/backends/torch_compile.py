"""torch.compile with inductor at the case's static shape; compilation happens on the first calls, in prepare()."""

from __future__ import annotations

from bench.backends.base import Backend
from bench.backends.torch_common import (
    configure_torch,
    inference_context,
    model_call_kwargs,
    to_tensors,
    torch_effective,
)
from bench.loading import load_model
from bench.timing import timed

SETTLING_CALLS = 2
"""Calls after the compiling one, still in prepare(): the first runs of compiled code load and initialise kernels."""


class TorchCompileBackend(Backend):
    def load(self) -> None:
        configure_torch(self.threads)
        self.model = load_model(self.job, attn_implementation=self.options["attn_implementation"])

    def prepare(self, inputs) -> None:
        import torch

        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case["task"])}
        self.compiled = torch.compile(
            self.model,
            backend="inductor",
            mode=self.options["mode"],
            dynamic=False,
            fullgraph=self.options["fullgraph"],
        )
        before = compile_counters()
        _, self.timings["compile_ms"] = timed(self.run)
        _, self.timings["settling_ms"] = timed(lambda: [self.run() for _ in range(SETTLING_CALLS)])
        compiled = counter_delta(before, compile_counters())
        self.details["graphs_compiled"] = compiled["graphs"]
        self.details["graph_breaks"] = compiled["graph_breaks"]
        self.details["fx_graph_cache"] = {"hits": compiled["fx_hits"], "misses": compiled["fx_misses"]}
        self.details["inductor_cache_dir"] = inductor_cache_dir()
        self.measured_from = compile_counters()

    def run(self):
        with inference_context(self.case["precision"]):
            return self.compiled(**self.inputs)

    def after_measurement(self) -> None:
        recompiled = counter_delta(self.measured_from, compile_counters())["graphs"]
        self.details["recompilations"] = recompiled
        if recompiled:
            self.warnings.append(
                f"torch.compile compiled {recompiled} more graph(s) while measuring: "
                "the samples include compilation; check for a guard that changes between calls"
            )

    def effective(self) -> dict:
        import torch

        return {
            **torch_effective(),
            "attn_implementation": self.model.config._attn_implementation,
            "compiler_backend": "inductor",
            "mode": self.options["mode"],
            "dynamic": False,
            "fullgraph": self.options["fullgraph"],
            "fx_graph_cache": torch._inductor.config.fx_graph_cache,
        }


def compile_counters() -> dict:
    """dynamo's own counters: graphs it compiled, graph breaks, inductor's FX graph cache hits and misses."""
    from torch._dynamo.utils import counters

    return {
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "fx_hits": counters["inductor"]["fxgraph_cache_hit"],
        "fx_misses": counters["inductor"]["fxgraph_cache_miss"],
    }


def counter_delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before[name] for name in after}


def inductor_cache_dir() -> str:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


BACKEND = TorchCompileBackend
