"""TorchScript and torch.compile: real tiny models traced or compiled in real workers, checked against eager."""

import json

import pytest

from backend_jobs import expected_exit, job_of
from bench.backends.cache import artifacts_root
from conftest import bench_cli, write_suite

MEASURE = "measure: {warmup: 1, min_iterations: 3, min_seconds: 0.2, max_seconds: 2, timeout: 300}"

TORCHSCRIPT_SUITE = f"""\
name: torchscript
defaults:
  seq_lens: [16]
  batch_sizes: [1]
  {MEASURE}
models:
  - name: bert-tiny
    config: bert-tiny
    task: text-classification
    threads: [2]
  - name: gpt2-tiny
    config: gpt2
    task: text-generation
    threads: [1]
    config_overrides: {{n_layer: 2, n_embd: 64, n_head: 2, vocab_size: 2048}}
backends:
  - name: ts
    type: torchscript
    precisions: [fp32, bf16]
exclude:
  - {{model: gpt2-tiny, precision: bf16}}
"""

COMPILE_SUITE = f"""\
name: compile
defaults:
  seq_lens: [32]
  batch_sizes: [1]
  threads: [1]
  {MEASURE}
models:
  - name: bert-tiny
    config: bert-tiny
    task: text-classification
    config_overrides: {{num_hidden_layers: 1}}  # inductor's compile is most of the test's time
backends:
  - name: compiled
    type: torch_compile
"""


def run_rows(tmp_path, text, run="run"):
    """One `bench run` with a cache of the test's own, so a first run always starts cold; bf16 is measured where this
    CPU only emulates it (--emulated): the traced casts are what is tested."""
    suite = write_suite(tmp_path, text)
    out = tmp_path / run
    env = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    result = bench_cli("run", suite, "--out", out, "--no-peak", "--no-report", "--emulated", env=env)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert result.returncode == expected_exit(rows), result.stdout + result.stderr
    return {(r["model"], r["precision"]): r for r in rows}


def cached_file(tmp_path, entry_prefix, name):
    (folder,) = artifacts_root(tmp_path / "cache").glob(f"{entry_prefix}-*")
    return folder / name


def assert_ok_on_threads(row):
    assert row["status"] == "ok", row["reason"]
    assert row["accuracy"]["passed"], row["accuracy"]["failures"]
    assert row["effective"]["threads"] == row["threads"]
    assert row["effective"]["backend"]["torch_threads"] == row["threads"]


def key_of(module, **change):
    backend_type = "torchscript" if module.__name__.endswith("torchscript") else "torch_compile"
    changed = {"batch_size": 1, "seq_len": 16, "backend_options": {"attn_implementation": "eager"}, **change}
    return module.cache_parts(job_of(backend_type, **changed))


@pytest.mark.parametrize(
    "change",
    [
        {"seq_len": 32},
        {"batch_size": 2},
        {"padding_ratio": 0.5},
        {"seed": 1},
        {"precision": "bf16"},
        {"backend_options": {"attn_implementation": "sdpa"}},
    ],
)
def test_a_cached_module_serves_only_the_inputs_and_settings_it_was_made_for(change):
    pytest.importorskip("torch")
    from bench.backends.torch import compile as torch_compile
    from bench.backends.torch import torchscript

    for module in (torchscript, torch_compile):
        assert key_of(module, **change) != key_of(module)


def test_threads_key_a_compile_but_not_a_frozen_module():
    pytest.importorskip("torch")
    from bench.backends.torch import compile as torch_compile
    from bench.backends.torch import torchscript

    assert key_of(torchscript, threads=2) == key_of(torchscript)
    assert key_of(torch_compile, threads=2) != key_of(torch_compile)


@pytest.mark.slow
def test_torchscript_traces_freezes_and_matches_eager_including_a_causal_lm(tmp_path):
    rows = run_rows(tmp_path, TORCHSCRIPT_SUITE)
    assert set(rows) == {("bert-tiny", "fp32"), ("bert-tiny", "bf16"), ("gpt2-tiny", "fp32")}
    for row in rows.values():
        assert_ok_on_threads(row)
        timings = row["timings_ms"]
        assert row["details"]["cache"] == "miss"
        assert timings["model_load_ms"] > 0  # the model is built in prepare, only to make the missing entry
        assert timings["trace_ms"] > 0 and timings["freeze_ms"] > 0 and timings["profiling_ms"] > 0
        assert timings["prepare"] >= sum(timings[k] for k in ("model_load_ms", "trace_ms", "freeze_ms", "profiling_ms"))
        assert row["details"]["profiling_runs"] == row["effective"]["backend"]["num_profiled_runs"] + 1
        assert row["effective"]["backend"]["frozen"] is True
    assert rows[("bert-tiny", "fp32")]["accuracy"]["max_abs_diff"] <= 1e-5
    bf16 = rows[("bert-tiny", "bf16")]["accuracy"]
    assert bf16["max_abs_diff"] > 1e-5, "a bf16 graph must differ from fp32: the autocast casts were not traced"
    second_run_loads_the_cached_modules_and_rebuilds_damaged_ones(tmp_path, rows)


