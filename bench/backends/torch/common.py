"""What every torch-based backend shares: thread setup, tensors, the autocast context, effective settings."""

from __future__ import annotations

import contextlib


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


def model_call_kwargs(task: str) -> dict:
    """A causal LM is measured on its forward pass (prefill) without a KV cache."""
    return {"use_cache": False} if task == "text-generation" else {}
