"""Compare a case's outputs with the eager fp32 reference, on real (non-padding) tokens only."""

from __future__ import annotations

import numpy as np

ARGMAX_OUTPUTS = {
    "text-classification": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
    "text-generation": ("logits",),
}


def compare(outputs: dict, reference: dict, mask: np.ndarray, task: str, tolerance: dict) -> dict:
    """max and mean |diff|, cosine similarity, argmax agreement where the task has a head, and the verdict."""
    diffs, got_all, ref_all = [], [], []
    for name, ref in reference.items():
        if name not in outputs:
            return _missing(name, tolerance)
        got = np.asarray(outputs[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            return _failed(f"output {name} has shape {list(got.shape)}, the reference {list(ref.shape)}", tolerance)
        got, ref = _real_tokens(got, mask), _real_tokens(ref, mask)
        diffs.append(np.abs(got - ref).ravel())
        got_all.append(got.ravel())
        ref_all.append(ref.ravel())
    diff = np.concatenate(diffs)
    got_flat, ref_flat = np.concatenate(got_all), np.concatenate(ref_all)
    result = {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "cosine": _cosine(got_flat, ref_flat),
        "argmax_agreement": argmax_agreement(outputs, reference, mask, task),
        "finite": bool(np.isfinite(got_flat).all()),
    }
    return verdict(result, tolerance)


def verdict(result: dict, tolerance: dict) -> dict:
    failures = []
    if not result["finite"]:
        failures.append("outputs contain NaN or infinity")
    bound = tolerance.get("max_abs_diff")
    if bound is not None and not result["max_abs_diff"] <= bound:
        failures.append(f"max |diff| {result['max_abs_diff']:.3g} > {bound:g}")
    bound = tolerance.get("min_cosine")
    if bound is not None and not result["cosine"] >= bound:
        failures.append(f"cosine {result['cosine']:.6f} < {bound:g}")
    bound = tolerance.get("min_argmax_agreement")
    agreement = result["argmax_agreement"]
    if bound is not None and agreement is not None and not agreement >= bound:
        failures.append(f"argmax agreement {agreement:.3f} < {bound:g}")
    return {**result, "passed": not failures, "failures": failures, "tolerance": dict(tolerance)}


def argmax_agreement(outputs: dict, reference: dict, mask: np.ndarray, task: str) -> float | None:
    """Share of predictions (class, answer start/end, next token) that match the reference's."""
    names = ARGMAX_OUTPUTS.get(task)
    if not names:
        return None
    agree, total = 0, 0
    for name in names:
        got, ref = np.asarray(outputs[name], np.float64), np.asarray(reference[name], np.float64)
        if task == "question-answering":
            got, ref = np.where(mask == 1, got, -np.inf), np.where(mask == 1, ref, -np.inf)
            match = got.argmax(-1) == ref.argmax(-1)
        elif task == "text-generation":
            match = (got.argmax(-1) == ref.argmax(-1))[mask == 1]
        else:
            match = got.argmax(-1) == ref.argmax(-1)
        agree += int(match.sum())
        total += match.size
    return agree / total if total else None


def _real_tokens(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-token outputs (batch × seq × ...) keep only the positions the mask marks real."""
    if values.ndim >= 2 and values.shape[:2] == mask.shape:
        return values[mask == 1]
    return values


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def _failed(reason: str, tolerance: dict) -> dict:
    return {
        "max_abs_diff": None, "mean_abs_diff": None, "cosine": None, "argmax_agreement": None, "finite": None,
        "passed": False, "failures": [reason], "tolerance": dict(tolerance),
    }  # fmt: skip


def _missing(name: str, tolerance: dict) -> dict:
    return _failed(f"output {name} is missing (the reference has it)", tolerance)


def save_reference(path, outputs: dict, mask: np.ndarray) -> None:
    """Write atomically: a reader in any environment sees a whole file or none."""
    import os
    import tempfile

    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.partial")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, __attention_mask__=mask, **{k: np.asarray(v, np.float32) for k, v in outputs.items()})
    os.replace(tmp, path)


def load_reference(path) -> tuple[dict, np.ndarray]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    mask = arrays.pop("__attention_mask__")
    return arrays, mask
