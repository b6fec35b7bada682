"""Compare a case's outputs with the eager fp32 reference, on real (non-padding) tokens only.

The gated figure is the centred relative error of each compared output, ‖got − ref‖ / ‖ref − mean(ref)‖: the
error measured against how much the reference itself varies, so an offset shared by every value (logits around
-100) neither hides an unrelated output nor makes small outputs fail. A model with a task head is also compared on
its last hidden state where the backend exposes it. Top-1 predictions (class, answer start/end, next token) are
gated only where the reference's margin between its first and second choice is wide enough to mean something.
"""

from __future__ import annotations

import numpy as np

from bench.measure.loading import TASK_OUTPUTS

HIDDEN_STATE = "last_hidden_state"
TOP1_OUTPUTS = {
    "text-classification": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
    "text-generation": ("logits",),
}


def compare(
    outputs: dict, reference: dict, mask: np.ndarray, task: str, tolerance: dict, not_compared: dict | None = None
) -> dict:
    """Figures per output, the worst relative error, top-1 agreement, and the verdict against `tolerance`.

    `not_compared` names reference outputs the backend cannot give (with why); every other one must be there.
    """
    not_compared = dict(not_compared or {})
    if HIDDEN_STATE in outputs and HIDDEN_STATE not in reference:
        not_compared[HIDDEN_STATE] = "the reference has no last hidden state"
    per_output = {}
    for name, ref in reference.items():
        if name not in outputs:
            if name in not_compared and name not in TASK_OUTPUTS[task]:
                continue
            return failed(f"output {name} is missing (the reference has it)", tolerance)
        got, ref = np.asarray(outputs[name], np.float64), np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            return failed(f"output {name} has shape {list(got.shape)}, the reference {list(ref.shape)}", tolerance)
        keep = real_tokens(name, task, mask)
        per_output[name] = output_figures(keep(got), keep(ref))
    task_names = [name for name in TASK_OUTPUTS[task] if name in per_output]
    result = {
        "relative_error": worst(per_output[name]["relative_error"] for name in per_output),
        **task_figures(outputs, reference, mask, task, task_names),
        "outputs": per_output,
        "not_compared": not_compared,
        "top1": top1_agreement(outputs, reference, mask, task, tolerance.get("top1_margin")),
    }
    result["argmax_agreement"] = result["top1"]["agreement"] if result["top1"] else None
    return verdict(result, tolerance)


def output_figures(got: np.ndarray, ref: np.ndarray) -> dict:
    """The centred relative error (gated), and max/mean |diff| and the plain cosine (information)."""
    finite = bool(np.isfinite(got).all())
    diff = np.abs(got - ref)
    spread = float(np.linalg.norm(ref - ref.mean())) if ref.size else 0.0
    error = float(np.linalg.norm(got - ref))
    if not finite:
        relative = None
    elif spread > 0:
        relative = error / spread
    else:
        relative = 0.0 if error == 0 else None  # a constant reference: only an exact match is a match
    return {
        "relative_error": relative,
        "max_abs_diff": float(diff.max()) if diff.size and finite else None,
        "mean_abs_diff": float(diff.mean()) if diff.size and finite else None,
        "cosine": cosine(got.ravel(), ref.ravel()) if finite else None,
        "finite": finite,
        "constant_reference": spread == 0,
    }


def task_figures(outputs: dict, reference: dict, mask: np.ndarray, task: str, names: list[str]) -> dict:
    """max/mean |diff| and cosine over the task's own outputs together, as information."""
    got = np.concatenate([real_tokens(n, task, mask)(np.asarray(outputs[n], np.float64)).ravel() for n in names])
    ref = np.concatenate([real_tokens(n, task, mask)(np.asarray(reference[n], np.float64)).ravel() for n in names])
    finite = bool(np.isfinite(got).all())
    diff = np.abs(got - ref)
    return {
        "max_abs_diff": float(diff.max()) if diff.size and finite else None,
        "mean_abs_diff": float(diff.mean()) if diff.size and finite else None,
        "cosine": cosine(got, ref) if finite else None,
        "finite": finite,
    }


