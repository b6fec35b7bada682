"""The `intel` environment's backends (ipex, bettertransformer, trainer) end to end, and one reference for all.

These need the environment built (`bench env create intel`); without it they are skipped and say so.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from bench.environments import environment
from bench.plan.suite import DEFAULT_TOLERANCES
from bench.backends.precision_mode import CONVERTED_AUTOCAST, NATIVE, mode
from backend_jobs import check_tier_row, expected_exit, support_here
from conftest import PROJECT, bench_cli, write_suite

INTEL = environment("intel")
IPEX_BF16 = support_here("ipex", "bf16")
"""Native on AVX512_BF16 or AMX, emulated (not measured) on other AVX-512, refused without AVX-512 BW/VL/DQ."""
needs_intel = pytest.mark.skipif(
    not INTEL.built, reason=f"environment 'intel' is not built ({INTEL.python}); build it with: bench env create intel"
)

SUITE = """\
name: intel-tiny
defaults:
  seq_lens: [32]
  batch_sizes: [8]
  padding_ratios: [0.3]
  threads: [1]
  measure: {warmup: 1, min_iterations: 8, min_seconds: 0.1, max_seconds: 2, timeout: 300}
models:
  - name: tiny-intel
    config: bert-tiny
    task: text-classification
backends:
  - name: eager
    type: pytorch
  - name: ipex
    type: ipex
    precisions: [fp32, bf16]
  - name: ipex-nojit
    type: ipex
    options: {jit: false}
  - name: bt
    type: bettertransformer
  - name: trainer
    type: trainer
