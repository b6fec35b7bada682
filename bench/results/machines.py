"""Which machine each row of a run folder was measured on, and each machine's name and matmul peak.

A machine is a kind of machine, as baselines key them (bench.results.identity.kind_key): CPU model, ISA flags,
logical CPUs and memory; nodes of one kind are one machine. A row says its machine in `provenance.machine`; a row
merged from another folder names its host in `machine.hostname` (and its key in `machine.key`), which the merged
manifest's `merged.machines` describes. Rows of one machine are compared only with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.results.identity import kind_key_if_known


@dataclass
class Machine:
    """One kind of machine of a run: what names it, its hosts, and its matmul peak when one was measured."""

    key: str | None
    cpu: str | None = None
    logical_cpus: int | None = None
    hosts: list[str] = field(default_factory=list)
    peak: dict | None = None
    """the peak probe of this machine (a merged folder keeps one per folder: the first of its hosts that has one)"""

    @property
    def name(self) -> str:
        """CPU model, logical CPUs and hosts: how the report heads this machine's tables."""
        if self.key is None and self.cpu is None:
            return "unknown machine"
        cores = f"{self.logical_cpus} logical CPUs" if self.logical_cpus else "CPUs unknown"
        hosts = f"host {', '.join(self.hosts)}" if self.hosts else "host unknown"
        return f"{self.cpu or 'unknown CPU'}, {cores}, {hosts}"

    @property
    def short(self) -> str:
        """A plot label: the hosts, else the CPU model."""
        return ", ".join(self.hosts) or self.cpu or "unknown machine"


def host_of(row: dict) -> str | None:
    """The host the row names: its merged `machine.hostname`, else its `provenance.host`."""
    merged = row.get("machine") if isinstance(row.get("machine"), dict) else {}
    provenance = row.get("provenance") if isinstance(row.get("provenance"), dict) else {}
    host = merged.get("hostname") or provenance.get("host")
    return str(host) if host else None


def sections_by_host(manifest: dict) -> dict[str, dict]:
    """Host name → machine section: every folder's of a merged folder, else the manifest's own."""
    merged = manifest.get("merged") if isinstance(manifest.get("merged"), dict) else None
    if merged:
        return {str(h): s for h, s in (merged.get("machines") or {}).items() if isinstance(s, dict)}
    machine = manifest.get("machine") or {}
    return {str(machine.get("hostname")): machine}


def key_of_section(section: dict) -> str | None:
    return kind_key_if_known(section) if isinstance(section, dict) else None


class Machines:
    """The machines of one run folder, read from its manifest; rows are placed on them with `key_of`."""

    def __init__(self, manifest: dict | None = None, peak: dict | None = None):
        manifest = manifest or {}
        self.merged = isinstance(manifest.get("merged"), dict)
        self.hosts = sections_by_host(manifest)
        self.own_key = None if self.merged else key_of_section(manifest.get("machine") or {})
        self.known: dict[str | None, Machine] = {}
        for host, section in self.hosts.items():
            machine = self.add(key_of_section(section), section)
            if host != "None" and host not in machine.hosts:
                machine.hosts.append(host)
            machine.peak = machine.peak or self.peak_of_host(manifest, host)
        if not self.merged and self.own_key in self.known:
            self.known[self.own_key].peak = peak if peak is not None else manifest.get("peak")

    def add(self, key: str | None, section: dict | None = None) -> Machine:
        if key not in self.known:
            cpu = (section or {}).get("cpu") or {}
            self.known[key] = Machine(key, cpu.get("model"), cpu.get("logical_cpus"))
        return self.known[key]

    def peak_of_host(self, manifest: dict, host: str) -> dict | None:
        shards = (manifest.get("merged") or {}).get("shards") if self.merged else []
        return next((s["peak"] for s in shards or [] if str(s.get("machine")) == host and s.get("peak")), None)

    def key_of(self, row: dict) -> str | None:
        """The kind key of the machine the row was measured on; None when neither the row nor the manifest says."""
        provenance = row.get("provenance") if isinstance(row.get("provenance"), dict) else {}
        if isinstance(provenance.get("machine"), str):
            return provenance["machine"]
        merged = row.get("machine") if isinstance(row.get("machine"), dict) else {}
        if isinstance(merged.get("key"), str):
            return merged["key"]
        host = host_of(row)
        if self.merged or host in self.hosts and host != "None":
            return key_of_section(self.hosts.get(str(host)) or {})
        return self.own_key

    def of(self, row: dict) -> Machine:
        """The row's machine; one the manifest does not describe is named from what the row says of it."""
        key = self.key_of(row)
        machine = self.known.get(key)
        if machine is None:
            merged = row.get("machine") if isinstance(row.get("machine"), dict) else {}
            machine = self.add(key, {"cpu": {"model": merged.get("cpu"), "logical_cpus": merged.get("logical_cpus")}})
        host = host_of(row)
        if host and host not in machine.hosts:
            machine.hosts.append(host)
        return machine

    def group(self, rows: list[dict]) -> dict[str | None, list[dict]]:
        """Machine key → its rows, machines in the order their first row comes."""
        found: dict[str | None, list[dict]] = {}
        for row in rows:
            found.setdefault(self.of(row).key, []).append(row)
        return found


def by_machine(rows: list[dict], manifest: dict | None = None) -> dict[str | None, list[dict]]:
    """The rows grouped by the machine they were measured on (see Machines)."""
    return Machines(manifest).group(rows)
