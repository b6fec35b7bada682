"""The machine and environment a run was measured on, as (label, text) pairs every report format shows."""

from __future__ import annotations

ISA_GROUPS = (
    ("AVX-512", ("avx512f", "avx512bw", "avx512vl")),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("BF16", ("avx512_bf16", "amx_bf16")),
    ("AMX", ("amx_tile", "amx_bf16", "amx_int8")),
)


def isa_text(isa: dict) -> str:
    parts = []
    for name, flags in ISA_GROUPS:
        present = [f for f in flags if isa.get(f)]
        parts.append(f"{name}: {'yes (' + ', '.join(present) + ')' if present else 'no'}")
    other = [f for f, on in isa.items() if on and not any(f in flags for _, flags in ISA_GROUPS)]
    if other:
        parts.append("also " + ", ".join(other))
    return "; ".join(parts)


def tier_text(cpu: dict) -> str:
    """`tier AVX2 (flags faked); ` before the flags, for a manifest that records them."""
    from bench.cpu import FAKE_FLAGS_VAR, isa_tier

    isa = cpu.get("isa")
    if not isa:
        return ""
    tier = cpu.get("isa_tier") or isa_tier({flag for flag, present in isa.items() if present})
    return f"tier {tier}" + (f" (flags faked by {FAKE_FLAGS_VAR})" if cpu.get("fake_flags") is not None else "") + "; "


def when_text(runs: list[dict]) -> str:
    spans = [f"{r.get('started')} to {r.get('finished') or 'unfinished'}" for r in runs]
    spans = [("resumed " if r.get("resumed") else "") + span for r, span in zip(runs, spans)]
    return "; ".join(spans) or "unknown"


def machine_items(manifest: dict) -> list[tuple[str, str]]:
    machine = manifest.get("machine") or {}
    cpu = machine.get("cpu") or {}
    git = manifest.get("git") or {}
    software = manifest.get("software") or {}
    commit = git.get("commit") or "unknown"
    allowed = cpu.get("allowed_cpus") or []
    return [
        ("CPU", str(cpu.get("model", "several: see Machines" if manifest.get("merged") else "unknown"))),
        ("ISA", tier_text(cpu) + isa_text(cpu.get("isa") or {})),
        ("Cores", f"{cpu.get('logical_cpus', '?')} logical CPUs, {len(allowed)} usable by the run"),
        ("Memory", f"{machine.get('memory_gib', '?')} GiB"),
        ("OS", str(machine.get("platform") or machine.get("os") or "unknown")),
        ("Python", f"{software.get('python', '?')} ({software.get('executable', '?')})"),
        ("Packages", ", ".join(f"{k} {v}" for k, v in (software.get("packages") or {}).items()) or "unknown"),
        ("Git commit", commit + (" with uncommitted changes" if git.get("dirty") else "")),
        ("When", when_text(manifest.get("runs") or [])),
        ("Suite", f"{(manifest.get('suite') or {}).get('name', '?')} ({manifest.get('suite_file', '?')})"),
        ("Filters", " ".join(manifest.get("filters") or []) or "none"),
        *merged_items(manifest.get("merged")),
    ]


def merged_items(merged: dict | None) -> list[tuple[str, str]]:
    """For a folder made by `bench merge`: the folders and machines it gathers (the lines above are what all share)."""
    if not merged:
        return []
    machines = merged.get("machines") or {}
    hosts = [f"{host} ({(m.get('cpu') or {}).get('model', '?')})" for host, m in machines.items()]
    folders = [f"{s.get('folder')} on {s.get('machine')}: {s.get('rows')} rows" for s in merged.get("shards") or []]
    missing = len(merged.get("missing") or [])
    return [
        ("Machines", "; ".join(hosts) + (" (each with its own matmul peak: see Matmul peak)" if hosts[1:] else "")),
        ("Merged from", "; ".join(folders) + (f"; {missing} planned cases have no row" if missing else "")),
    ]


def peak_rows(peak: dict | None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the matmul peak table: one row per precision, one column per thread count."""
    if not peak or not peak.get("gflops"):
        return [], []
    counts = sorted({int(t) for rates in peak["gflops"].values() for t in rates})
    header = ["precision", *(f"{t} thread{'s' if t > 1 else ''} GFLOP/s" for t in counts)]
    rows = [
        [str(precision), *(f"{rates[str(t)]:.1f}" if str(t) in rates else "-" for t in counts)]
        for precision, rates in peak["gflops"].items()
    ]
    return header, rows


def peak_note(peak: dict | None, machine: bool = False) -> str:
    """How the peak was measured; `machine`: the peak of one machine of a run that holds several."""
    if not peak and machine:
        return "No matmul peak was recorded for this machine: its cases have no % of peak."
    if not peak:
        return "No matmul peak in this run's manifest (the run was made with --no-peak): no % of peak column."
    note = f"Measured {peak.get('measured')} in {peak.get('seconds')} s with torch {peak.get('torch')}: "
    note += f"{peak.get('method')}."
    if peak.get("errors"):
        note += " Not measured: " + "; ".join(map(str, peak["errors"])) + "."
    if peak.get("notes"):
        note += " " + "; ".join(map(str, peak["notes"])) + "."
    after = peak.get("after")
    if after:
        moved = after.get("moved") or []
        note += f" Probed again after the run ({after.get('measured')}): " + (
            "the machine's speed changed over the run, so figures measured early and late are not alike: "
            + "; ".join(moved) + "." if moved else "every figure within 5% of the probe before it."
        )
    return note


ENVIRONMENT_HEADER = ["environment", "cases", "Python", "packages"]


def environment_rows(rows: list[dict]) -> list[list[str]]:
    """One line per environment the cases ran in: its Python and package versions, as its workers reported them."""
    found: dict[str, dict] = {}
    for row in rows:
        name = str(row.get("environment") or "main")
        seen = found.setdefault(name, {"cases": 0, "python": None, "versions": {}})
        seen["cases"] += 1
        effective = row.get("effective") or {}
        seen["python"] = seen["python"] or effective.get("python")
        for package, version in (effective.get("versions") or {}).items():
            seen["versions"].setdefault(package, version)
    return [
        [name, str(seen["cases"]), str(seen["python"] or "not recorded"),
         ", ".join(f"{k} {v}" for k, v in seen["versions"].items() if v) or "not recorded"]
        for name, seen in sorted(found.items())
    ]  # fmt: skip