"""


@pytest.fixture(scope="module")
def intel_run(tmp_path_factory):
    """One run of every intel backend beside eager (main) on bert-tiny, padded batch 8; shared by the tests."""
    tmp = tmp_path_factory.mktemp("intel")
    out, cache = tmp / "run", tmp / "cache"  # set here: a module fixture starts before the per-test cache fixture
    result = bench_cli("run", write_suite(tmp, SUITE), "--out", out, env={"BENCH_CACHE_DIR": str(cache)}, timeout=1200)
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = {(r["backend"], r["precision"]): r for r in map(json.loads, lines)}
    return result, rows, cache


@needs_intel
@pytest.mark.slow
def test_every_intel_backend_runs_in_intel_and_passes_the_accuracy_gate(intel_run):
    result, rows, _ = intel_run
    rows = dict(rows)
    assert result.returncode == expected_exit(rows.values()), result.stdout + result.stderr
    assert set(rows) == {("eager", "fp32"), ("ipex", "fp32"), ("ipex", "bf16"), ("ipex-nojit", "fp32"),
                         ("bt", "fp32"), ("trainer", "fp32"), ("eager@intel", "fp32")}  # fmt: skip
    assert check_tier_row(rows.pop(("ipex", "bf16")), "ipex") == (IPEX_BF16.tier == "native")
    for (backend, precision), row in rows.items():
        assert row["status"] == "ok" and row["accuracy"]["passed"], (backend, row["reason"], row["accuracy"])
        assert row["cpu_support"]["tier"] == "native"
        expected = str(INTEL.python) if row["environment"] == "intel" else sys.executable
        assert row["effective"]["python"] == expected
        assert row["effective"]["threads"] == 1
    torch_versions = {key: row["effective"]["versions"]["torch"] for key, row in rows.items()}
    assert torch_versions["ipex", "fp32"] != torch_versions["eager", "fp32"]
    for key in (("ipex-nojit", "fp32"), ("bt", "fp32")):  # the transformers model runs: a hook sees its hidden state
        assert set(rows[key]["accuracy"]["outputs"]) == {"logits", "last_hidden_state"}, key
    for key in (("ipex", "fp32"), ("trainer", "fp32")):  # a frozen graph: logits only, said why
        assert "frozen TorchScript" in rows[key]["accuracy"]["not_compared"]["last_hidden_state"], key
    ipex_view = rows["ipex", "fp32"]["effective"]["cpu_view"]["ipex"]
    assert ipex_view["isa"] == rows["ipex", "fp32"]["effective"]["backend"]["ipex_isa"]


@needs_intel
@pytest.mark.slow
@pytest.mark.skipif(IPEX_BF16.tier != "native", reason=f"ipex bf16 is {IPEX_BF16.tier} on this CPU: {IPEX_BF16.reason}")
def test_ipex_bf16_where_the_cpu_runs_it_converts_the_weights_and_errs_more_than_fp32(intel_run):
    _, rows, _ = intel_run
    bf16, fp32 = rows["ipex", "bf16"], rows["ipex", "fp32"]
    assert bf16["accuracy"]["relative_error"] > fp32["accuracy"]["relative_error"]
    assert "frozen TorchScript" in bf16["accuracy"]["not_compared"]["last_hidden_state"]
    assert bf16["effective"]["backend"]["weights_dtype"] == "torch.bfloat16"
    assert bf16["precision_mode"] == mode("bf16", "bf16", CONVERTED_AUTOCAST)


@needs_intel
@pytest.mark.slow
def test_each_step_is_timed_and_what_took_effect_is_recorded(intel_run):
    _, rows, _ = intel_run
    jit, nojit = rows["ipex", "fp32"], rows["ipex-nojit", "fp32"]
    assert {"ipex_import_ms", "ipex_optimize_ms", "trace_ms", "freeze_ms", "profiling_ms"} <= set(jit["timings_ms"])
    assert "trace_ms" not in nojit["timings_ms"] and nojit["effective"]["backend"]["jit"] is False
    assert jit["details"]["fused_ops"] and all(op.startswith("ipex") for op in jit["details"]["fused_ops"])
    assert jit["effective"]["backend"]["weights_dtype"] == "torch.float32"
    assert jit["effective"]["backend"]["child_processes"] == 0  # no inductor compile pool beside the measurement
    bt = rows["bt", "fp32"]
    assert bt["details"]["converted_layers"] == 2 and bt["effective"]["backend"]["bettertransformer"] is True
    assert bt["effective"]["backend"]["ipex_imported"] is False
    trainer = rows["trainer", "fp32"]
    assert trainer["details"] == {"torchscript": True, "autocast_per_call": False}
    assert {"wrap_model_ms", "trainer_jit_ms", "predict_ms"} <= set(trainer["timings_ms"])
    assert trainer["effective"]["backend"]["use_ipex"] and trainer["effective"]["backend"]["jit_mode_eval"]


@needs_intel
@pytest.mark.slow
def test_intel_rows_are_divided_by_an_eager_fp32_of_intel_and_say_what_they_computed(intel_run):
    _, rows, _ = intel_run
    from bench.results import compare

    own = rows["eager@intel", "fp32"]
    assert own["baseline"] and own["environment"] == "intel" and rows["eager", "fp32"]["baseline"]
    assert own["effective"]["versions"]["torch"] == rows["ipex", "fp32"]["effective"]["versions"]["torch"]
    listed = list(rows.values())
    assert compare.baselines(listed)[compare.baseline_key(rows["ipex", "fp32"])] is own
    assert compare.baselines(listed)[("main", *compare.shape_key(rows["ipex", "fp32"]))] is rows["eager", "fp32"]
    modes = {key: row["precision_mode"] for key, row in rows.items()}
    assert modes["ipex", "fp32"]["label"] == modes["trainer", "fp32"]["label"] == "fp32"
    assert modes["eager@intel", "fp32"] == mode("fp32", "fp32", NATIVE)


@needs_intel
@pytest.mark.slow
def test_rows_have_the_same_keys_and_types_whichever_interpreter_wrote_them(intel_run):
    _, rows, _ = intel_run
    main_row, intel_row = rows["eager", "fp32"], rows["bt", "fp32"]
    assert main_row["effective"]["versions"]["torch"] != intel_row["effective"]["versions"]["torch"]
    assert shape_of(main_row, skip={"backend_options", "details", "timings_ms"}) == shape_of(
        intel_row, skip={"backend_options", "details", "timings_ms"}
    )
    for row in (main_row, intel_row):
        assert all(isinstance(v, float) for v in row["timings_ms"].values())
        assert all(isinstance(v, float) for v in row["samples_ms"]) and row["samples_ms"]
        assert all(isinstance(v, int) for v in row["pinned_cpus"] + row["effective"]["cpus"])
        assert all(isinstance(v, str) for v in row["warnings"])


def shape_of(value, skip=frozenset(), depth=0):
    """Keys and value types, recursively; a backend's own effective settings, versions and lists' items are content."""
    if isinstance(value, dict):
        if depth == 2:  # effective.backend, effective.versions, effective.env
            return "dict"
        return {k: shape_of(v, depth=depth + 1) for k, v in value.items() if k not in skip}
    return type(value).__name__


@needs_intel
def test_a_reference_written_in_main_reads_the_same_under_intel_and_its_inputs_match(tmp_path):
    """intel's NumPy makes the same seeded inputs as main's: the digest its workers check agrees."""
    from bench.measure.inputs import make_inputs
    from bench.measure.reference import load_reference, save_reference

    inputs = make_inputs(8, 32, 30522, 0, padding_ratio=0.3, seed=0)
    outputs = {"logits": np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)}
    path = tmp_path / "ref.npz"
    save_reference(path, outputs, inputs)
    code = (
        "import json, sys, numpy\n"
        "from bench.measure.inputs import inputs_digest, make_inputs\n"
        "from bench.measure.reference import check_inputs, load_reference\n"
        "ref = load_reference(sys.argv[1])\n"
        "check_inputs(ref, make_inputs(8, 32, 30522, 0, padding_ratio=0.3, seed=0), sys.argv[1])\n"
        "print(json.dumps({'numpy': numpy.__version__, 'mask': ref.mask.tolist(), 'dtype': str(ref.mask.dtype),\n"
        "                  'digest': ref.inputs_digest, 'numpy_written': ref.numpy_version,\n"
        "                  'logits': ref.outputs['logits'].tolist(), 'logits_dtype': str(ref.outputs['logits'].dtype)}))"
    )
    done = subprocess.run([str(INTEL.python), "-c", code, str(path)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT)}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    reference = load_reference(path)
    assert seen["dtype"] == str(reference.mask.dtype) and seen["logits_dtype"] == "float32"
    assert np.array_equal(np.array(seen["mask"]), inputs["attention_mask"])
    assert np.array_equal(np.array(seen["logits"], dtype=np.float32), reference.outputs["logits"])
    assert seen["digest"] == reference.inputs_digest and seen["numpy_written"] == np.__version__


@needs_intel
@pytest.mark.slow
def test_the_intel_workers_read_the_reference_main_wrote(intel_run):
    _, rows, cache = intel_run
    references = list((cache / "references").glob("tiny-intel-*.npz"))
    assert len(references) == 1, "every backend at one shape shares the one reference computed in main"
    for key in (("ipex", "fp32"), ("bt", "fp32"), ("trainer", "fp32")):
        assert rows[key]["accuracy"]["relative_error"] <= DEFAULT_TOLERANCES["fp32"]["max_relative_error"]


def test_only_the_torch_backends_shared_helper_imports_ipex():
    pattern = re.compile(r"^\s*(import|from)\s+intel_extension_for_pytorch|__import__\(.intel_extension_for_pytorch")
    importers = {
        str(path.relative_to(PROJECT))
        for path in (PROJECT / "bench").rglob("*.py")
        if any(pattern.search(line) for line in path.read_text().splitlines())
    }
    assert importers == {"bench/backends/torch/common.py"}  # import_ipex, which only ipex and trainer call


@needs_intel
def test_loading_models_and_the_other_backends_leaves_ipex_unimported_in_intel():
    code = (
        "import sys\n"
        "import bench.worker.case, bench.measure.loading, bench.backends.torch.torchscript, bench.backends.torch.bettertransformer\n"
        "import bench.backends.torch.trainer, bench.backends.torch.ipex, transformers, optimum.bettertransformer\n"
        "from transformers import Trainer, TrainingArguments, AutoModel\n"
        "print('intel_extension_for_pytorch' in sys.modules)"
    )
    done = subprocess.run([str(INTEL.python), "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT)}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