def top1_agreement(outputs: dict, reference: dict, mask: np.ndarray, task: str, margin: float | None) -> dict | None:
    """Agreement of the top-1 choices: over all predictions, and over those whose reference margin is decisive.

    A prediction's margin is its reference's top-1 minus top-2 value over the root mean square of that reference
    output (over real tokens): a prediction is decided when its margin is at least `margin`. The root mean square
    is the standard deviation for centred outputs; unlike it, it does not collapse to the gap itself with one
    prediction of two labels (where every margin would read 2, near-ties included): a reduced precision's error
    grows with the values' size, not with their spread.
    """
    names = TOP1_OUTPUTS.get(task)
    if not names:
        return None
    agree, decided = [], []
    for name in names:
        got, ref, scale = choices(outputs[name], reference[name], mask, task)
        if ref.shape[-1] < 2:
            continue
        top_two = np.sort(ref, axis=-1)[:, -2:]
        margins = (top_two[:, 1] - top_two[:, 0]) / scale if scale > 0 else np.zeros(len(ref))
        agree.append(got.argmax(-1) == ref.argmax(-1))
        decided.append(margins >= margin if margin is not None else np.zeros(len(ref), bool))
    if not agree:
        return None
    agree, decided = np.concatenate(agree), np.concatenate(decided)
    return {
        "agreement": float(agree.mean()),
        "predictions": int(agree.size),
        "margin": margin,
        "decided": int(decided.sum()),
        "decided_agreement": float(agree[decided].mean()) if decided.any() else None,
    }


def choices(got, ref, mask: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Predictions as rows of candidates (padding positions never chosen), and the reference output's spread."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if task == "question-answering":
        scale = rms(ref[mask == 1])
        return np.where(mask == 1, got, -np.inf), np.where(mask == 1, ref, -np.inf), scale
    if task == "text-generation":
        got, ref = got[mask == 1], ref[mask == 1]
    return got, ref, rms(ref)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


def verdict(result: dict, tolerance: dict) -> dict:
    failures = []
    if not result["finite"] or not all(figures["finite"] for figures in result["outputs"].values()):
        failures.append("outputs contain NaN or infinity")
    bound = tolerance.get("max_relative_error")
    for name, figures in result["outputs"].items():
        error = figures["relative_error"]
        if figures["finite"] and error is None:
            failures.append(f"{name} differs from a constant reference")
        elif bound is not None and error is not None and not error <= bound:
            failures.append(f"{name} relative error {error:.3g} > {bound:g}")
    top1, least = result["top1"], tolerance.get("min_top1_agreement")
    if top1 and top1["decided"] and least is not None and not top1["decided_agreement"] >= least:
        failures.append(
            f"top-1 agreement {top1['decided_agreement']:.3f} < {least:g} on the {top1['decided']} prediction(s)"
            f" whose reference margin is at least {top1['margin']:g} times the output's root mean square"
        )
    return {**result, "passed": not failures, "failures": failures, "tolerance": dict(tolerance)}


def failed(reason: str, tolerance: dict) -> dict:
    return {
        "relative_error": None, "max_abs_diff": None, "mean_abs_diff": None, "cosine": None, "finite": None,
        "outputs": {}, "not_compared": {}, "top1": None, "argmax_agreement": None,
        "passed": False, "failures": [reason], "tolerance": dict(tolerance),
    }  # fmt: skip


def worst(errors) -> float | None:
    errors = list(errors)
    return None if not errors or None in errors else max(errors)


def real_tokens(name: str, task: str, mask: np.ndarray):
    """For a per-token output (batch × seq × ...), a function keeping the positions the mask marks real."""
    if name == HIDDEN_STATE or task in ("question-answering", "text-generation"):
        return lambda values: values[mask == 1]
    return lambda values: values


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
