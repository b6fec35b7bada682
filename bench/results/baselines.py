"""Baselines: accepted runs, kept per kind of machine, that later runs are compared with.

`bench baseline save RUN NAME` copies RUN's manifest.json and results.jsonl (not its logs) to
`results/baselines/<machine key>/<NAME>/<saved at>/` ($BENCH_BASELINES_DIR instead of results/baselines), where the
machine key names the kind of machine RUN ran on (bench.results.identity). The copy is written into a hidden folder and
renamed into place, so a baseline is either whole or absent. Saving NAME again adds a newer version: the latest is
the one compared with; the older ones stay, to go back to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from bench.cpu import FAKE_FLAGS_VAR
from bench.errors import BenchError
from bench.job import EXIT_OK
from bench.results.identity import kind_key, machine_identity
from bench.results.folder import MANIFEST, ROWS
from bench.results.run_files import load_run

BASELINES_VAR = "BENCH_BASELINES_DIR"
INFO = "baseline.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def baselines_root() -> Path:
    return Path(os.environ.get(BASELINES_VAR) or Path("results") / "baselines")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BenchError(f"baseline: NAME: expected letters, digits, '.', '_' or '-' (not first), got {name!r}")
    return name


def key_of(manifest: dict, where: str) -> str:
    return kind_key(manifest.get("machine"), where)


def save_baseline(run_path, name: str, root: Path | None = None) -> Path:
    """Copy the run's manifest and complete rows into a new version of baseline NAME for its machine."""
    check_name(name)
    run = load_run(run_path)
    if not run.rows:
        raise BenchError(f"{run.path / ROWS}: expected at least one row to keep as a baseline, got none")
    faked = ((run.manifest.get("machine") or {}).get("cpu") or {}).get("fake_flags")
    if faked is not None:
        raise BenchError(
            f"{run.path / MANIFEST}: machine.cpu.fake_flags: expected a run on the CPU's own flags to keep as a"
            f" baseline, got one made with {FAKE_FLAGS_VAR}={','.join(faked)}"
        )
    key = key_of(run.manifest, str(run.path / MANIFEST))
    folder = (root or baselines_root()) / key / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    partial = folder / f".{stamp}.partial"
    partial.mkdir()
    try:
        shutil.copyfile(run.path / MANIFEST, partial / MANIFEST)
        rows = (run.path / ROWS).read_bytes()
        (partial / ROWS).write_bytes(rows[: rows.rfind(b"\n") + 1])  # whole lines only
        info = {
            "name": name, "machine_key": key, "machine": machine_identity(run.manifest.get("machine")),
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": str(run.path.resolve()),
            "commit": run.commit, "dirty": run.dirty, "started": run.started, "cases": len(run.rows),
        }  # fmt: skip
        (partial / INFO).write_text(json.dumps(info, indent=2))
        os.rename(partial, folder / stamp)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder / stamp


def versions(folder: Path) -> list[Path]:
    """The complete versions of one baseline, oldest first (a hidden folder is a save in progress or torn)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / INFO).exists())


def find_baseline(name: str, manifest: dict, where: str, root: Path | None = None) -> Path:
    """The latest version of baseline NAME saved for the machine the manifest describes."""
    check_name(name)
    root = root or baselines_root()
    key = key_of(manifest, where)
    found = versions(root / key / name)
    if found:
        return found[-1]
    elsewhere = sorted(p.parent.name for p in root.glob(f"*/{name}") if versions(p))
    also = f"; NAME is saved for other machines: {', '.join(elsewhere)}" if elsewhere else ""
    raise BenchError(
        f"{where}: baseline {name!r}: expected one saved for this kind of machine ({key}) under {root}, got none{also};"
        f" save one with: bench baseline save RUN {name}"
    )


def list_baselines(root: Path | None = None, key: str | None = None) -> list[dict]:
    """Every baseline's latest version (with how many versions it has), optionally for one machine key."""
    root = root or baselines_root()
    listed = []
    for folder in sorted(root.glob("*/*")):
        found = versions(folder)
        if found and (key is None or folder.parent.name == key):
            info = json.loads((found[-1] / INFO).read_text())
            listed.append({**info, "path": str(found[-1]), "versions": len(found)})
    return listed


def add_parser(sub) -> None:
    p = sub.add_parser("baseline", help="save a run as a baseline for its kind of machine, or list the baselines")
    verbs = p.add_subparsers(dest="baseline_command", required=True, metavar="VERB")
    saving = verbs.add_parser("save", help="keep RUN's manifest and rows as baseline NAME for RUN's kind of machine")
    saving.add_argument("run_dir", help="the run folder to keep as the baseline")
    saving.add_argument("name", help="the baseline's name, e.g. nightly")
    saving.set_defaults(func=cmd_save)
    listing = verbs.add_parser("list", help="the saved baselines: machine, name, when saved, from which run")
    listing.add_argument("--run", metavar="RUN", help="only the baselines of RUN's kind of machine")
    listing.add_argument("--json", action="store_true", help="print the baselines as JSON")
    listing.set_defaults(func=cmd_list)


def cmd_save(args) -> int:
    saved = save_baseline(args.run_dir, args.name)
    print(f"saved {args.run_dir} as baseline {args.name!r} for {saved.parent.parent.name}: {saved}")
    return EXIT_OK


def cmd_list(args) -> int:
    key = None
    if args.run:
        run = load_run(args.run)
        key = key_of(run.manifest, str(run.path / MANIFEST))
    listed = list_baselines(key=key)
    if args.json:
        print(json.dumps(listed, indent=2))
        return EXIT_OK
    here = this_machine_key()
    print(f"{baselines_root()}: {len(listed)} baseline(s)")
    for entry in listed:
        marker = " (this machine)" if entry["machine_key"] == here else ""
        commit = (entry.get("commit") or "no commit")[:10]
        print(f"  {entry['machine_key']}{marker}")
        print(f"      {entry['name']}: saved {entry['saved']}, {entry['cases']} cases, commit {commit},"
              f" from {entry['source']} ({entry['versions']} version(s))")  # fmt: skip
    return EXIT_OK


def this_machine_key() -> str | None:
    from bench.machine import cpu_info, memory_gib

    try:
        return kind_key({"cpu": cpu_info(), "memory_gib": memory_gib()})
    except BenchError:
        return None
