"""The artifact cache (bench/backends/cache.py) and `bench cache list|clear`."""

import json
from importlib import metadata

import pytest

from bench.backends import cache
from bench.cli.cache import human_bytes, purpose, stale_versions
from conftest import bench_cli

PARTS = {"backend": "test", "model": "abc", "artifact": "export", "options": {"level": 2}}


def build_files(calls):
    def build(folder):
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"x" * 1000)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text("{}")

    return build


def test_a_missing_entry_is_built_once_then_hit(tmp_path):
    calls = []
    first = cache.get_or_build(tmp_path, "m-export", PARTS, build_files(calls))
    assert (first.hit, first.status, len(calls)) == (False, "miss", 1)
    record = first.record()
    assert record["name"] == "m-export" and record["parts"] == PARTS
    assert record["files"]["model.onnx"]["size"] == 1000 and set(record["files"]) == {"model.onnx", "sub/config.json"}
    second = cache.get_or_build(tmp_path, "m-export", PARTS, build_files(calls))
    assert (second.hit, second.status, second.path, len(calls)) == (True, "hit", first.path, 1)
    other = cache.get_or_build(tmp_path, "m-export", {**PARTS, "options": {"level": 3}}, build_files(calls))
    assert not other.hit and other.path != first.path and len(calls) == 2
    names = sorted(p.name for p in cache.artifacts_root(tmp_path).iterdir() if p.is_dir())
    assert names == sorted([first.path.name, other.path.name])


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda f: (f / "model.onnx").write_bytes(b"x" * 10), "model.onnx has 10 bytes, the record says 1000"),
        (lambda f: (f / "model.onnx").write_bytes(b"y" * 1000), "model.onnx does not match its recorded digest"),
        (lambda f: (f / "sub" / "config.json").unlink(), "sub/config.json is missing"),
        (lambda f: (f / cache.RECORD).unlink(), "no completion record"),
        (lambda f: (f / cache.RECORD).write_text('{"files": '), "unreadable completion record"),
        (lambda f: (f / cache.RECORD).write_text("[1, 2]"), "unreadable completion record"),
    ],
)
def test_a_damaged_entry_is_never_loaded_but_rebuilt_with_the_reason(tmp_path, damage, reason):
    calls = []
    entry = cache.get_or_build(tmp_path, "m", PARTS, build_files(calls))
    damage(entry.path)
    assert cache.verify(entry.path) == reason
    again = cache.get_or_build(tmp_path, "m", PARTS, build_files(calls))
    assert (again.hit, again.rebuilt_reason, again.status) == (False, reason, f"rebuilt: {reason}")
    assert len(calls) == 2 and cache.verify(again.path) is None


def test_a_size_only_check_does_not_read_the_files(tmp_path):
    entry = cache.get_or_build(tmp_path, "m", PARTS, build_files([]))
    (entry.path / "model.onnx").write_bytes(b"y" * 1000)
    assert cache.verify(entry.path, digests=False) is None
    assert cache.verify(entry.path) == "model.onnx does not match its recorded digest"


def test_a_build_that_raises_leaves_no_entry_and_the_next_call_builds(tmp_path):
    def failing(folder):
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        cache.get_or_build(tmp_path, "m", PARTS, failing)
    assert [p for p in cache.artifacts_root(tmp_path).iterdir() if p.is_dir()] == []
    assert cache.entries(tmp_path) == []
    assert not cache.get_or_build(tmp_path, "m", PARTS, build_files([])).hit


BUILD_AT_ONCE = """
import os, sys, time
from pathlib import Path
from bench.backends import cache

def build(folder):
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(0.5)
    (folder / "model.onnx").write_bytes(b"x" * 1000)

Path(sys.argv[3]).touch()
while not all(Path(p).exists() for p in sys.argv[4:]):
    time.sleep(0.001)
entry = cache.get_or_build(sys.argv[1], "m-export", {"model": "abc"}, build)
print(entry.path, entry.status)
"""


