"""The backend registry: name → module, environment, precisions and options model. Imports nothing heavy."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bench.backends import options as opts

if TYPE_CHECKING:
    from bench.backends.base import Backend


@dataclass(frozen=True)
class BackendInfo:
    module: str
    environment: str
    precisions: tuple[str, ...]
    options: type[BaseModel]
    thread_family: str
    """Which thread translation applies (see bench.run.threads.thread_settings)."""


BACKENDS: dict[str, BackendInfo] = {
    "pytorch": BackendInfo("bench.backends.torch.eager", "main", ("fp32", "bf16"), opts.PytorchOptions, "torch"),
    "torchscript": BackendInfo(
        "bench.backends.torch.torchscript", "main", ("fp32", "bf16"), opts.TorchscriptOptions, "torch"
    ),
    "torch_compile": BackendInfo(
        "bench.backends.torch.compile", "main", ("fp32", "bf16"), opts.TorchCompileOptions, "torch"
    ),
    "onnxruntime": BackendInfo(
        "bench.backends.onnxruntime.runtime", "main", ("fp32", "int8"), opts.OnnxruntimeOptions, "onnxruntime"
    ),
    "openvino": BackendInfo(
        "bench.backends.openvino.runtime", "main", ("fp32", "bf16", "int8"), opts.OpenvinoOptions, "openvino"
    ),
    "ipex": BackendInfo("bench.backends.torch.ipex", "intel", ("fp32", "bf16"), opts.IpexOptions, "torch"),
    "bettertransformer": BackendInfo(
        "bench.backends.torch.bettertransformer", "intel", ("fp32",), opts.BetterTransformerOptions, "torch"
    ),
    "trainer": BackendInfo("bench.backends.torch.trainer", "intel", ("fp32", "bf16"), opts.TrainerOptions, "torch"),
}


def backend_class(name: str) -> type[Backend]:
    """Import a backend's module (in the worker only) and return its class."""
    module = importlib.import_module(BACKENDS[name].module)
    return module.BACKEND
