"""Deterministic, seeded model inputs: token ids from the vocabulary, an attention mask, optional padding."""

from __future__ import annotations

import numpy as np


def sequence_lengths(batch_size: int, seq_len: int, padding_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Lengths spread evenly from seq_len down so that the batch's padding share is about padding_ratio.

    The longest sequence always fills seq_len (a batch is padded to its longest), so batch 1 has no padding.
    """
    if batch_size == 1 or padding_ratio <= 0:
        return np.full(batch_size, seq_len, dtype=np.int64)
    shortest = max(1, round(seq_len * (1 - 2 * padding_ratio)))
    lengths = np.linspace(seq_len, shortest, batch_size).round().astype(np.int64)
    lengths[0] = seq_len
    rng.shuffle(lengths)
    return lengths


def make_inputs(
    batch_size: int, seq_len: int, vocab_size: int, pad_token_id: int | None, padding_ratio: float = 0.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """input_ids and attention_mask (int64, batch × seq_len), right-padded with pad_token_id."""
    rng = np.random.default_rng(seed)
    low = min(1000, vocab_size // 2)  # clear of the special tokens most vocabularies put first
    ids = rng.integers(low, vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    lengths = sequence_lengths(batch_size, seq_len, padding_ratio, rng)
    mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, pad_token_id if pad_token_id is not None else 0)
    return {"input_ids": ids, "attention_mask": mask}


def padding_share(attention_mask: np.ndarray) -> float:
    return float(1 - attention_mask.mean())


def inputs_digest(inputs: dict[str, np.ndarray]) -> str:
    """sha256 (first 16 hex digits) of the token ids and the mask: their names, shapes and int64 values."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("input_ids", "attention_mask"):
        values = np.ascontiguousarray(inputs[name], dtype="<i8")
        digest.update(f"{name}{list(values.shape)}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()[:16]
