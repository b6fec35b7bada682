"""`bench cache list` and `bench cache clear`: what the artifact cache holds, and emptying it.

Both act on $BENCH_CACHE_DIR (else the user's cache folder). Listing checks every entry's files against its
completion record (sizes; with --verify also digests) and says which were built with other library versions than
this environment has, so they serve no run from it.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench.backends import cache
from bench.job import EXIT_FAILED, EXIT_OK
from bench.paths import cache_root


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="list or clear the cached artifacts (exports, quantized models)")
    verbs = p.add_subparsers(dest="cache_command", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="every cached artifact: folder, size, what it is for, problems")
    listing.add_argument("--verify", action="store_true", help="also compare every file with its recorded digest")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    listing.set_defaults(func=cmd_list)
    clearing = verbs.add_parser("clear", help="remove every cached artifact")
    clearing.add_argument("--all", action="store_true", help="also remove references and every other cached file")
    clearing.set_defaults(func=cmd_clear)


def cmd_list(args) -> int:
    root = cache_root()
    found = cache.entries(root, digests=args.verify)
    for entry in found:
        entry["stale"] = stale_versions((entry.get("parts") or {}).get("versions"))
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(render(root, found))
    return EXIT_FAILED if any(e["problem"] for e in found) else EXIT_OK


def cmd_clear(args) -> int:
    root = cache_root()
    found = cache.entries(root, digests=False)
    freed = sum(e["size_bytes"] for e in found)
    removed = cache.clear(root)
    print(f"removed {removed} artifact(s), {human_bytes(freed)}, from {cache.artifacts_root(root)}")
    if args.all and root.exists():
        others = sorted(p for p in root.iterdir())
        freed = sum(folder_bytes(p) for p in others)
        for path in others:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        names = ", ".join(p.name for p in others) or "none"
        print(f"removed {len(others)} other item(s) ({names}), {human_bytes(freed)}")
    return EXIT_OK


def render(root: Path, found: list[dict]) -> str:
    total = sum(e["size_bytes"] for e in found)
    lines = [f"{cache.artifacts_root(root)}: {len(found)} artifact(s), {human_bytes(total)}"]
    for entry in found:
        state = entry["problem"] or ("stale: " + entry["stale"] if entry["stale"] else "ok")
        lines.append(f"  {Path(entry['path']).name}")
        lines.append(f"      {human_bytes(entry['size_bytes'])}, built {built(entry['created'])}, {state}")
        if entry["parts"]:
            lines.append(f"      for: {purpose(entry['parts'])}")
    others = [p for p in sorted(root.iterdir()) if p.name != "artifacts"] if root.exists() else []
    if others:
        described = ", ".join(f"{p.name} ({human_bytes(folder_bytes(p))})" for p in others)
        lines.append(f"also in {root}: {described} (removed by `bench cache clear --all`)")
    return "\n".join(lines)


def purpose(parts: dict) -> str:
    """What an entry is for, from its key: backend, model identity, task, artifact and options (not versions)."""
    flat = []
    for key, value in parts.items():
        if key == "versions":
            continue
        if isinstance(value, dict):
            flat.append(f"{key}({', '.join(f'{k}={v}' for k, v in value.items())})")
        else:
            flat.append(f"{key}={value}")
    return " ".join(flat)


def stale_versions(versions: dict | None) -> str | None:
    """Which recorded library versions differ from this environment's, or None if all match."""
    if not versions:
        return None
    differ = []
    for package, built_with in versions.items():
        try:
            here = metadata.version(package)
        except metadata.PackageNotFoundError:
            here = None
        if here != built_with:
            differ.append(f"{package} {built_with} (here {here})")
    return ("built with " + ", ".join(differ)) if differ else None


def built(created: float | None) -> str:
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "at an unknown time"


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
