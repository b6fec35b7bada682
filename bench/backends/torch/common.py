"""What the torch-based backends share: their declaration, thread setup, tensors, the autocast context, tracing,
the cache key of a module built for one case, IPEX's import, and the effective settings."""

from __future__ import annotations

import contextlib
import copy
import os
import sys

from bench.backends.artifacts import package_versions
from bench.backends.base import Backend
from bench.job import Job, Unsupported

FROZEN_OUTPUTS = "the frozen TorchScript module returns only the task outputs it was traced with"
TORCH = ("torch", "transformers")
"""What every torch backend imports and records, and what a module built by torch (a frozen graph, inductor's
kernels) depends on."""


class TorchBackend(Backend, thread_family="torch", requires=TORCH, records=TORCH):
    """A backend that runs torch in the worker; by default on `self.model`, under autocast for bf16."""

    def hidden_state(self):
        from bench.measure.hidden_state import hook_or_reason

        return hook_or_reason(self.model)

    def precision_mode(self) -> dict:
        from bench.backends.precision_mode import torch_mode

        return torch_mode(self.model, self.case.precision, autocast=self.case.precision == "bf16")


class IpexUser(
    TorchBackend,
    environment="intel",
    requires=(*TORCH, "intel_extension_for_pytorch"),
    records=(*TORCH, "intel-extension-for-pytorch"),
):
    """A torch backend that imports Intel Extension for PyTorch (import_ipex), so runs in the intel environment."""


def configure_torch(settings: dict):
    """Apply the thread translation; must run before torch does any parallel work."""
    import torch

    torch.set_num_threads(settings["intra_op_threads"])
    with contextlib.suppress(RuntimeError):  # already set once in this process
        torch.set_num_interop_threads(settings["inter_op_threads"])
    return torch


def to_tensors(inputs: dict) -> dict:
    import torch

    return {name: torch.from_numpy(value) for name, value in inputs.items()}


def inference_context(precision: str):
    """inference_mode, plus bf16 autocast for precision bf16."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if precision == "bf16":
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


def torch_effective() -> dict:
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch": torch.__version__,
    }


def traceable_job(job: Job) -> Job:
    """The job with the config transformers expects for tracing: tuple outputs, and no KV cache for a causal LM."""
    job = copy.deepcopy(job)
    overrides = job.case.model_entry.setdefault("config_overrides", {})
    overrides["torchscript"] = True
    if job.case.task == "text-generation":
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


def case_cache_parts(job: Job, backend: str) -> dict:
    """What a module built for this case depends on: the model, the case's inputs, precision, options, versions.

    The inputs' shape and the seed are in the key because a trace (or a static-shape compile) is specialised to the
    example it was made with: a causal LM's trace keeps its causal mask as a constant of its sequence length.
    Threads are not: the caller adds them where they matter.
    """
    case = job.case
    return {
        "backend": backend,
        "model": job.source.identity,
        "task": case.task,
        "precision": case.precision,
        "options": dict(sorted(case.backend_options.items())),
        "shape": {"batch": case.batch_size, "seq_len": case.seq_len, "padding": case.padding_ratio},
        "seed": case.seed,
        "versions": package_versions(TORCH),
    }


IPEX_ISA_REFUSAL = "needs the cpu support"
"""In IPEX's own error when this CPU lacks the instructions a precision's weight prepack needs."""


@contextlib.contextmanager
def ipex_cpu_refusal():
    """IPEX refusing a precision on this CPU is the case's status unsupported, in IPEX's words, not an error."""
    try:
        yield
    except RuntimeError as exc:
        if IPEX_ISA_REFUSAL not in str(exc):
            raise
        said = next((line.strip() for line in str(exc).splitlines() if IPEX_ISA_REFUSAL in line), str(exc))
        raise Unsupported(f"IPEX refuses this precision on this CPU: {said}") from exc


def import_ipex():
    """The one place that imports Intel Extension for PyTorch: its import changes every TorchScript graph of its
    process. IPEX imports torch._inductor, which forks a pool of compile workers unless told to compile in-process:
    nothing here compiles, and the pool would compete with the measured threads."""
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    config = sys.modules.get("torch._inductor.config")
    if config is not None:  # already imported (a worker forked warm): it read the variable then, so set it now
        config.compile_threads = int(os.environ["TORCHINDUCTOR_COMPILE_THREADS"])
    import intel_extension_for_pytorch as ipex

    return ipex


def child_processes() -> int:
    """Processes this worker started (a compile pool would be one); they would share the pinned CPUs."""
    import psutil

    return len(psutil.Process().children(recursive=True))
