"""Intel Extension for PyTorch: ipex.optimize (fp32 or bf16 weights), then by default torch.jit.trace + freeze.

The guide's "IPEX graph optimization". bf16 is traced and run under CPU autocast. IPEX is imported only by this
backend and the Trainer (through common.import_ipex): the import changes every TorchScript graph in its process,
and each case runs in a process of its own.

A text generation case runs ipex.optimize's model in eager mode (a trace cannot hold generate's loop or its KV
cache), so the jit option applies to forward-pass cases only; the row's effective.jit says what ran.
"""

from __future__ import annotations

import collections
from typing import Literal

from pydantic import Field

from bench.backends.options import Options
from bench.backends.torch.common import (
    FROZEN_OUTPUTS,
    IpexUser,
    child_processes,
    configure_torch,
    import_ipex,
    inference_context,
    ipex_cpu_refusal,
    to_tensors,
    torch_effective,
    trace_context,
    traceable_job,
)
from bench.measure.loading import load_model, model_call_kwargs
from bench.measure.timing import timed


class IpexOptions(Options):
    jit: bool = Field(True, description="After ipex.optimize, torch.jit.trace + torch.jit.freeze (graph mode).")
    auto_kernel_selection: bool = Field(False, description="ipex.optimize's auto_kernel_selection (oneDNN linear).")
    attn_implementation: Literal["eager", "sdpa"] = "eager"


class IpexBackend(IpexUser, name="ipex", options_model=IpexOptions, precisions=("fp32", "bf16"), generates=True):
    """Its precision mode is the torch default: ipex.optimize(dtype=bf16) converts the weights, and the calls
    (traced or not) also run under autocast."""

    def load(self) -> None:
        configure_torch(self.threads)
        self.ipex, self.timings["ipex_import_ms"] = timed(import_ipex)
        job = traceable_job(self.job) if self.jit else self.job
        self.model = load_model(job, attn_implementation=self.options.attn_implementation)

    def prepare(self, inputs) -> None:
        import torch

        dtype = torch.bfloat16 if self.case.precision == "bf16" else torch.float32
        with ipex_cpu_refusal():
            self.model, self.timings["ipex_optimize_ms"] = timed(
                lambda: self.ipex.optimize(
                    self.model, dtype=dtype, auto_kernel_selection=self.options.auto_kernel_selection, inplace=True
                )
            )
        self.inputs = to_tensors(inputs)
        self.call_kwargs = {}
        if not self.jit:
            self.call_kwargs = model_call_kwargs(self.case.task)
            self.module = self.model
            return
        with trace_context(self.case.precision):  # the accuracy gate, not check_trace, judges the graph
            traced, self.timings["trace_ms"] = timed(
                lambda: torch.jit.trace(self.model, example_kwarg_inputs=self.inputs, strict=False, check_trace=False)
            )
        self.module, self.timings["freeze_ms"] = timed(lambda: torch.jit.freeze(traced.eval()))
        self.profile()

    def profile(self) -> None:
        """The profiling executor records shapes on its first runs and applies IPEX's fusions on the next one."""
        import torch

        runs = torch._C._jit_get_num_profiled_runs() + 1
        _, self.timings["profiling_ms"] = timed(lambda: [self.run() for _ in range(runs)])
        self.details["profiling_runs"] = runs
        self.details["fused_ops"] = fused_ops(torch.jit.last_executed_optimized_graph())

    @property
    def jit(self) -> bool:
        return self.options.jit and not self.case.generating

    def run(self):
        with inference_context(self.case.precision):
            return self.module(**self.inputs, **self.call_kwargs)

    def generate_model(self):
        return self.model

    def generate_context(self):
        return inference_context(self.case.precision)

    def hidden_state(self):
        return FROZEN_OUTPUTS if self.jit else super().hidden_state()

    def effective(self) -> dict:
        import torch

        return {
            **torch_effective(),
            "threads": torch.get_num_threads(),
            "ipex": self.ipex.__version__,
            "ipex_isa": self.ipex._C._get_current_isa_level(),
            "onednn_isa": self.ipex._C._get_current_onednn_isa_level(),
            "jit": self.jit,
            "auto_kernel_selection": self.options.auto_kernel_selection,
            "weights_dtype": str(next(self.model.parameters()).dtype),
            "attn_implementation": self.model.config._attn_implementation,
            "child_processes": child_processes(),
        }


def fused_ops(graph) -> dict[str, int]:
    """IPEX's own operators in the optimized graph (ipex::...): evidence that its fusions took effect."""
    counts = collections.Counter(node.kind() for node in graph.nodes() if node.kind().startswith("ipex"))
    return dict(sorted(counts.items()))

