"""`bench merge DIR... --out OUT`: run folders of one suite (shards, or runs on different machines) as one folder.

The folders must come from the same suite (as validated, defaults resolved) and hold disjoint cases. Every row
keeps the machine it was measured on (`machine`, from its folder's manifest when the row does not say), so
speedups and reports never mix machines. The merged manifest plans the whole suite (the union of the folders'
plans) and says which planned cases have no row; those count as not run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.job import EXIT_OK
from bench.results.identity import kind_key_if_known
from bench.results.folder import MANIFEST, RESULTS_SCHEMA, ROWS, RunDir, latest_rows, now

SHOWN_MISSING = 10


@dataclass
class Part:
    """One input folder: its manifest and its last row per case."""

    path: Path
    manifest: dict
    rows: list[dict]

    @property
    def hostname(self) -> str | None:
        return (self.manifest.get("machine") or {}).get("hostname")

    @property
    def plan(self) -> list[str]:
        """The whole plan this folder's cases were taken from (a shard's share is part of it)."""
        shard = self.manifest.get("shard") or {}
        return list(shard.get("plan_cases") or self.manifest.get("planned_cases") or [])

    @property
    def own_cases(self) -> set[str]:
        """The cases this folder has rows for, and those it was to run (a merged folder: only its rows)."""
        planned = [] if self.merged else self.manifest.get("planned_cases") or []
        return set(planned) | {r["case_id"] for r in self.rows}

    @property
    def merged(self) -> dict | None:
        return self.manifest.get("merged") if isinstance(self.manifest.get("merged"), dict) else None

    @property
    def machines(self) -> dict[str, dict]:
        """Host name → machine section, of this folder or of every folder merged into it."""
        if self.merged:
            return dict(self.merged.get("machines") or {})
        return {str(self.hostname): self.manifest.get("machine") or {}}

    @property
    def shard_records(self) -> list[dict]:
        return list(self.merged.get("shards") or []) if self.merged else [shard_record(self)]


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="gather run folders of one suite (e.g. shards) into one run folder")
    p.add_argument("run_dirs", nargs="+", metavar="DIR", help="the shards' run folders")
    p.add_argument("--out", required=True, help="the merged run folder (a new one)")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args) -> int:
    manifest, notes = merge_runs([Path(p) for p in args.run_dirs], Path(args.out))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    missing = manifest["merged"]["missing"]
    if missing:
        shown = ", ".join(missing[:SHOWN_MISSING]) + (", ..." if len(missing) > SHOWN_MISSING else "")
        planned = len(manifest["planned_cases"])
        print(f"missing: {len(missing)} of {planned} planned cases have no row: {shown}", file=sys.stderr)
    print(Path(args.out))
    return EXIT_OK


def merge_runs(paths: list[Path], out: Path) -> tuple[dict, list[str]]:
    """Check the folders, then write OUT: the manifest, every row with its machine, the workers' logs."""
    parts = [read_part(p) for p in paths]
    check_new_folder(out, paths)
    check_same_suite(parts)
    check_disjoint(parts)
    rows = merged_rows(parts)
    manifest, notes = merged_manifest(parts, rows)
    run_dir = RunDir(out)
    run_dir.create(manifest)
    text = "".join(json.dumps(row, default=str) + "\n" for row in rows)
    partial = run_dir.rows_path.with_suffix(".jsonl.partial")
    partial.write_text(text)
    os.replace(partial, run_dir.rows_path)
    copy_logs(parts, run_dir.logs)
    return manifest, notes


def read_part(path: Path) -> Part:
    """A run folder as it is on disk; a torn last line is left out (and left alone: merging only reads inputs)."""
    manifest = RunDir(path).read_manifest()
    if not isinstance(manifest.get("suite"), dict):
        raise BenchError(f"{path / MANIFEST}: suite: expected the suite as validated, got {manifest.get('suite')!r}")
    rows = []
    rows_path = path / ROWS
    for line in rows_path.read_bytes().splitlines(keepends=True) if rows_path.exists() else []:
        try:
            row = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("case_id"), str):
            rows.append(row)
    return Part(path, manifest, latest_rows(rows))


def check_new_folder(out: Path, inputs: list[Path]) -> None:
    if any(out.resolve() == p.resolve() for p in inputs):
        raise BenchError(f"merge: --out {out}: expected a new folder, got one of the folders to merge")
    if (out / MANIFEST).exists() or (out / ROWS).exists():
        raise BenchError(f"merge: --out {out}: expected a new folder, got a run folder")


def check_same_suite(parts: list[Part]) -> None:
    first = parts[0]
    for part in parts[1:]:
        where = first_difference(first.manifest["suite"], part.manifest["suite"])
        if where is not None:
            names = [p.manifest["suite"].get("name") for p in (first, part)]
            raise BenchError(
                f"merge: {part.path}: expected the suite of {first.path} ({names[0]}),"
                f" got a different one ({names[1]}; they differ at {where})"
            )


