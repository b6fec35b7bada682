import json

import pytest

from bench.cli.app import main
from bench.errors import SuiteError
from bench.plan.suite import load_suite
from conftest import write_suite

GOOD = """\
models:
  - name: m
    config: bert-tiny
backends:
  - type: pytorch
"""


def problems(tmp_path, text):
    path = write_suite(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return [line.split(": ", 1)[1] for line in str(info.value).splitlines()]


def test_a_minimal_suite_validates_and_takes_its_name_from_the_file(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, GOOD, "mine.yaml"))
    assert suite.name == "mine"
    assert suite.backends[0].label == "pytorch"


def test_wrong_precision_names_the_field_what_was_expected_and_given(tmp_path):
    text = GOOD + "defaults:\n  precisions: [fp32, fp8]\n"
    assert problems(tmp_path, text) == [
        "defaults.precisions[1]: expected 'fp32', 'bf16' or 'int8', got 'fp8'"
    ]


def test_unknown_keys_are_rejected_with_the_allowed_ones(tmp_path):
    text = GOOD.replace("    config: bert-tiny", "    config: bert-tiny\n    seqlen: 3")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("models[0].seqlen: unknown field, expected one of seq_lens, batch_sizes,")
    assert problem.endswith(", got 'seqlen'")


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    text = """\
defaults:
  threads: [0]
  measure: {timeout: -1}
models:
  - name: m
    config: bert-tiny
    task: translation
backends:
  - type: tensorflow
"""
    found = problems(tmp_path, text)
    assert "defaults.threads: expected integers of at least 1, got 0" in found
    assert "defaults.measure.timeout: expected greater than 0, got -1" in found
    assert any(p.startswith("models[0].task: expected 'feature-extraction'") for p in found)
    assert any(p.startswith("backends[0].type: expected one of 'pytorch'") and "got 'tensorflow'" in p for p in found)


def test_backend_options_are_checked_against_the_backend(tmp_path):
    text = GOOD.replace("  - type: pytorch", "  - type: pytorch\n    options: {attn_implementation: flash, foo: 1}")
    assert problems(tmp_path, text) == [
        "backends[0].options.attn_implementation: expected 'eager' or 'sdpa', got 'flash'",
        "backends[0].options.foo: unknown field, expected one of attn_implementation, bf16, got 'foo'",
    ]


def test_a_model_needs_exactly_one_source(tmp_path):
    text = GOOD.replace("    config: bert-tiny", "    config: bert-tiny\n    hub: bert-base-uncased")
    assert problems(tmp_path, text) == [
        "models[0]: expected exactly one of packaged, path, config, hub, got ['config', 'hub']"
    ]


def test_duplicate_names_and_excludes_naming_nothing_are_errors(tmp_path):
    text = GOOD + "  - type: pytorch\nexclude:\n  - {backend: sdpa}\n"
    assert problems(tmp_path, text) == [
        "backends[1].name: expected a name not used above, got 'pytorch' again",
        "exclude[0].backend: expected one of 'pytorch', got 'sdpa'",
    ]


def test_yaml_syntax_and_top_level_shape(tmp_path):
    assert problems(tmp_path, "models: [\n") [0].startswith("line 2: expected valid YAML")
    assert problems(tmp_path, "- 1\n") == ["(top level): expected a mapping, got list"]


def test_safe_loader_refuses_python_tags(tmp_path):
    text = GOOD + "description: !!python/object/apply:os.system ['echo owned']\n"
    assert problems(tmp_path, text)[0].startswith("line 6: expected valid YAML")


def test_validate_cli_prints_one_line_per_problem_and_exits_2_without_traceback(tmp_path, capsys):
    path = write_suite(tmp_path, GOOD + "defaults:\n  precisions: [fp8]\n  seq_lens: [x]\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"{path}: defaults.seq_lens[0]: expected a valid integer, got 'x'",
        f"{path}: defaults.precisions[0]: expected 'fp32', 'bf16' or 'int8', got 'fp8'",
    ]


def test_missing_file_is_bad_input(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip().endswith("(file): expected a readable suite file, got No such file or directory")


def test_schema_is_json_schema_of_the_suite(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["required"]) == {"models", "backends"}
    assert schema["additionalProperties"] is False


def test_shipped_suites_validate():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.glob("suites/*.yaml")):
        load_suite(path)
