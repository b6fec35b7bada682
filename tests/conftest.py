import os
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SESSION_VAR = "BENCH_TEST_SESSION"
"""Set for the whole test session: its kept fork servers are told apart by it (their key holds the environment)."""


def pytest_configure(config):
    """Every `bench run` of the session shares fork servers that stay up to 10 minutes idle (BENCH_KEEP_WARM), so
    torch and transformers are imported once per interpreter and thread count, not once per run."""
    os.environ.setdefault("BENCH_KEEP_WARM", "600")
    os.environ[SESSION_VAR] = f"{os.getpid()}"


def pytest_unconfigure(config):
    """The session's kept fork servers end with it."""
    import signal

    marker = f"{SESSION_VAR}={os.environ.get(SESSION_VAR)}".encode()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"bench.worker.warm\0--listen" not in handle.read():
                    continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker not in handle.read().split(b"\0"):
                    continue
            os.kill(int(entry), signal.SIGTERM)
        except OSError:
            continue


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
    """Run `python -m bench ...` as a user would, in a real subprocess (`env`: variables to set, None to unset).

    `bench run` and `bench tune` skip the matmul peak probe and the report unless asked: they have tests of their own. It does
    not wait for quiet CPUs (the check is still made and recorded) unless the test gives its own --quiet-wait.
    """
    import subprocess

    if args and args[0] in ("run", "tune") and not probe_and_report:
        args = (*args, "--no-peak", "--no-report")
    if args and args[0] in ("run", "tune") and "--quiet-wait" not in args:
        args = (*args, "--quiet-wait", "0")
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}  # None: unset
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
TINY_GENERATOR = """\
models:
  - name: gen
    config: gpt2
    task: text-generation
    config_overrides: {n_layer: 1, n_embd: 32, n_head: 2, vocab_size: 2048}
    generate: {new_tokens: [4]}
"""
"""A one-layer random GPT-2 generating 4 tokens: for plans that must hold a generation model."""
SERVED_AND_USERS = """\
backends:
  - name: served
    type: pytorch
    scenario: server
    rates: [20]
    arrivals: constant
  - name: users
    type: pytorch
    scenario: closed-loop
    concurrency: [2]
"""
"""Eager PyTorch twice under load: at 20 queries a second on a constant schedule, and to 2 closed-loop users."""
TINY_MODEL = """\
models:
  - name: tiny
    config: bert-tiny
    task: text-classification
"""
TINY_GPT2 = """\
models:
  - name: tiny
    config: gpt2
    task: text-generation
    config_overrides: {n_layer: 2, n_embd: 64, n_head: 2, n_positions: 128, vocab_size: 2048}
"""
"""A GPT-2 of 2 layers and 64 wide, random weights, named tiny, its generation axes left to the suite's defaults:
generate calls of a few ms."""
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


def live_processes(where) -> list[int]:
    """The pids of the live (not zombie) processes whose /proc/PID/stat fields after the name (state, ppid, pgid,
    ...) satisfy `where(fields)`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if fields[0] != b"Z" and where(fields):
            found.append(int(entry))
    return found


two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two streams, or two runs, need two CPUs")
"""For tests that run two streams (or two runs) at once."""
