import os
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """References and artifacts go to a per-session temporary cache, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "bench-cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def isolated_locks(tmp_path_factory, monkeypatch):
    """The machine-wide CPU locks of test runs live in the test session's folder, not in /run/lock."""
    folder = tmp_path_factory.getbasetemp() / "bench-locks"
    monkeypatch.setenv("BENCH_LOCK_DIR", str(folder))
    return folder


def write_suite(directory: Path, text: str, name: str = "suite.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def bench_cli(*args, env=None, timeout=600, probe_and_report=False):
    """Run `python -m bench ...` as a user would, in a real subprocess.

    `bench run` skips the matmul peak probe and the report unless asked: they have tests of their own. It does
    not wait for quiet CPUs (the check is still made and recorded) unless the test gives its own --quiet-wait.
    """
    import subprocess

    if args and args[0] == "run" and not probe_and_report:
        args = (*args, "--no-peak", "--no-report")
    if args and args[0] == "run" and "--quiet-wait" not in args:
        args = (*args, "--quiet-wait", "0")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        cwd=PROJECT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY_DEFAULTS = """\
name: tiny
defaults:
  seq_lens: [16]
  batch_sizes: [2]
  threads: [1]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120}
"""
TINY_MODEL = """\
models:
  - name: tiny
    config: bert-tiny
    task: text-classification
"""
EAGER_AND_SDPA = """\
backends:
  - name: eager
    type: pytorch
  - name: sdpa
    type: pytorch
    options: {attn_implementation: sdpa}
"""
TINY_SUITE = TINY_DEFAULTS + TINY_MODEL + EAGER_AND_SDPA
"""A suite whose two cases take a few seconds: bert-tiny, eager and sdpa, one short shape."""
