import pytest

from bench.errors import BenchError
from bench.plan.matrix import case_id, expand, parse_filters, select
from bench.plan.suite import load_suite
from conftest import EAGER_AND_SDPA, write_suite

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
""" + EAGER_AND_SDPA + """\
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


ENVIRONMENTS_SUITE = """\
defaults:
  seq_lens: [32]
  batch_sizes: [1, 4]
  padding_ratios: [0.0, 0.25]
  threads: [1]
models:
  - name: a
    config: bert-tiny
backends:
  - name: eager
    type: pytorch
  - name: ipex
    type: ipex
    batch_sizes: [4]
  - name: eager-intel
    type: pytorch
    environment: other
    seq_lens: [64]
"""


def test_each_environment_gets_its_own_eager_fp32_baseline_added_where_missing(tmp_path):
    suite = load_suite(write_suite(tmp_path, ENVIRONMENTS_SUITE))[0]
    from bench.run.workflow import plan

    cases, notes = plan(suite, [])
    baselines = {(c.environment, c.backend, c.seq_len, c.batch_size, c.padding_ratio) for c in cases if c.is_baseline}
    assert baselines == {
        ("main", "eager", 32, 1, 0.0), ("main", "eager", 32, 4, 0.0), ("main", "eager", 32, 4, 0.25),
        ("intel", "eager@intel", 32, 4, 0.0), ("intel", "eager@intel", 32, 4, 0.25),
        ("other", "eager-intel", 64, 1, 0.0), ("other", "eager-intel", 64, 4, 0.0), ("other", "eager-intel", 64, 4, 0.25),
    }  # fmt: skip
    added = [c for c in cases if c.backend == "eager@intel"]
    assert {c.backend_type for c in added} == {"pytorch"} and {c.precision for c in added} == {"fp32"}
    assert all(c.backend_options["attn_implementation"] == "eager" for c in added)
    assert len({c.case_id for c in cases}) == len(cases)
    assert [n for n in notes if "eager@" in n] == [
        "eager@intel: eager fp32 PyTorch added in environment 'intel' at 2 shapes, so that intel's cases are"
        " compared with a baseline measured on the same software"
    ]


def test_the_intel_suite_has_an_eager_fp32_of_intel_at_every_shape_it_measures_there():
    suite = load_suite("suites/intel.yaml")[0]
    cases = expand(suite)
    shapes = lambda env, pick: {c.baseline_key[1:] for c in cases if c.environment == env and pick(c)}  # noqa: E731
    assert shapes("intel", lambda c: c.is_baseline) == shapes("intel", lambda c: True)
    assert shapes("main", lambda c: c.is_baseline) == shapes("intel", lambda c: True)


def test_an_added_baseline_is_measured_as_the_suite_says_not_as_the_backend_beside_it(tmp_path):
    text = ENVIRONMENTS_SUITE.replace("    batch_sizes: [4]\n", "    batch_sizes: [4]\n    measure: {warmup: 9}\n")
    cases = expand(load_suite(write_suite(tmp_path, text))[0])
    (added, *_) = [c for c in cases if c.backend == "eager@intel"]
    assert added.measure["warmup"] == 3 and {c.measure["warmup"] for c in cases if c.backend == "ipex"} == {9}
