"""What this CPU can run: its instruction-set flags, and each library's own rule for each backend's precision.

A reduced precision lands in one of four tiers:
- native: the CPU has instructions for it (bf16: AVX512_BF16 or AMX-BF16);
- emulated: it runs with that precision's numerics but without those instructions, slowly (torch autocast on AVX2,
  IPEX or OpenVINO bf16 on AVX-512 without AVX512_BF16). Not measured unless asked for (`--emulated`);
- unsupported: the library refuses to run it on this CPU (IPEX bf16 without AVX-512 BW/VL/DQ or AVX-NE-CONVERT);
- kept fp32: the library accepts the request and silently computes fp32 (OpenVINO's bf16 hint on AVX2). Not
  measured unless asked for (`--emulated`): it would measure the fp32 case again.

The rules are the libraries' own: IPEX's bf16 weight prepack check, OpenVINO's CPU plugin's `hasHardwareSupport`
and default inference precision, oneDNN's `avx512_core_bf16`. A worker reads back what the library did (OpenVINO's
execution precision, IPEX's ISA level, torch's CPU capability), and the row says which tier it ran in.

`BENCH_FAKE_CPU_FLAGS` (test hook) replaces the flags read from /proc/cpuinfo, so the decisions can be exercised on
any machine; a run made with it says so in its manifest and cannot become a baseline.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

FAKE_FLAGS_VAR = "BENCH_FAKE_CPU_FLAGS"
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni", "avx_vnni_int8",
    "avx512_bf16", "avx512_fp16", "avx_ne_convert", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
)  # fmt: skip
KEY_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
"""The flags machine keys were made of before more were read: a key stays the same for the same machine."""

NATIVE = "native"
EMULATED = "emulated"
UNSUPPORTED = "unsupported"
KEPT_FP32 = "kept fp32"

EMULATED_HINT = "not measured; `--emulated` measures it"
KEPT_FP32_HINT = "it would measure fp32 again"
FP32_SIZED_ERROR = 1e-5
"""A bf16 or int8 row whose relative error against eager fp32 is below this computed fp32 (fp32 reorderings give
1e-7 to 1e-6; bf16 gives 1e-3 to 1e-2)."""

TORCH_BF16 = ("pytorch", "torchscript", "torch_compile")


def cpuinfo_flags(cpuinfo_text: str | None = None) -> set[str]:
    """The `flags` line of /proc/cpuinfo (ARM's `Features`), as a set."""
    if cpuinfo_text is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo_text = handle.read()
        except OSError:
            return set()
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def fake_flags() -> set[str] | None:
    """The flags BENCH_FAKE_CPU_FLAGS gives (comma- or space-separated), or None when it is not set."""
    value = os.environ.get(FAKE_FLAGS_VAR)
    if value is None:
        return None
    return set(value.replace(",", " ").split())


def cpu_flags(cpuinfo_text: str | None = None) -> set[str]:
    """The flags the harness decides with: the fake ones when set, else this CPU's."""
    faked = fake_flags()
    return faked if faked is not None else cpuinfo_flags(cpuinfo_text)


def has_all(flags, *names: str) -> bool:
    return all(name in flags for name in names)


def has_any(flags, *names: str) -> bool:
    return any(name in flags for name in names)


def avx512_core(flags) -> bool:
    """oneDNN's avx512_core: AVX-512 F, BW, VL and DQ."""
    return has_all(flags, "avx512f", "avx512bw", "avx512vl", "avx512dq")


def bf16_native(flags) -> bool:
    return has_any(flags, "avx512_bf16", "amx_bf16")


def int8_dot_product(flags) -> bool:
    """VNNI in any form: AVX-512 VNNI, AVX-VNNI or AMX-INT8."""
    return has_any(flags, "avx512_vnni", "avx_vnni", "amx_int8")


def isa_tier(flags, machine: str | None = None) -> str:
    """The highest tier that decides what runs: AMX, AVX-512 BF16, AVX-512 VNNI, AVX-512, AVX2 (or the architecture)."""
    machine = machine or platform.machine()
    if machine.lower() in ("aarch64", "arm64"):
        return "ARM64"
    if has_any(flags, "amx_tile", "amx_bf16", "amx_int8"):
        return "AMX"
    if avx512_core(flags) and "avx512_bf16" in flags:
        return "AVX-512 BF16"
    if avx512_core(flags) and "avx512_vnni" in flags:
        return "AVX-512 VNNI"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2 + AVX-VNNI" if "avx_vnni" in flags else "AVX2"
    return machine or "unknown"


@dataclass(frozen=True)
class Support:
    tier: str
    reason: str | None = None
    """In the user's words; None for a native precision."""

    def to_dict(self) -> dict:
        return asdict(self)


def support(backend_type: str, precision: str, flags, options: dict | None = None) -> Support:
    """The tier a backend's precision runs in on a CPU with `flags`, by that library's own rule."""
    options = options or {}
    tier = isa_tier(flags)
    if precision != "bf16":
        return Support(NATIVE)  # fp32 runs anywhere; int8 runs each library's integer kernels (its recipe per ISA)
    if backend_type == "ipex" or (backend_type == "trainer" and options.get("use_ipex", True)):
        if not (avx512_core(flags) or "avx_ne_convert" in flags):
            return Support(UNSUPPORTED, f"bf16 on IPEX needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT; this CPU has {tier}")
    elif backend_type == "openvino":
        if not (avx512_core(flags) or "avx_ne_convert" in flags):
            return Support(
                KEPT_FP32,
                f"OpenVINO runs a bf16 hint as f32 without AVX-512 BW/VL/DQ or AVX-NE-CONVERT; this CPU has {tier}",
            )
    if bf16_native(flags):
        return Support(NATIVE)
    return Support(EMULATED, "bf16 is emulated on this CPU (no AVX512_BF16/AMX)")


INT8_RECIPES = ("avx512_vnni", "avx512", "avx2", "arm64")


def int8_recipe(flags, machine: str | None = None) -> str:
    """ONNX Runtime's dynamic quantization config (optimum's AutoQuantizationConfig) for this CPU.

    u8s8 products saturate without VNNI (ONNX Runtime's quantization docs), so VNNI in any form takes avx512_vnni,
    AVX-512 without it takes avx512 with reduce_range, and AVX2 takes avx2 (u8u8, reduce_range).
    """
    machine = machine or platform.machine()
    if machine.lower() in ("aarch64", "arm64"):
        return "arm64"
    if int8_dot_product(flags):
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def not_measured_reason(support: Support) -> str | None:
    """Why a case of this tier is left out of a run that did not ask for `--emulated`; None when it is measured."""
    if support.tier == EMULATED:
        return f"{support.reason}: {EMULATED_HINT}"
    if support.tier == KEPT_FP32:
        return f"{support.reason}: {KEPT_FP32_HINT}; {EMULATED_HINT}"
    return None


def cpu_section(cpuinfo_text: str | None = None) -> dict:
    """The manifest's view of the flags: each flag read, where they came from, and the tier."""
    faked = fake_flags()
    flags = faked if faked is not None else cpuinfo_flags(cpuinfo_text)
    section = {"isa": {flag: flag in flags for flag in ISA_FLAGS}, "isa_tier": isa_tier(flags)}
    if faked is not None:
        section["fake_flags"] = sorted(faked)
    return section


def settled(support: Support, row: dict, flags) -> tuple[dict, list[str]]:
    """The row's `cpu_support`: the tier foreseen from the flags, corrected by what the library reported it computed
    (the row's precision mode), and a warning when a bf16 or int8 row's error against eager fp32 is fp32-sized."""
    entry = support.to_dict()
    precision = row.get("precision")
    if row.get("status") != "ok" or precision == "fp32":
        return entry, []
    compute = (row.get("precision_mode") or {}).get("compute")
    if precision == "bf16" and compute == "fp32" and support.tier != KEPT_FP32:
        entry = {"tier": KEPT_FP32, "reason": f"{row.get('backend_type')} reports computing fp32 for a bf16 case"}
    elif precision == "bf16" and compute == "bf16" and support.tier == KEPT_FP32:
        entry = {"tier": NATIVE if bf16_native(flags) else EMULATED, "reason": f"{row.get('backend_type')} reports"
                 " computing bf16 where its rule foresaw fp32"}  # fmt: skip
    error = (row.get("accuracy") or {}).get("relative_error")
    if not isinstance(error, (int, float)) or error >= FP32_SIZED_ERROR:
        return entry, []
    entry["fp32_sized_error"] = error
    return entry, [
        f"did it run fp32? a {precision} case whose relative error against eager fp32 is fp32-sized ({error:.2g})"
    ]


def cpu_header_text(manifest: dict) -> str | None:
    """`CPU: MODEL, ISA tier AVX2 (bf16 emulated, int8 without VNNI)`: one line for a run's table; None when the
    manifest records no flags."""
    if manifest.get("merged"):
        return "CPU: several machines (see each machine's heading)"
    cpu = (manifest.get("machine") or {}).get("cpu") or {}
    isa = cpu.get("isa")
    if not isa:
        return None
    flags = {flag for flag, present in isa.items() if present}
    tier = cpu.get("isa_tier") or isa_tier(flags)
    bf16 = "bf16 native" if bf16_native(flags) else "bf16 emulated or unsupported"
    int8 = "int8 with VNNI" if int8_dot_product(flags) else "int8 without VNNI"
    faked = f"; flags faked by {FAKE_FLAGS_VAR}" if cpu.get("fake_flags") is not None else ""
    return f"CPU: {cpu.get('model', 'unknown')}, ISA tier {tier} ({bf16}, {int8}){faked}"
