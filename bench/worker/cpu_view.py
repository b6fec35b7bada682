"""Each library's own view of the CPU, read in the worker of the case's environment (torch 2.13 and 2.8 differ).

Only libraries the case has already imported are asked: reading a view never costs an import.
"""

from __future__ import annotations

import os
import sys

CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def cpu_view() -> dict:
    from bench.cpu import fake_flags

    view: dict = {"flags": "faked" if fake_flags() is not None else "cpuinfo"}
    caps = {name: os.environ[name] for name in CAP_VARIABLES if name in os.environ}
    if caps:
        view["caps"] = caps
    for name, read in (("torch", torch_view), ("openvino", openvino_view), ("ipex", ipex_view)):
        module = sys.modules.get(name if name != "ipex" else "intel_extension_for_pytorch")
        if module is not None:
            view[name] = asked(lambda: read(module))
    return view


def asked(read) -> dict:
    try:
        return read()
    except Exception as exc:  # a view is information: an API this version lacks is said, not raised
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def torch_view(torch) -> dict:
    """ATen's kernel capability, torch's own reading of the bf16 and AMX flags, and oneDNN's bf16 support (which
    includes its AVX-512 emulation)."""
    import torch.cpu

    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx_tile": bool(torch.cpu._is_amx_tile_supported()),
        "vnni": bool(torch.cpu._is_vnni_supported()),
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }


def openvino_view(openvino) -> dict:
    core = openvino.Core()
    return {"optimization_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}


def ipex_view(ipex) -> dict:
    return {"isa": ipex._C._get_current_isa_level(), "onednn_isa": ipex._C._get_current_onednn_isa_level()}