def second_run_loads_the_cached_modules_and_rebuilds_damaged_ones(tmp_path, first):
    truncated = cached_file(tmp_path, "torchscript-bert-tiny-bf16", "module.pt")
    size = truncated.stat().st_size
    truncated.write_bytes(truncated.read_bytes()[:100])
    flipped = cached_file(tmp_path, "torchscript-gpt2-tiny-fp32", "module.pt")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    second = run_rows(tmp_path, TORCHSCRIPT_SUITE, run="second")
    for key, row in second.items():
        assert_ok_on_threads(row)
        assert row["accuracy"]["max_abs_diff"] == first[key]["accuracy"]["max_abs_diff"]
        assert row["effective"]["backend"] == first[key]["effective"]["backend"]
        assert row["timings_ms"]["jit_load_ms"] > 0 and row["details"]["profiling_runs"] > 0
    hit = second[("bert-tiny", "fp32")]
    assert hit["details"]["cache"] == "hit" and not {"model_load_ms", "trace_ms"} & set(hit["timings_ms"])
    truncated_row = second[("bert-tiny", "bf16")]
    assert truncated_row["details"]["cache"] == f"rebuilt: module.pt has 100 bytes, the record says {size}"
    gpt2 = second[("gpt2-tiny", "fp32")]
    assert gpt2["details"]["cache"] == "rebuilt: module.pt does not match its recorded digest"
    assert gpt2["timings_ms"]["model_load_ms"] > 0 and gpt2["timings_ms"]["trace_ms"] > 0


@pytest.mark.slow
def test_torch_compile_compiles_in_prepare_and_does_not_recompile_while_measuring(tmp_path):
    import glob
    import tempfile

    inductor_dirs = set(glob.glob(f"{tempfile.gettempdir()}/bench-inductor-*"))
    first = run_rows(tmp_path, COMPILE_SUITE)[("bert-tiny", "fp32")]
    second = run_rows(tmp_path, COMPILE_SUITE, run="second")[("bert-tiny", "fp32")]
    assert set(glob.glob(f"{tempfile.gettempdir()}/bench-inductor-*")) <= inductor_dirs  # each worker removed its own
    for row, cache, fx in ((first, "miss", {"hits": 0, "misses": 1}), (second, "hit", {"hits": 1, "misses": 0})):
        assert_ok_on_threads(row)
        timings, details = row["timings_ms"], row["details"]
        assert timings["compile_ms"] > 10 * timings["first_call"]
        assert timings["prepare"] >= timings["compile_ms"] + timings["settling_ms"]
        assert details["graphs_compiled"] == 1 and details["graph_breaks"] == 0
        assert details["recompilations"] == 0 and not any("compiled" in w for w in row["warnings"])
        assert (details["cache"], details["fx_graph_cache"], details["aot_autograd_cache"]) == (cache, fx, fx)
        backend = row["effective"]["backend"]
        assert (backend["compiler_backend"], backend["mode"], backend["dynamic"]) == ("inductor", "default", False)
        assert backend["fx_graph_cache"] and backend["autograd_cache"]
    assert second["timings_ms"]["restore_ms"] > 0
    assert second["timings_ms"]["compile_ms"] < first["timings_ms"]["compile_ms"]
    assert second["accuracy"]["max_abs_diff"] == first["accuracy"]["max_abs_diff"]


def test_a_recompilation_while_measuring_is_counted_and_warned():
    torch = pytest.importorskip("torch")
    from bench.backends.torch.compile import TorchCompileBackend, compile_counters

    backend = TorchCompileBackend(job_of("torch_compile"))
    double = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    double(torch.ones(3))
    backend.measured_from = compile_counters()
    double(torch.ones(3))
    backend.after_measurement()
    assert backend.details["recompilations"] == 0 and backend.warnings == []
    double(torch.ones(5))
    backend.after_measurement()
    assert backend.details["recompilations"] == 1
    assert backend.warnings and "compiled 1 more graph(s) while measuring" in backend.warnings[0]


def test_an_unknown_compile_mode_is_named_with_its_field(tmp_path):
    text = COMPILE_SUITE.replace("type: torch_compile", "type: torch_compile\n    options: {mode: fast}")
    suite = write_suite(tmp_path, text)
    result = bench_cli("validate", suite)
    assert result.returncode == 2
    assert "backends[0].options.mode: expected 'default', 'reduce-overhead'" in result.stderr
    assert "got 'fast'" in result.stderr