def first_difference(a, b, at: str = "suite") -> str | None:
    """The first key path where two JSON values differ; None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{at}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{at}[{i}]"))), None)
    return None if a == b else at


def check_disjoint(parts: list[Part]) -> None:
    owner: dict[str, Path] = {}
    for part in parts:
        for case_id in sorted(part.own_cases):
            if case_id in owner:
                raise BenchError(
                    f"merge: {part.path} and {owner[case_id]} both hold case {case_id};"
                    " expected each case in one folder only"
                )
        owner.update(dict.fromkeys(part.own_cases, part.path))


def row_machine(machine: dict) -> dict:
    """What a row says of the machine it was measured on; `key` is its kind of machine, as baselines key it."""
    cpu = machine.get("cpu") or {}
    return {
        "hostname": machine.get("hostname"),
        "cpu": cpu.get("model"),
        "logical_cpus": cpu.get("logical_cpus"),
        "memory_gib": machine.get("memory_gib"),
        "key": kind_key_if_known(machine),
    }


def merged_rows(parts: list[Part]) -> list[dict]:
    """Every folder's rows, each with its machine, in the order of the merged plan (unplanned ones last)."""
    rows = []
    for part in parts:
        identity = row_machine(part.manifest.get("machine") or {})
        rows += [row if row.get("machine") else {**row, "machine": identity} for row in part.rows]
    order = {case_id: i for i, case_id in enumerate(merged_plan(parts))}
    return sorted(rows, key=lambda r: order.get(r["case_id"], len(order)))


def merged_plan(parts: list[Part]) -> list[str]:
    return list(dict.fromkeys(case_id for part in parts for case_id in part.plan))


def common(sections: list[dict]) -> dict:
    """What every section says alike: keys with equal values, nested sections reduced the same way."""
    kept = {}
    for key, value in sections[0].items():
        values = [s.get(key) for s in sections]
        if all(isinstance(v, dict) for v in values):
            inner = common(values)
            if inner:
                kept[key] = inner
        elif all(v == value for v in values):
            kept[key] = value
    return kept


def merged_manifest(parts: list[Part], rows: list[dict]) -> tuple[dict, list[str]]:
    first = parts[0].manifest
    plan = merged_plan(parts)
    measured = {r["case_id"] for r in rows}
    machines = {host: section for p in parts for host, section in p.machines.items()}
    same_filters = all(p.manifest.get("filters", []) == first.get("filters", []) for p in parts)
    manifest = {
        "schema": RESULTS_SCHEMA,
        "suite_file": first.get("suite_file"),
        "suite": first["suite"],
        "filters": first.get("filters", []) if same_filters else [],
        "planned_cases": plan,
        "machine": common(list(machines.values())),
        "software": first.get("software"),
        "git": first.get("git"),
        "runs": [{**run, "folder": str(p.path)} for p in parts for run in p.manifest.get("runs") or []],
        "merged": {
            "at": now(),
            "shards": [record for p in parts for record in p.shard_records],
            "machines": machines,
            "missing": [case_id for case_id in plan if case_id not in measured],
        },
    }
    if len(machines) == 1 and first.get("peak"):
        manifest["peak"] = first["peak"]
    return manifest, merge_notes(parts, manifest, same_filters)


def shard_record(part: Part) -> dict:
    shard = {k: v for k, v in (part.manifest.get("shard") or {}).items() if k != "plan_cases"}
    return {
        "folder": str(part.path.resolve()),
        "shard": shard or None,
        "machine": part.hostname,
        "planned": len(part.manifest.get("planned_cases") or []),
        "rows": len(part.rows),
        "git": part.manifest.get("git"),
        "software": part.manifest.get("software"),
        "peak": part.manifest.get("peak"),
    }


def merge_notes(parts: list[Part], manifest: dict, same_filters: bool) -> list[str]:
    notes = []
    if not same_filters:
        notes.append("the folders were run with different --filters: the merged plan is the union of theirs")
    commits = {str((p.manifest.get("git") or {}).get("commit")) for p in parts}
    if len(commits) > 1:
        notes.append(f"the folders ran different commits: {', '.join(sorted(commits))}")
    hosts = sorted(manifest["merged"]["machines"])
    if len(hosts) > 1:
        notes.append(
            f"rows come from {len(hosts)} machines ({', '.join(hosts)}): speedups compare rows of one machine only"
        )
    for count, indices in shard_indices(manifest["merged"]["shards"]).items():
        absent = sorted(set(range(count)) - indices)
        if absent:
            notes.append(f"shards {', '.join(map(str, absent))} of {count} are not among the folders")
    return notes


def shard_indices(records: list[dict]) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for record in records:
        shard = record.get("shard") or {}
        if isinstance(shard.get("count"), int):
            found.setdefault(shard["count"], set()).add(shard.get("index"))
    return found


def copy_logs(parts: list[Part], logs: Path) -> None:
    for part in parts:
        for log in sorted((part.path / "logs").glob("*.log")):
            if not (logs / log.name).exists():
                shutil.copy2(log, logs / log.name)
