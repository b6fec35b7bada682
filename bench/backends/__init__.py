"""The backend registry: each backend class declares what the parent needs to know of it (bench.backends.base).

Importing it imports no numerical library: a backend module imports those inside its methods, in the worker.
"""

from __future__ import annotations

from bench.backends.base import Backend, BackendInfo
from bench.backends.onnxruntime.runtime import OnnxruntimeBackend
from bench.backends.openvino.runtime import OpenvinoBackend
from bench.backends.torch.bettertransformer import BetterTransformerBackend
from bench.backends.torch.compile import TorchCompileBackend
from bench.backends.torch.eager import PytorchBackend
from bench.backends.torch.ipex import IpexBackend
from bench.backends.torch.torchscript import TorchScriptBackend
from bench.backends.torch.trainer import TrainerBackend

REGISTERED: tuple[type[Backend], ...] = (
    PytorchBackend,
    TorchScriptBackend,
    TorchCompileBackend,
    OnnxruntimeBackend,
    OpenvinoBackend,
    IpexBackend,
    BetterTransformerBackend,
    TrainerBackend,
)
BACKENDS: dict[str, BackendInfo] = {backend.name: BackendInfo.of(backend) for backend in REGISTERED}


def backend_class(name: str) -> type[Backend]:
    return BACKENDS[name].backend


def recorded_packages() -> tuple[str, ...]:
    """Every backend's recorded distributions, each once, in the registry's order."""
    return tuple(dict.fromkeys(package for info in BACKENDS.values() for package in info.records))
