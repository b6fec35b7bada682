"""torch.compile with inductor at the case's static shape; compilation happens on the first calls, in prepare().

Each worker gives inductor a private cache folder (TORCHINDUCTOR_CACHE_DIR). What a compile leaves there (its
FX graph and AOTAutograd cache entries and the compiled C++ kernels) is kept as an entry of the artifact cache,
keyed by the model, the case's inputs, precision, options and threads; a later run copies the entry into its own
folder first, so its compile is a real torch.compile that inductor serves from its caches.

A text generation case compiles as transformers does it: a static KV cache (generation_config.cache_implementation
"static", sized to prompt + new tokens) and a CompileConfig, so generate runs the prefill in eager mode and every
decode step through one compiled forward at a fixed shape. transformers compiles that way on CUDA only unless told
(CompileConfig._compile_all_devices); the backend tells it, and the compile happens on prepare's first generate call.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from bench.backends.cache import RECORD, get_or_build
from bench.backends.options import Options
from bench.backends.torch.common import (
    TorchBackend,
    case_cache_parts,
    configure_torch,
    inference_context,
    to_tensors,
    torch_effective,
)
from bench.job import Case, Job
from bench.measure.loading import load_model, model_call_kwargs
from bench.measure.timing import timed

SETTLING_CALLS = 2
"""Calls after the compiling one, still in prepare(): the first runs of compiled code load and initialise kernels."""
NOT_KEPT = ("locks", RECORD)


class TorchCompileOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    fullgraph: bool = Field(False, description="Fail on a graph break instead of falling back to Python.")


class TorchCompileBackend(
    TorchBackend, name="torch_compile", options_model=TorchCompileOptions, precisions=("fp32", "bf16"), generates=True
):
    def load(self) -> None:
        import torch._inductor.config as inductor_config

        self.inductor_dir = private_inductor_dir()
        configure_torch(self.threads)
        # inductor sizes its pool of compile workers from the CPUs it sees when its config is imported: a worker
        # forked warm inherits the fork server's (every CPU of the run), and would start a pool on its pinned ones
        inductor_config.compile_threads = inductor_config.decide_compile_threads()
        self.details["compile_threads"] = inductor_config.compile_threads
        self.model = load_model(self.job, attn_implementation=self.options.attn_implementation)

    def prepare(self, inputs) -> None:
        import torch

        self.inputs = {**to_tensors(inputs), **model_call_kwargs(self.case.task)}
        if self.case.generating:
            self.hidden = None
            self.compiled = compiled_generate(self.model, self.options, inputs, self.job, self.generate_context)
        else:
            self.hidden = self.hidden_state_hook()
            self.compiled = torch.compile(
                self.model,
                backend="inductor",
                mode=self.options.mode,
                dynamic=False,
                fullgraph=self.options.fullgraph,
            )
        before = compile_counters()
        entry = get_or_build(self.job.cache_dir, entry_name(self.case), cache_parts(self.job), self.build)
        if entry.hit:
            _, self.timings["restore_ms"] = timed(lambda: keep(entry.path, self.inductor_dir))
            _, self.timings["compile_ms"] = timed(self.run)
        _, self.timings["settling_ms"] = timed(lambda: [self.run() for _ in range(SETTLING_CALLS)])
        self.record(entry, counter_delta(before, compile_counters()))
        self.measured_from = compile_counters()

    def build(self, folder: Path) -> None:
        """Compile in the empty private folder, then keep what inductor wrote there."""
        _, self.timings["compile_ms"] = timed(self.run)
        keep(self.inductor_dir, folder)

    def record(self, entry, compiled: dict) -> None:
        self.details["cache"] = entry.status
        self.details["graphs_compiled"] = compiled["graphs"]
        self.details["graph_breaks"] = compiled["graph_breaks"]
        self.details["fx_graph_cache"] = {"hits": compiled["fx_hits"], "misses": compiled["fx_misses"]}
        self.details["aot_autograd_cache"] = {"hits": compiled["aot_hits"], "misses": compiled["aot_misses"]}
        self.details["inductor_cache_dir"] = inductor_cache_dir()
        self.warnings += cache_warnings(entry.hit, compiled)

    def run(self):
        if self.case.generating:
            return self.compiled()
        with inference_context(self.case.precision):
            return self.compiled(**self.inputs)

    def generate_model(self):
        """The model, its generation config set for a static cache and compiled decode steps (module doc)."""
        return self.model

    def generate_context(self):
        return inference_context(self.case.precision)

    def after_measurement(self) -> None:
        recompiled = counter_delta(self.measured_from, compile_counters())["graphs"]
        self.details["recompilations"] = recompiled
        if recompiled:
            self.warnings.append(
                f"torch.compile compiled {recompiled} more graph(s) while measuring: "
                "the samples include compilation; check for a guard that changes between calls"
            )

    def hidden_state_hook(self):
        """Attached before compiling, so the graph measured is the graph checked (it returns one tensor more)."""
        if self.case.task == "feature-extraction":
            return None
        from bench.measure.hidden_state import hook_or_reason

        hook = hook_or_reason(self.model, persistent=True)
        return hook if isinstance(hook, str) else hook.attach()

    def hidden_state(self):
        return self.hidden

    def effective(self) -> dict:
        generation = {}
        if self.case.generating:
            config = self.model.generation_config
            generation = {
                "cache_implementation": config.cache_implementation,
                "compiled": "decode steps" if config.compile_config is not None else "nothing",
            }
        return {
            **torch_effective(),
            **generation,
            "attn_implementation": self.model.config._attn_implementation,
            "compiler_backend": "inductor",
            "mode": self.options.mode,
            "dynamic": False,
            "fullgraph": self.options.fullgraph,
            **caches_enabled(),
        }


def compiled_generate(model, options: TorchCompileOptions, inputs: dict, job: Job, context):
    """A generate call (bench.measure.generation) on the model set up for transformers' compiled decoding."""
    from transformers import CompileConfig

    from bench.measure.generation import GenerationCall

    config = CompileConfig(fullgraph=options.fullgraph, dynamic=False, backend="inductor", mode=options.mode)
    config._compile_all_devices = True  # transformers compiles on CUDA only unless told
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = config
    return GenerationCall(model, inputs, job.case.new_tokens, job.vocab["pad_token_id"], context)


