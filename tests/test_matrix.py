import pytest

from bench.errors import BenchError
from bench.matrix import case_id, expand, parse_filters, select
from bench.suite import load_suite
from conftest import write_suite

SUITE = """\
defaults:
  seq_lens: [32, 128]
  threads: [1, 2]
  precisions: [fp32, bf16, int8]
  measure: {min_seconds: 2}
models:
  - name: a
    config: bert-tiny
  - name: b
    config: bert-tiny
    seq_lens: [64]
    measure: {warmup: 7}
backends:
  - name: eager
    type: pytorch
  - name: sdpa
    type: pytorch
    options: {attn_implementation: sdpa}
    threads: [2]
    precisions: [fp32]
exclude:
  - {model: a, backend: eager, seq_len: 128}
"""


@pytest.fixture
def suite(tmp_path):
    return load_suite(write_suite(tmp_path, SUITE))[0]


def test_expansion_is_the_product_with_overrides_and_excludes(suite):
    cases = expand(suite)
    shapes = {(c.model, c.backend, c.seq_len, c.threads, c.precision) for c in cases}
    # int8 is not a pytorch precision; model b overrides seq_lens; sdpa overrides threads and precisions
    assert ("a", "eager", 32, 1, "bf16") in shapes
    assert not any(c.precision == "int8" for c in cases)
    assert {c.seq_len for c in cases if c.model == "b"} == {64}
    assert {c.threads for c in cases if c.backend == "sdpa"} == {2}
    assert not any(c.model == "a" and c.backend == "eager" and c.seq_len == 128 for c in cases)
    assert len(cases) == 2 * 2 + 2 * 2 + 2 * 1 + 1 * 1  # a-eager, b-eager, a-sdpa, b-sdpa


def test_measure_settings_merge_most_specific_first(suite):
    cases = expand(suite)
    b = next(c for c in cases if c.model == "b")
    a = next(c for c in cases if c.model == "a")
    assert b.measure["warmup"] == 7 and b.measure["min_seconds"] == 2
    assert a.measure["warmup"] == 3 and a.measure["min_iterations"] == 10


def test_case_ids_are_stable_unique_and_ignore_measurement_settings(suite, tmp_path):
    ids = [c.case_id for c in expand(suite)]
    assert len(set(ids)) == len(ids)
    assert ids == [c.case_id for c in expand(suite)]
    slower = load_suite(write_suite(tmp_path, SUITE.replace("min_seconds: 2", "min_seconds: 9"), "s2.yaml"))[0]
    assert [c.case_id for c in expand(slower)] == ids
    case = expand(suite)[0]
    params = {**case.to_dict(), "backend_options": {"attn_implementation": "sdpa"}}
    assert case_id(params) != case.case_id
    assert case.case_id.startswith("a-eager-fp32-s32-b1-t1-")


def test_baseline_is_eager_fp32_pytorch(suite):
    baselines = {(c.backend, c.precision) for c in expand(suite) if c.is_baseline}
    assert baselines == {("eager", "fp32")}


def test_filters_and_within_a_field_or_across_fields(suite):
    cases = expand(suite)
    only = select(cases, parse_filters(["backend=sdpa", "seq_len=32"]))
    assert {(c.backend, c.seq_len) for c in only} == {("sdpa", 32)}
    both = select(cases, parse_filters(["precision=fp32", "precision=bf16", "model=b"]))
    assert {c.precision for c in both} == {"fp32", "bf16"} and {c.model for c in both} == {"b"}


def test_bad_filters_are_bad_input():
    with pytest.raises(BenchError, match="--filter: expected FIELD=VALUE, got 'backend'"):
        parse_filters(["backend"])
    with pytest.raises(BenchError, match="expected a field among .*, got 'colour'"):
        parse_filters(["colour=red"])


def test_padding_applies_only_to_batches(tmp_path):
    text = SUITE.replace("  measure: {min_seconds: 2}", "  batch_sizes: [1, 4]\n  padding_ratios: [0, 0.25]")
    cases = expand(load_suite(write_suite(tmp_path, text))[0])
    assert {(c.batch_size, c.padding_ratio) for c in cases} == {(1, 0), (4, 0), (4, 0.25)}