def test_two_processes_that_need_one_entry_at_once_build_it_once_and_both_load_it(tmp_path):
    import subprocess
    import sys

    from conftest import PROJECT

    builds, ready = tmp_path / "builds.log", [tmp_path / "ready-0", tmp_path / "ready-1"]
    workers = [
        subprocess.Popen([sys.executable, "-c", BUILD_AT_ONCE, tmp_path / "cache", builds, mark, *ready], cwd=PROJECT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for mark in ready
    ]
    answers = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], answers
    assert len(builds.read_text().split()) == 1  # the second waited for the first's build, then found it
    (path_a, status_a), (path_b, status_b) = (out.split() for out, _ in answers)
    assert path_a == path_b and sorted([status_a, status_b]) == ["hit", "miss"]
    [entry] = cache.entries(tmp_path / "cache")
    assert entry["problem"] is None and entry["name"] == "m-export"


def test_entries_describe_whole_damaged_and_unfinished_entries(tmp_path):
    whole = cache.get_or_build(tmp_path, "a", PARTS, build_files([]))
    damaged = cache.get_or_build(tmp_path, "b", {**PARTS, "artifact": "int8"}, build_files([]))
    (damaged.path / "model.onnx").write_bytes(b"x")
    (cache.artifacts_root(tmp_path) / ".building-c-123").mkdir()
    found = {e["path"]: e for e in cache.entries(tmp_path)}
    assert len(found) == 3
    assert found[str(whole.path)]["problem"] is None and found[str(whole.path)]["name"] == "a"
    assert found[str(whole.path)]["parts"] == PARTS and found[str(whole.path)]["size_bytes"] > 1000
    assert found[str(damaged.path)]["problem"] == "model.onnx has 1 bytes, the record says 1000"
    assert found[str(damaged.path)]["parts"]["artifact"] == "int8"  # a damaged entry still says what it was for
    unfinished = found[str(cache.artifacts_root(tmp_path) / ".building-c-123")]
    assert unfinished["problem"] == cache.UNFINISHED and unfinished["parts"] is None
    assert cache.clear(tmp_path) == 3 and cache.entries(tmp_path) == []
    assert cache.clear(tmp_path) == 0


def test_purpose_and_staleness_are_read_from_the_key():
    parts = {**PARTS, "versions": {"pytest": metadata.version("pytest")}}
    assert purpose(parts) == "backend=test model=abc artifact=export options(level=2)"
    assert stale_versions(parts["versions"]) is None
    assert stale_versions({"pytest": "0.0.1"}) == f"built with pytest 0.0.1 (here {metadata.version('pytest')})"
    assert stale_versions({"no-such-package-here": "1.0"}) == "built with no-such-package-here 1.0 (here None)"
    assert [human_bytes(n) for n in (5, 1500, 437_661_679, 3 * 10**9)] == ["5 B", "1.5 KB", "437.7 MB", "3.0 GB"]


def test_cache_list_and_clear_act_on_bench_cache_dir(tmp_path):
    env = {"BENCH_CACHE_DIR": str(tmp_path)}
    empty = bench_cli("cache", "list", env=env)
    assert empty.returncode == 0 and f"{tmp_path}/artifacts: 0 artifact(s), 0 B" in empty.stdout
    entry = cache.get_or_build(tmp_path, "m-export", {**PARTS, "versions": {"pytest": "0.0.1"}}, build_files([]))
    (tmp_path / "references").mkdir()
    (tmp_path / "references" / "r.npz").write_bytes(b"r" * 10)
    listed = bench_cli("cache", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert entry.path.name in listed.stdout and "1 artifact(s)" in listed.stdout
    assert "for: backend=test model=abc artifact=export options(level=2)" in listed.stdout
    assert "stale: built with pytest 0.0.1" in listed.stdout and "references (10 B)" in listed.stdout
    as_json = json.loads(bench_cli("cache", "list", "--json", env=env).stdout)
    assert [e["name"] for e in as_json] == ["m-export"] and as_json[0]["problem"] is None

    (entry.path / "model.onnx").write_bytes(b"y" * 1000)
    assert bench_cli("cache", "list", env=env).returncode == 0  # sizes match: only --verify reads the digests
    verified = bench_cli("cache", "list", "--verify", env=env)
    assert verified.returncode == 1 and "model.onnx does not match its recorded digest" in verified.stdout

    cleared = bench_cli("cache", "clear", env=env)
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 1 artifact(s), ")
    assert not entry.path.exists() and (tmp_path / "references" / "r.npz").exists()
    everything = bench_cli("cache", "clear", "--all", env=env)
    assert everything.returncode == 0 and "removed 1 other item(s) (references), 10 B" in everything.stdout
    assert list(tmp_path.iterdir()) == []
