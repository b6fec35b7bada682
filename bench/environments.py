"""Named Python environments that workers run in: `main` is the running interpreter, others live under a root.

Each environment other than main is a virtual environment built from `requirements/<name>.txt` by
`bench env create NAME`; a stamp in it records the digest of the requirements it was built from.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from bench.errors import BenchError
from bench.job import MAIN
from bench.paths import PROJECT_ROOT

REQUIREMENTS_DIR = PROJECT_ROOT / "requirements"
STAMP = "bench-env.json"
STAMP_FORMAT = 1
QUERY_TIMEOUT = 30.0


def env_root(root: str | Path | None = None) -> Path:
    """Where non-main environments are built: `root` if given, else $BENCH_ENV_DIR, else the user's cache."""
    if root:
        return Path(root)
    if os.environ.get("BENCH_ENV_DIR"):
        return Path(os.environ["BENCH_ENV_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "bench" / "envs"


@dataclass(frozen=True)
class Environment:
    name: str
    python: Path
    prefix: Path | None = None
    """The virtual environment's folder; None for main (the running interpreter)."""

    @property
    def built(self) -> bool:
        return self.python.exists()

    @property
    def build_command(self) -> str:
        return f"bench env create {self.name}"

    @property
    def stamp_path(self) -> Path | None:
        return self.prefix / STAMP if self.prefix else None

    def read_stamp(self) -> dict | None:
        try:
            return json.loads(self.stamp_path.read_text()) if self.stamp_path else None
        except (OSError, ValueError):
            return None

    def state(self, requirements_dir: Path = REQUIREMENTS_DIR) -> str:
        """main: the running interpreter; otherwise not built, built, stale, or unstamped (built by hand)."""
        if self.prefix is None:
            return "running interpreter"
        if not self.built:
            return "not built"
        stamp = self.read_stamp()
        if stamp is None:
            return "unstamped (not built by bench env create)"
        requirements = requirements_dir / f"{self.name}.txt"
        if requirements.exists() and stamp.get("requirements_sha256") != file_digest(requirements):
            return f"stale ({requirements.name} changed since the build)"
        return "built"


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""An environment's name is one folder name under the root: no separator, never `.` or `..`."""


def environment(name: str, root: str | Path | None = None, requirements_dir: Path = REQUIREMENTS_DIR) -> Environment:
    """The named environment; only a known name (see known_names) is ever turned into a path under the root."""
    if name == MAIN:
        return Environment(MAIN, Path(sys.executable))
    known = known_names(root, requirements_dir)
    if name not in known:
        raise BenchError(f"environment: expected one of {', '.join(map(repr, known))}, got {_short(name)}")
    prefix = env_root(root) / name
    return Environment(name, prefix / "bin" / "python", prefix)


def environment_names(requirements_dir: Path = REQUIREMENTS_DIR) -> list[str]:
    """main first, then every environment with a requirements file or a registered backend."""
    from bench.backends import BACKENDS

    names = {p.stem for p in requirements_dir.glob("*.txt")} | {info.environment for info in BACKENDS.values()}
    return [MAIN] + sorted(n for n in names - {MAIN} if NAME.fullmatch(n))


def built_names(root: str | Path | None = None) -> list[str]:
    """Folders directly under the root that hold a built interpreter (including environments made by hand)."""
    try:
        entries = list(env_root(root).iterdir())
    except OSError:
        return []
    return sorted(p.name for p in entries if NAME.fullmatch(p.name) and (p / "bin" / "python").exists())


def known_names(root: str | Path | None = None, requirements_dir: Path = REQUIREMENTS_DIR) -> list[str]:
    """The names a suite or a command may use: environment_names(), then those built under the root."""
    names = environment_names(requirements_dir)
    return names + [n for n in built_names(root) if n not in names]


def _short(name: str, limit: int = 60) -> str:
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ask(python: Path, code: str, timeout: float = QUERY_TIMEOUT) -> str:
    """Run a line of Python under `python` and return what it printed, or `(error: ...)`."""
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"(no answer within {timeout:g} s)"
    except OSError as exc:
        return f"(error: {exc.strerror or exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"(error: {last})"
    return done.stdout.strip()


def package_version(python: Path, package: str, timeout: float = QUERY_TIMEOUT) -> str:
    """The installed version of `package` as that interpreter sees it (metadata only: no import)."""
    code = (
        "from importlib import metadata\n"
        "try:\n"
        f"    print(metadata.version({package!r}))\n"
        "except metadata.PackageNotFoundError:\n"
        "    print('(not installed)')"
    )
    return ask(python, code, timeout)


def requirements_file(name: str, requirements_dir: Path = REQUIREMENTS_DIR) -> Path:
    path = requirements_dir / f"{name}.txt"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in requirements_dir.glob("*.txt"))) or "none"
        raise BenchError(
            f"{path}: expected the requirements of environment {name!r}, got no such file (known: {known})"
        )
    return path


