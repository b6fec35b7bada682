"""Load a model in the worker (imports torch and transformers): from a directory or from a config, seeded."""

from __future__ import annotations

import json

from bench.job import Job, Source

TASK_CLASSES = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-generation": "AutoModelForCausalLM",
}
TASK_OUTPUTS = {
    "feature-extraction": ("last_hidden_state",),
    "text-classification": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
    "text-generation": ("logits",),
}


def model_class(task: str):
    import transformers

    return getattr(transformers, TASK_CLASSES[task])


def model_call_kwargs(task: str) -> dict:
    """A causal LM is measured on its forward pass (prefill) without a KV cache."""
    return {"use_cache": False} if task == "text-generation" else {}


def load_config(source: Source, overrides: dict):
    from transformers import AutoConfig

    if source.kind == "config":
        with open(source.location) as handle:
            values = json.load(handle)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
    else:
        config = AutoConfig.from_pretrained(source.location, local_files_only=True)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def load_model(job: Job, attn_implementation: str = "eager", **kwargs):
    """The case's model in eval mode; random weights (seeded) for a config source, the files' weights otherwise."""
    import torch

    case, source = job.case, job.source
    config = load_config(source, case.model_entry.get("config_overrides", {}))
    cls = model_class(case.task)
    torch.manual_seed(case.seed)  # random weights, and any head a checkpoint lacks, are the same every run
    if source.kind == "config":
        model = cls.from_config(config, attn_implementation=attn_implementation, torch_dtype=torch.float32, **kwargs)
    else:
        model = cls.from_pretrained(
            source.location,
            config=config,
            attn_implementation=attn_implementation,
            torch_dtype=torch.float32,
            local_files_only=True,
            **kwargs,
        )
    return model.eval()


def select_outputs(task: str, raw) -> dict:
    """The outputs compared with the reference, as float32 numpy arrays."""
    import numpy as np

    selected = {}
    for index, name in enumerate(TASK_OUTPUTS[task]):
        value = raw[name] if not isinstance(raw, (tuple, list)) else raw[index]
        if hasattr(value, "detach"):
            value = value.detach().float().numpy()
        selected[name] = np.asarray(value, dtype=np.float32)
    return selected
