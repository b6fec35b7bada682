"""The arrays an exported graph declares as its inputs, made from the case's input_ids and attention_mask."""

from __future__ import annotations


def graph_feed(input_names, inputs: dict, graph: str) -> dict:
    """Each input `graph` declares, in its order, made once: token types 0, and positions 0..seq-1 as the eager
    reference uses (the inputs are right-padded, so every real token's position is also its mask's running count)."""
    import numpy as np

    ids = inputs["input_ids"]
    made = {
        "token_type_ids": lambda: np.zeros_like(ids),
        "position_ids": lambda: np.broadcast_to(np.arange(ids.shape[1], dtype=ids.dtype), ids.shape).copy(),
    }
    result = {}
    for name in input_names:
        if name in inputs:
            result[name] = inputs[name]
        elif name in made:
            result[name] = made[name]()
        else:
            raise ValueError(f"{graph} wants an input {name!r} that bench does not make")
    return result