@contextlib.contextmanager
def build_lock(root: Path, name: str):
    """One builder per environment at a time; a second waits for the first and then finds it built."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create(
    name: str,
    root: str | Path | None = None,
    rebuild: bool = False,
    requirements_dir: Path = REQUIREMENTS_DIR,
    say: Callable[[str], None] = print,
) -> bool:
    """Build environment `name` unless it is built from the current requirements; True if it is usable after."""
    if name == MAIN:
        return check_main(requirements_dir, say)
    requirements = requirements_file(name, requirements_dir)
    env = environment(name, root, requirements_dir)
    with build_lock(env.prefix.parent, name):
        digest = file_digest(requirements)
        stamp = env.read_stamp()
        if not rebuild and env.built and stamp and stamp.get("requirements_sha256") == digest:
            say(f"environment {name!r} is up to date at {env.prefix} ({requirements.name} unchanged): nothing to do")
            return True
        if rebuild and env.prefix.exists():
            say(f"removing {env.prefix}")
            shutil.rmtree(env.prefix)
        build(env, requirements, digest, say)
    return True


def build(env: Environment, requirements: Path, digest: str, say: Callable[[str], None]) -> None:
    """venv (kept if present: changed pins are installed over it), the pins, then this project without deps.

    The stamp is written last, so an interrupted build is finished by the next call.
    """
    start = time.monotonic()
    if env.stamp_path.exists():
        env.stamp_path.unlink()
    verb = "updated" if env.built else "built"
    if not env.built:
        say(f"creating the virtual environment {env.prefix}")
        run_step([base_python(), "-m", "venv", str(env.prefix)])
    say(f"installing {requirements} into {env.prefix}")
    run_step([str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)])
    say(f"installing bench from {PROJECT_ROOT} (editable, without dependencies)")
    run_step([str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-e",
              str(PROJECT_ROOT)])  # fmt: skip
    seconds = time.monotonic() - start
    stamp = {
        "format": STAMP_FORMAT,
        "name": env.name,
        "requirements": str(requirements),
        "requirements_sha256": digest,
        "python": ask(env.python, "import sys; print(sys.version.split()[0])"),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 1),
    }
    env.stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    say(f"environment {env.name!r} {verb} in {seconds:.0f} s: {env.python}")


def base_python() -> str:
    """The interpreter new environments are made from: the one under the running venv, if any."""
    return getattr(sys, "_base_executable", None) or sys.executable


def run_step(command: list[str]) -> None:
    """Run with output passed through; a failing step is an error naming the command."""
    done = subprocess.run(command, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BenchError(f"env create: `{' '.join(command)}` failed with exit code {done.returncode}")


PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def check_main(requirements_dir: Path, say: Callable[[str], None]) -> bool:
    """main is the interpreter running bench: it is not built here, only checked against requirements/main.txt."""
    requirements = requirements_file(MAIN, requirements_dir)
    say(f"environment 'main' is the interpreter running bench ({sys.executable}); bench does not build it")
    wrong = []
    for line in requirements.read_text().splitlines():
        match = PIN.match(line.strip())
        if not match:
            continue
        package, wanted = match.groups()
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            found = None
        if found is None or found.split("+")[0] != wanted:
            wrong.append(f"{package}=={wanted} (found {found or 'nothing'})")
    if wrong:
        say(f"not as pinned in {requirements}: " + ", ".join(wrong))
        say(f"install them with: {sys.executable} -m pip install -r {requirements} -e {PROJECT_ROOT}")
        return False
    say(f"every pin of {requirements} is installed")
    return True
