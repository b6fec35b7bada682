"""What makes two runs comparable: the kind of machine they ran on, and the software they ran with.

A machine's identity is what decides its speed and can be read from the manifest: the CPU model, its ISA flags,
the number of logical CPUs and the memory size in whole GiB (kernels of one machine type report a few MB apart).
The key is made of the flags every manifest has recorded (bench.cpu.KEY_FLAGS), so a run recorded before more flags
were read keeps its key; two manifests are compared on the flags both recorded.
The hostname is not part of it: two nodes of one type are the same kind of machine. The key, a readable name and a
digest of that identity, names the folder baselines are kept in.
"""

from __future__ import annotations

import hashlib
import json
import re

from bench.cpu import KEY_FLAGS
from bench.errors import BenchError


def machine_identity(machine: dict | None, where: str = "manifest.json") -> dict:
    """cpu_model, isa (the flags present), logical_cpus, memory_gib: the fields that name the kind of machine."""
    cpu = (machine or {}).get("cpu") or {}
    model = cpu.get("model")
    if not isinstance(model, str) or not model:
        raise BenchError(f"{where}: machine.cpu.model: expected the CPU model, got {model!r}")
    memory = (machine or {}).get("memory_gib")
    return {
        "cpu_model": model,
        "isa": sorted(flag for flag, present in (cpu.get("isa") or {}).items() if present and flag in KEY_FLAGS),
        "logical_cpus": cpu.get("logical_cpus"),
        "memory_gib": round(memory) if isinstance(memory, (int, float)) else None,
    }


def machine_key(identity: dict) -> str:
    """A folder name for the kind of machine: `<cpu model>-<N>cpu-<M>gib-<digest>`."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"\((r|tm)\)|cpu @.*$", "", identity["cpu_model"].lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-")[:40] or "cpu"
    return f"{slug}-{identity['logical_cpus']}cpu-{identity['memory_gib']}gib-{digest}"


def kind_key(machine: dict | None, where: str = "manifest.json") -> str:
    """The machine_key of a manifest's `machine` section; a BenchError naming `where` when it names no CPU model."""
    return machine_key(machine_identity(machine, where))


def kind_key_if_known(machine: dict) -> str | None:
    """kind_key, or None when the section names no CPU model."""
    return kind_key(machine) if (machine.get("cpu") or {}).get("model") else None


def identity_differences(base: dict, new: dict, base_isa: dict | None = None, new_isa: dict | None = None) -> list[str]:
    """Each field of the machine identity that differs, as `machine.FIELD: BASE (base) vs NEW (new)`; with the
    manifests' own `isa` maps, the flags are compared over those both recorded."""
    if base_isa is not None and new_isa is not None:
        both = base_isa.keys() & new_isa.keys()
        base = {**base, "isa": sorted(f for f in both if base_isa[f])}
        new = {**new, "isa": sorted(f for f in both if new_isa[f])}
    found = []
    for key in base.keys() | new.keys():
        if base.get(key) != new.get(key):
            if key == "isa":
                only_base = sorted(set(base[key]) - set(new[key]))
                only_new = sorted(set(new[key]) - set(base[key]))
                found.append(f"machine.isa: only in base {only_base or 'none'}, only in new {only_new or 'none'}")
            else:
                found.append(f"machine.{key}: {base.get(key)!r} (base) vs {new.get(key)!r} (new)")
    return sorted(found)


def software_differences(base: dict | None, new: dict | None) -> list[str]:
    """Python and package versions of the main environment that differ between two manifests' `software`."""
    base, new = base or {}, new or {}
    found = []
    if base.get("python") != new.get("python"):
        found.append(f"software.python: {base.get('python')} (base) vs {new.get('python')} (new)")
    found += version_differences("software.packages", base.get("packages") or {}, new.get("packages") or {})
    return found


def version_differences(label: str, base: dict, new: dict) -> list[str]:
    return [
        f"{label}.{package}: {base.get(package)} (base) vs {new.get(package)} (new)"
        for package in sorted(base.keys() | new.keys())
        if base.get(package) != new.get(package)
    ]
