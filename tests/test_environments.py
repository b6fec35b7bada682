"""Named environments: resolution, build stamps, `bench env` and `bench doctor`, and rows for unbuilt environments.

Nothing here builds the 7 GB `intel` environment: builds use a requirements file of their own.
"""

import json
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest

from bench.cli.env import run_probe
from bench.environments import MAIN, create, environment, environment_names
from bench.errors import BenchError
from conftest import TINY_SUITE, bench_cli, write_suite


def test_main_is_the_running_interpreter_and_others_live_under_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ENV_DIR", str(tmp_path / "from-env"))
    assert environment(MAIN).python == Path(sys.executable) and environment(MAIN).prefix is None
    assert environment("intel").python == tmp_path / "from-env" / "intel" / "bin" / "python"
    assert environment("intel", root=tmp_path / "given").python == tmp_path / "given" / "intel" / "bin" / "python"
    assert environment("intel").build_command == "bench env create intel"
    monkeypatch.delenv("BENCH_ENV_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert environment("intel").prefix == tmp_path / "cache" / "bench" / "envs" / "intel"


def test_every_backend_environment_and_requirements_file_is_listed():
    from bench.backends import BACKENDS

    names = environment_names()
    assert names[0] == MAIN and "intel" in names
    assert {info.environment for info in BACKENDS.values()} <= set(names)


def test_states_follow_the_interpreter_and_the_stamp(tmp_path):
    requirements = tmp_path / "requirements"
    requirements.mkdir()
    (requirements / "lab.txt").write_text("# nothing\n")
    env = environment("lab", root=tmp_path / "envs", requirements_dir=requirements)
    assert env.state(requirements) == "not built" and not env.built
    env.python.parent.mkdir(parents=True)
    env.python.symlink_to(sys.executable)
    assert env.built and env.state(requirements) == "unstamped (not built by bench env create)"
    from bench.environments import file_digest

    env.stamp_path.write_text(json.dumps({"requirements_sha256": file_digest(requirements / "lab.txt")}))
    assert env.state(requirements) == "built"
    (requirements / "lab.txt").write_text("# changed\n")
    assert env.state(requirements) == "stale (lab.txt changed since the build)"


@pytest.mark.slow
def test_create_builds_once_then_does_nothing_until_the_pins_change(tmp_path):
    requirements = tmp_path / "requirements"
    requirements.mkdir()
    (requirements / "lab.txt").write_text("# no packages: the venv and bench itself\n")
    said = []
    assert create("lab", tmp_path / "envs", requirements_dir=requirements, say=said.append)
    env = environment("lab", root=tmp_path / "envs")
    first = env.read_stamp()
    assert env.state(requirements) == "built" and first["build_seconds"] > 0
    assert any("built in" in line for line in said)
    imported = bench_import_path(env.python)
    assert imported == str(Path(__file__).resolve().parent.parent / "bench" / "__init__.py")

    said.clear()
    assert create("lab", tmp_path / "envs", requirements_dir=requirements, say=said.append)
    assert said == [f"environment 'lab' is up to date at {env.prefix} (lab.txt unchanged): nothing to do"]
    assert env.read_stamp() == first

    (requirements / "lab.txt").write_text("# changed pins rebuild\n")
    said.clear()
    assert create("lab", tmp_path / "envs", requirements_dir=requirements, say=said.append)
    assert env.read_stamp()["requirements_sha256"] != first["requirements_sha256"]
    assert any("updated in" in line for line in said)


def bench_import_path(python: Path) -> str:
    """Where `import bench` resolves under `python` without PYTHONPATH: the editable install of this checkout."""
    import subprocess

    done = subprocess.run(
        [str(python), "-c", "import bench; print(bench.__file__)"], capture_output=True, text=True, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_create_main_checks_the_running_interpreter_against_its_pins(tmp_path):
    requirements = tmp_path / "requirements"
    requirements.mkdir()
    pydantic = metadata.version("pydantic")
    (requirements / "main.txt").write_text(f"pydantic=={pydantic}\nnumpy>=1\n")
    said = []
    assert create(MAIN, requirements_dir=requirements, say=said.append)
    assert said[0].startswith(f"environment 'main' is the interpreter running bench ({sys.executable})")
    (requirements / "main.txt").write_text("pydantic==0.0.1\nno-such-package-here==1.0\n")
    said.clear()
    assert not create(MAIN, requirements_dir=requirements, say=said.append)
    assert f"pydantic==0.0.1 (found {pydantic})" in said[1] and "no-such-package-here==1.0 (found nothing)" in said[1]


def test_create_without_a_requirements_file_names_the_file(tmp_path):
    with pytest.raises(BenchError) as caught:
        create("nowhere", tmp_path, requirements_dir=tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'nowhere.txt'}: expected the requirements of environment 'nowhere', "
        "got no such file (known: none)"
    )
    result = bench_cli("env", "create", "nowhere", "--root", tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "nowhere.txt" in result.stderr


def test_a_probe_that_dies_is_reported_not_raised(tmp_path):
    venv.create(tmp_path / "bare", with_pip=False)  # no pydantic: bench.backends cannot import
    report = run_probe(tmp_path / "bare" / "bin" / "python", ["pytorch"], timeout=60)
    assert "before answering" in report["error"] and "No module named 'pydantic'" in report["error"]
    assert run_probe(tmp_path / "missing" / "python", ["pytorch"])["error"].startswith("cannot start")


UNBUILT = TINY_SUITE.replace("name: tiny\n", "name: unbuilt\n", 1).replace(
    "  - name: sdpa\n    type: pytorch\n    options: {attn_implementation: sdpa}\n", "  - name: ipex\n    type: ipex\n"
)


@pytest.mark.slow
def test_a_case_in_an_unbuilt_environment_is_an_unavailable_row_with_the_build_command(tmp_path):
    empty = tmp_path / "envs"
    empty.mkdir()
    out = tmp_path / "run"
    result = bench_cli("run", write_suite(tmp_path, UNBUILT), "--out", out, env={"BENCH_ENV_DIR": str(empty)})
    assert result.returncode == 1
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["eager"]["status"] == "ok" and rows["eager"]["accuracy"]["relative_error"] == 0.0
    assert rows["ipex"]["status"] == "unavailable" and rows["ipex"]["environment"] == "intel"
    assert rows["ipex"]["reason"] == (
        f"environment 'intel' is not built ({empty / 'intel' / 'bin' / 'python'}); "
        "build it with: bench env create intel"
    )
    assert list(empty.iterdir()) == []


def test_env_list_and_doctor_with_nothing_built(tmp_path):
    listed = bench_cli("env", "list", "--root", tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"environments root: {tmp_path}"
    assert lines[2].split()[:2] == ["main", "running"] and sys.executable in lines[2]
    intel = next(line for line in lines if line.startswith("intel "))
    assert "not built" in intel and str(tmp_path / "intel" / "bin" / "python") in intel

    doctor = bench_cli("doctor", "--root", tmp_path)
    assert doctor.returncode == 1, doctor.stderr
    out = doctor.stdout
    assert f"intel: not built ({tmp_path / 'intel' / 'bin' / 'python'}); build it with: bench env create intel" in out
    assert "  pytorch" in out and "cannot run ipex (intel): environment 'intel' is not built" in out
    ipex_in_main = next(line for line in out.splitlines() if line.strip().startswith("ipex "))
    assert ipex_in_main.split()[1:] == ["n/a", "(runs", "in", "intel)"]  # expected there: not a failure
