"""Named Python environments that workers run in: `main` is the running interpreter, others live under a root."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

MAIN = "main"
REQUIREMENTS_DIR = Path(__file__).resolve().parent.parent / "requirements"


def env_root() -> Path:
    """Where non-main environments are built: $BENCH_ENV_DIR, else the user's cache."""
    if os.environ.get("BENCH_ENV_DIR"):
        return Path(os.environ["BENCH_ENV_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "bench" / "envs"


@dataclass(frozen=True)
class Environment:
    name: str
    python: Path

    @property
    def built(self) -> bool:
        return self.python.exists()

    @property
    def build_command(self) -> str:
        return f"bench env create {self.name}"


def environment(name: str) -> Environment:
    if name == MAIN:
        return Environment(MAIN, Path(sys.executable))
    return Environment(name, env_root() / name / "bin" / "python")
