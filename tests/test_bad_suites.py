"""Bad suites: every one is one short line per problem naming the file and the field, exit 2, under validate and run.

tests/bad_suites/ holds one mistake per file; its first line says which class of mistake, its second what the
message must say.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.app import main
from bench.environments import environment
from bench.errors import MAX_LINE, MAX_PROBLEMS, BenchError
from conftest import PROJECT, TINY_SUITE, bench_cli, write_suite

CORPUS = sorted((Path(__file__).parent / "bad_suites").glob("*.yaml"))


def header(path: Path) -> tuple[str, str]:
    """(the class of mistake, what the message must say) from the file's first two lines."""
    first, second = path.read_bytes().split(b"\n")[:2]
    assert first.startswith(b"# ") and second.startswith(b"# expect: "), path.name
    return first[2:].decode(), second[len("# expect: "):].decode()


@pytest.fixture
def quiet_machine(tmp_path, monkeypatch):
    """No environment built, an empty Hub cache: the corpus means the same on every machine."""
    (tmp_path / "envs").mkdir()
    monkeypatch.setenv("BENCH_ENV_DIR", str(tmp_path / "envs"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def assert_refused(path: Path, code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= MAX_PROBLEMS + 1
    for line in lines:
        assert line.startswith(f"{path}: ") and len(line) <= len(f"{path}: ") + MAX_LINE


def test_the_corpus_has_at_least_40_files_each_saying_its_class():
    assert len(CORPUS) >= 40
    classes = {header(path)[0].split(":")[0] for path in CORPUS}
    assert {"binary", "encoding", "nesting", "aliases", "duplicate keys", "non-finite numbers", "strict integers",
            "environments", "model configs", "config_overrides", "shapes", "plan"} <= classes  # fmt: skip


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_a_bad_suite_is_refused_by_validate_and_run_before_anything_runs(path, quiet_machine, capsys):
    _, expected = header(path)
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert_refused(path, code, captured.out, captured.err)
    assert expected in captured.err
    out = quiet_machine / "run"
    code = main(["run", str(path), "--no-peak", "--no-report", "--out", str(out)])
    captured_run = capsys.readouterr()
    assert_refused(path, code, captured_run.out, captured_run.err)
    assert captured_run.err == captured.err
    assert not out.exists()


@pytest.mark.parametrize(
    "name", ["binary-nul-bytes", "alias-bomb", "nesting-deep-flow", "duplicate-model-key", "timeout-inf"]
)
def test_a_bad_suite_through_the_real_command(name, tmp_path):
    path = Path(__file__).parent / "bad_suites" / f"{name}.yaml"
    for args in (["validate", path], ["run", path, "--out", tmp_path / "run"]):
        result = bench_cli(*args, env={"BENCH_ENV_DIR": str(tmp_path)}, timeout=60)
        assert_refused(path, result.returncode, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and header(path)[1] in result.stderr
    assert not (tmp_path / "run").exists()


def fake_python(path: Path, marker: Path) -> Path:
    """An executable `bin/python` that, if it were ever started, would leave a marker file."""
    python = path / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\ntouch {marker}\n")
    python.chmod(0o755)
    return python


def test_no_program_outside_the_environments_folder_is_ever_started(tmp_path):
    envs, marker = tmp_path / "envs", tmp_path / "started"
    envs.mkdir()
    fake_python(tmp_path / "x", marker)
    text = TINY_SUITE + "    environment: \"../x\"\n"
    suite = write_suite(tmp_path, text)
    for args in (["validate", suite], ["run", suite, "--out", tmp_path / "run"]):
        result = bench_cli(*args, env={"BENCH_ENV_DIR": str(envs)}, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"{suite}: backends[1].environment: expected a name matching")
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_environment_refuses_any_name_that_is_not_known(tmp_path, monkeypatch):
    """Defence in depth: even a case that never went through validation cannot name a path."""
    monkeypatch.setenv("BENCH_ENV_DIR", str(tmp_path / "envs"))
    marker = tmp_path / "started"
    fake_python(tmp_path / "x", marker)
    for name in ("../x", str(tmp_path / "x"), "x/..", ".", "no-such-env"):
        with pytest.raises(BenchError, match="^environment: expected one of 'main', 'intel'"):
            environment(name)
    row = run_case_with(tmp_path, environment="../x")
    assert row["status"] == "error" and row["reason"].startswith("environment: expected one of")
    assert not marker.exists()


def run_case_with(tmp_path: Path, **changes) -> dict:
    """One case of the tiny suite, changed after validation, through the runner (no worker starts for these)."""
    from bench.plan.matrix import expand
    from bench.results.folder import RunDir
    from bench.run.runner import Runner
    from bench.plan.suite import load_suite

    suite, path = load_suite(write_suite(tmp_path, TINY_SUITE))
    case = dataclasses.replace(expand(suite)[0], **changes)
    run_dir = RunDir(tmp_path / "run")
    run_dir.logs.mkdir(parents=True)
    return Runner(run_dir, path.parent).run_case(case)


def test_an_environment_built_by_hand_under_the_root_is_a_known_name(quiet_machine, capsys):
    suite = write_suite(quiet_machine, TINY_SUITE + "    environment: bare\n")
    assert main(["validate", str(suite)]) == 2
    assert "backends[1].environment: expected one of 'main', 'intel' (or an environment built under" in (
        capsys.readouterr().err
    )
    (quiet_machine / "envs" / "bare" / "bin").mkdir(parents=True)
    (quiet_machine / "envs" / "bare" / "bin" / "python").symlink_to(sys.executable)
    assert main(["validate", str(suite)]) == 0
    assert environment("bare").python == quiet_machine / "envs" / "bare" / "bin" / "python"


def test_a_config_damaged_after_validation_is_an_error_row_not_a_traceback(tmp_path):
    config = json.loads((PROJECT / "bench" / "plan" / "configs" / "bert-tiny" / "config.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    text = TINY_SUITE.replace("config: bert-tiny", "config: cfg.json")
    from bench.plan.matrix import expand
    from bench.results.folder import RunDir
    from bench.run.runner import Runner
    from bench.plan.suite import load_suite

    suite, path = load_suite(write_suite(tmp_path, text))
    (tmp_path / "cfg.json").write_text('{"model_type": "bert", "vocab_size": ')
    run_dir = RunDir(tmp_path / "run")
    run_dir.logs.mkdir(parents=True)
    row = Runner(run_dir, path.parent).run_case(expand(suite)[0])
    assert row["status"] == "error"
    assert row["reason"].startswith(f"{tmp_path / 'cfg.json'}: expected a JSON config, got invalid JSON")


def test_what_will_not_run_here_is_a_warning_not_an_error(quiet_machine, capsys):
    text = TINY_SUITE.replace("threads: [1]", "threads: [1, 512]").replace(
        "models:\n", "models:\n  - name: cached\n    hub: nobody/not-cached-model\n"
    )
    suite = write_suite(quiet_machine, text)
    assert main(["validate", str(suite)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{suite}: ok, 8 cases\n"
    warnings = captured.err.splitlines()
    assert len(warnings) == 2 and all(line.startswith(f"{suite}: warning: ") for line in warnings)
    assert "models[0].hub: Hub model nobody/not-cached-model is not in the local cache" in warnings[0]
    assert "defaults.threads: 512 threads is more than the" in warnings[1]


def test_a_large_plan_needs_allow_large(quiet_machine, capsys):
    from bench.plan.preflight import PLAN_CAP

    path = Path(__file__).parent / "bad_suites" / "plan-over-cap.yaml"
    assert main(["validate", str(path), "--allow-large"]) == 0
    assert capsys.readouterr().out == f"{path}: ok, 10000 cases\n" and PLAN_CAP == 5000
    help_text = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--help"], cwd=PROJECT, capture_output=True, text=True
    ).stdout
    assert f"more than {PLAN_CAP} cases" in " ".join(help_text.split())


def test_a_file_over_the_size_limit_is_not_read_whole(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 120_000)
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: (file): expected a suite file of at most 1024 KiB, got more\n"


def test_validate_imports_nothing_heavy_and_writes_nothing(tmp_path):
    code = (
        "import sys\n"
        "from bench.cli.app import main\n"
        "code = main(['validate', 'suites/default.yaml'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'optimum', 'numpy'})\n"
        "print(code, heavy)\n"
    )
    before = sorted(p.name for p in PROJECT.iterdir())
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr
    assert sorted(p.name for p in PROJECT.iterdir()) == before
