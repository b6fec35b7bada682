"""What a model's config.json says about the cases it can run: its sizes, its positions, and a rough memory need.

Read from the JSON alone (no transformers): the key names below are the ones the architectures bench ships use,
and the usual alternatives of other Hugging Face configs.
"""

from __future__ import annotations

import json

HIDDEN = ("hidden_size", "n_embd", "dim", "d_model")
LAYERS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
HEADS = ("num_attention_heads", "n_head", "n_heads")
INNER = ("intermediate_size", "n_inner", "hidden_dim")
POSITIONS = ("max_position_embeddings", "n_positions")
SIZE_KEYS = ("vocab_size",) + HIDDEN + LAYERS + HEADS + INNER + POSITIONS
# RoBERTa-style embeddings number positions from pad_token_id + 1, so that many fewer are usable.
POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm",
                         "data2vec-text", "longformer", "mpnet"}  # fmt: skip
BYTES_PER_VALUE = 4  # fp32: the reference and the weights are fp32 whatever the case's precision


def first(config: dict, keys: tuple[str, ...]):
    """(key, value) of the first of `keys` the config sets to something other than null, else (None, None)."""
    for key in keys:
        if config.get(key) is not None:
            return key, config[key]
    return None, None


def size_problems(config: dict) -> list[tuple[str, str]]:
    """(key, problem) for every size the config sets to something that is not a positive integer."""
    problems = []
    for key in SIZE_KEYS:
        value = config.get(key)
        if value is not None and (type(value) is not int or value < 1):
            problems.append((key, f"expected a positive integer, got {short(value)}"))
    _, hidden = first(config, HIDDEN)
    heads_key, heads = first(config, HEADS)
    if not problems and hidden and heads and hidden % heads:
        problems.append((heads_key, f"expected a divisor of the hidden size {hidden}, got {heads}"))
    return problems


def usable_positions(config: dict) -> tuple[str, int] | None:
    """(where the figure comes from, longest sequence the position embeddings allow), or None if not said."""
    key, positions = first(config, POSITIONS)
    if key is None:
        return None
    if config.get("model_type") in POSITION_OFFSET_TYPES:
        offset = (config.get("pad_token_id") or 0) + 1
        return f"{key} {positions} of its config less {offset} for the padding offset", positions - offset
    return f"{key} of its config", positions


def memory_estimate(config: dict, task: str, batch: int, seq: int) -> int | None:
    """Bytes a case needs at least, roughly: fp32 weights, every layer's hidden states, one attention matrix.

    weights ≈ (vocab + positions) × hidden + layers × (4 hidden² + 2 hidden × inner)
    activations ≈ batch × seq × (hidden × layers + inner) + batch × heads × seq² (+ batch × seq × vocab logits
    for text generation). A lower bound: a case over this figure cannot fit, one under it may still not.
    """
    _, hidden = first(config, HIDDEN)
    _, layers = first(config, LAYERS)
    _, heads = first(config, HEADS)
    if not (hidden and layers and heads):
        return None
    vocab = config["vocab_size"]
    _, positions = first(config, POSITIONS)
    _, inner = first(config, INNER)
    inner = inner or 4 * hidden
    weights = (vocab + (positions or 0)) * hidden + layers * (4 * hidden * hidden + 2 * hidden * inner)
    activations = batch * seq * (hidden * layers + inner) + batch * heads * seq * seq
    if task == "text-generation":
        activations += batch * seq * vocab
    return BYTES_PER_VALUE * (weights + activations)


def kind_problem(configured, given) -> str | None:
    """Why `given` cannot replace the config's value `configured`, or None if it can (same kind of value)."""
    if configured is None:
        return None
    if isinstance(configured, bool):
        fits, kind = isinstance(given, bool), "a boolean"
    elif isinstance(configured, int):
        fits, kind = type(given) is int, "an integer"
    elif isinstance(configured, float):
        fits, kind = type(given) in (int, float), "a number"
    elif isinstance(configured, str):
        fits, kind = isinstance(given, str), "a string"
    else:
        fits, kind = False, f"a {type(configured).__name__} (not replaceable by config_overrides)"
    return None if fits else f"expected {kind} like the config's {short(configured)}, got {short(given)}"


def short(value, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
