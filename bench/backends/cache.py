"""The artifact cache: exported, converted and quantized models on disk, keyed by what determines them.

An entry is a folder that appears only whole: it is built in a temporary folder, its files' sizes and digests are
written to COMPLETE.json, and only then is it renamed into place. An entry whose files do not match its record
(a half-written export, a full disk, a truncated file) is removed and rebuilt, never loaded. One process builds an
entry at a time (an flock on `.lock-<entry>` beside it): a second worker that needs the same entry, say the same
model compiled for two shapes prepared at once, waits and then finds it built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RECORD = "COMPLETE.json"
LOCK_PREFIX = ".lock-"
UNFINISHED = "an unfinished build (its worker was stopped, or is still building)"
CACHE_FORMAT = 1


def artifacts_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "artifacts"


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CacheEntry:
    path: Path
    hit: bool
    rebuilt_reason: str | None = None

    def record(self) -> dict:
        return json.loads((self.path / RECORD).read_text())

    @property
    def status(self) -> str:
        """What a row says: hit, miss, or rebuilt: <what was wrong with the old entry>."""
        if self.hit:
            return "hit"
        return f"rebuilt: {self.rebuilt_reason}" if self.rebuilt_reason else "miss"


def verify(folder: Path, digests: bool = True) -> str | None:
    """None if the entry is whole, else what is wrong with it; digests=False checks presence and sizes only."""
    record_path = folder / RECORD
    if not record_path.is_file():
        return "no completion record"
    try:
        files = dict(json.loads(record_path.read_text())["files"])
    except (ValueError, KeyError, TypeError):
        return "unreadable completion record"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} has {path.stat().st_size} bytes, the record says {expected['size']}"
        if digests and file_digest(path) != expected["sha256"]:
            return f"{name} does not match its recorded digest"
    return None


def get_or_build(cache_dir: str | Path, name: str, parts: dict, build: Callable[[Path], None]) -> CacheEntry:
    """The entry for `parts`, built by build(folder) when missing or damaged."""
    root = artifacts_root(cache_dir)
    folder = root / f"{name}-{cache_key(parts)}"
    problem = verify(folder) if folder.exists() else None
    if folder.exists() and problem is None:
        return CacheEntry(folder, hit=True)
    with building(folder):
        problem = verify(folder) if folder.exists() else problem  # as another builder may have left it meanwhile
        if folder.exists() and problem is None:
            return CacheEntry(folder, hit=True)
        return build_entry(folder, name, parts, build, problem)


@contextlib.contextmanager
def building(folder: Path):
    """Held while `folder` is checked and built: an exclusive flock on `.lock-<folder>`, released by the kernel
    however the holder ends."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{LOCK_PREFIX}{folder.name}", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_entry(folder: Path, name: str, parts: dict, build: Callable[[Path], None], problem: str | None) -> CacheEntry:
    root = folder.parent
    if folder.exists():
        shutil.rmtree(folder)
    tmp = root / f".building-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        record = {"name": name, "parts": parts, "created": time.time(), "files": files}
        (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CacheEntry(folder, hit=False, rebuilt_reason=problem)


def families(cache_dir: str | Path) -> set[tuple[str, str, str]]:
    """(backend, model identity, task) of every entry with a readable record: what a case may find built. A case of
    a family not in it surely has its artifacts still to build."""
    root = artifacts_root(cache_dir)
    found = set()
    for folder in root.glob("*") if root.exists() else []:
        parts = _read_record(folder).get("parts")
        if isinstance(parts, dict):
            found.add((str(parts.get("backend")), str(parts.get("model")), str(parts.get("task"))))
    return found


def entries(cache_dir: str | Path, digests: bool = True) -> list[dict]:
    """Every entry with its size, its record's name, parts and creation time (when readable) and any problem."""
    root = artifacts_root(cache_dir)
    return [_describe(folder, digests) for folder in sorted(root.glob("*")) if folder.is_dir()] if root.exists() else []


def _describe(folder: Path, digests: bool) -> dict:
    unfinished = folder.name.startswith(".building-")
    record = {} if unfinished else _read_record(folder)
    return {
        "path": str(folder),
        "size_bytes": _size(folder),
        "problem": UNFINISHED if unfinished else verify(folder, digests),
        "name": record.get("name"),
        "parts": record.get("parts"),
        "created": record.get("created"),
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _read_record(folder: Path) -> dict:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def clear(cache_dir: str | Path) -> int:
    root = artifacts_root(cache_dir)
    count = len([folder for folder in root.glob("*") if folder.is_dir()]) if root.exists() else 0
    shutil.rmtree(root, ignore_errors=True)
    return count