def cache_parts(job: Job) -> dict:
    """As a TorchScript module's key, plus the threads and the CPU: inductor's kernels are built for both."""
    import torch

    parts = case_cache_parts(job, "torch_compile")
    parts["threads"] = job.case.threads
    parts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    parts["hidden_state_hook"] = job.case.task != "feature-extraction" and not job.case.generating
    if job.case.generating:
        parts["new_tokens"] = job.case.new_tokens  # the static cache's length, part of the compiled shape
    return parts


def entry_name(case: Case) -> str:
    return f"torch_compile-{case.model}-{case.precision}" + ("-generate" if case.generating else "")


def private_inductor_dir() -> Path:
    """A fresh inductor cache folder for this worker, set before torch is imported; removed when the worker exits."""
    folder = tempfile.mkdtemp(prefix="bench-inductor-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return Path(folder)


def keep(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*NOT_KEPT), dirs_exist_ok=True)


def caches_enabled() -> dict:
    import torch._functorch.config
    import torch._inductor.config
    import torch.compiler.config

    return {
        "fx_graph_cache": bool(torch._inductor.config.fx_graph_cache),
        "autograd_cache": bool(torch._functorch.config.enable_autograd_cache),
        "caches_force_disabled": bool(torch.compiler.config.force_disable_caches),
    }


def cache_warnings(hit: bool, compiled: dict) -> list[str]:
    """A cached compile that inductor did not reuse: its caches are off, or their keys differ from the entry's."""
    enabled = caches_enabled()
    if not enabled["fx_graph_cache"] or not enabled["autograd_cache"] or enabled["caches_force_disabled"]:
        return [f"inductor's caches are not all on ({enabled}): a later run recompiles from scratch"]
    if hit and (compiled["fx_misses"] or compiled["aot_misses"]):
        return [
            f"the cached compile did not serve this one: {compiled['fx_misses']} FX graph and "
            f"{compiled['aot_misses']} AOTAutograd cache miss(es) (another compiler or inductor config?)"
        ]
    return []


def compile_counters() -> dict:
    """dynamo's own counters: graphs compiled, graph breaks, FX graph and AOTAutograd cache hits and misses."""
    from torch._dynamo.utils import counters

    return {
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "fx_hits": counters["inductor"]["fxgraph_cache_hit"],
        "fx_misses": counters["inductor"]["fxgraph_cache_miss"],
        "aot_hits": counters["aot_autograd"]["autograd_cache_hit"],
        "aot_misses": counters["aot_autograd"]["autograd_cache_miss"],
    }


def counter_delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before[name] for name in after}


def inductor_cache_dir() -> str:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()

