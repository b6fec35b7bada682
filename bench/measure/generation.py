"""Text generation: whole greedy generate calls with a clock on every token, their figures, and the token check.

A generation case measures `model.generate(...)` as a user calls it: greedy (no sampling, one beam), with the KV
cache, min_new_tokens = max_new_tokens = the case's new_tokens. Every backend that generates (PyTorch, Optimum's
ORTModelForCausalLM, optimum-intel's OVModelForCausalLM) runs transformers' own GenerationMixin.generate, so one
instrument serves them all: a StoppingCriteria that never stops and reads `time.perf_counter_ns()` each time
generate asks it, which generate does once per new token, right after choosing it. So for one call:

    start ── prefill + 1st token ── stamp 1 ── token 2 ── stamp 2 ... stamp N ── (generate returns) ── end
    ttft = stamp 1 − start;  decode token k = stamp k − stamp k−1 (k = 2..N);  tail = end − stamp N

and ttft + Σ decode + tail = end − start exactly, in ns. `token_ms` keeps, per call, [ttft, decode 2, ..., decode N].

The check of a call: exactly new_tokens tokens came out, and the clock ticked that many times; otherwise the case
fails with GenerationCountError (an end-of-sequence token cannot stop it, min_new_tokens forbids it, but another
stopping criterion or a backend that ignores min_new_tokens could).

Accuracy compares the prefill's logits (the raw scores of the first new token, batch × vocab) with eager fp32's as
an encoder's outputs are compared (bench.measure.accuracy: centred relative error, gated by the precision's
max_relative_error), and the generated token ids with eager fp32's, generated from the same prompt ids and seeded weights:
`token_agreement` is the share of positions (over the batch) whose token equals the reference's, `first_divergence`
the earliest position where any sequence differs. The reference also keeps, per position, the margin of its top-1
over its top-2 score in standard deviations of that step's scores. The gate is the forward pass's top-1 rule: a
sequence fails where it first differs from the reference at a position whose reference margin is at least the
precision's top1_margin (a near-tie may flip under another kernel; a decisive choice may not), and from there on its
tokens follow another prefix, so they are counted (token_agreement) but not judged. min_token_agreement, when a
suite sets it, is a further gate on the share of equal tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from bench.measure.stats import spread

TOKENS = "generated_tokens"
MARGINS = "reference_margins"
PREFILL = "prefill_logits"
"""The names of the generation reference's arrays (bench.measure.reference)."""


class GenerationCountError(RuntimeError):
    """A generate call produced another number of tokens than the case's new_tokens."""


@dataclass
class CallRecord:
    """One generate call's clock reads, in perf_counter_ns, and how many sequences it generated."""

    start_ns: int
    stamps_ns: list[int] = field(default_factory=list)
    end_ns: int = 0
    sequences: int = 0


def step_clock():
    """A transformers StoppingCriteria that never stops and stamps perf_counter_ns each time it is asked (once per
    generated token). `stamps` is the list of the call under way: GenerationCall gives it a new one per call."""
    import torch
    from transformers import StoppingCriteria

    class StepClock(StoppingCriteria):
        def __init__(self):
            self.stamps: list[int] = []

        def __call__(self, input_ids, scores, **kwargs):
            self.stamps.append(time.perf_counter_ns())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepClock()


def stop_after(prompt_len: int, count: int):
    """Test hook: a StoppingCriteria that ends generation once `count` tokens exist (a generate that stops early)."""
    import torch
    from transformers import StoppingCriteria

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = input_ids.shape[1] - prompt_len >= count
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StopAfter()


def diverge_at(prompt_len: int, position: int):
    """Test hook: a LogitsProcessor that makes the token at `position` (0-based) the second choice instead of the
    first, as a wrong kernel would: the sequence continues differently from there."""
    import torch
    from transformers import LogitsProcessor

    class DivergeAt(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] - prompt_len != position:
                return scores
            top = scores.argmax(-1, keepdim=True)
            return scores.scatter(-1, top, -math.inf)

    return DivergeAt()


class GenerationCall:
    """One whole greedy generate call per __call__, clocked per token, its token count checked; `records` keeps
    every call's clock reads, `last` the last call's output ids (prompt + generated)."""

    def __init__(
        self,
        model,
        inputs: dict,
        new_tokens: int,
        pad_token_id: int | None,
        context: Callable = None,
        stopping=(),
        processors=(),
    ):
        import contextlib

        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        self.model = model
        self.tensors = {name: torch.from_numpy(inputs[name]) for name in ("input_ids", "attention_mask")}
        self.prompt_len = int(inputs["input_ids"].shape[1])
        self.new_tokens = new_tokens
        self.context = context or contextlib.nullcontext
        self.clock = step_clock()
        self.kwargs = {
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "use_cache": True,
            "pad_token_id": 0 if pad_token_id is None else pad_token_id,
            "stopping_criteria": StoppingCriteriaList([*stopping, self.clock]),  # the clock last: latest stamp
            "logits_processor": LogitsProcessorList(list(processors)),
        }
        self.records: list[CallRecord] = []
        self.last = None

    def __call__(self):
        return self.generate(self.tensors)

    def batch(self, queries: list[int]):
        """One generate call on as many of the prepared prompts as there are queries, one sequence each: a dynamically
        batched server's call (no padding: every prompt has the case's length)."""
        return self.generate({name: tensor[: len(queries)] for name, tensor in self.tensors.items()})

    def generate(self, tensors: dict):
        record = CallRecord(0, sequences=int(tensors["input_ids"].shape[0]))
        self.clock.stamps = record.stamps_ns
        record.start_ns = time.perf_counter_ns()
        with self.context():
            output = self.model.generate(**tensors, **self.kwargs)
        record.end_ns = time.perf_counter_ns()
        self.records.append(record)
        self.last = output
        self.check(output, record)
        return output

    def check(self, output, record: CallRecord) -> None:
        sequences = output if hasattr(output, "shape") else output.sequences
        generated = int(sequences.shape[1]) - self.prompt_len
        steps = len(record.stamps_ns)
        if generated != self.new_tokens or steps != self.new_tokens:
            raise GenerationCountError(
                f"generate produced {generated} new tokens in {steps} steps, not the {self.new_tokens} asked"
                f" (min_new_tokens = max_new_tokens = {self.new_tokens}): it stopped early or ran on, e.g. at an"
                " end-of-sequence token or another stopping criterion; a generation case times a fixed number of"
                " tokens, so it is not measured"
            )

    def tokens(self):
        """The last call's generated token ids, batch × new_tokens, int64."""
        import numpy as np

        sequences = self.last if hasattr(self.last, "shape") else self.last.sequences
        return np.asarray(sequences[:, self.prompt_len :].cpu().numpy(), dtype=np.int64)

    def reference(self) -> dict:
        """One more call that also returns its scores and raw logits: the tokens, the prefill's logits and, per
        position, the top-1 margin (module doc). Run untimed, after the measured calls, by every case."""
        import numpy as np

        record = CallRecord(0)
        self.clock.stamps = record.stamps_ns
        with self.context():
            output = self.model.generate(
                **self.tensors, **self.kwargs, output_scores=True, output_logits=True, return_dict_in_generate=True
            )
        self.check(output, record)
        self.last = output
        scores = np.stack([step.float().cpu().numpy() for step in output.scores], axis=1)  # batch × new × vocab
        prefill = output.logits[0].float().cpu().numpy()  # batch × vocab, before any logits processor
        return {TOKENS: self.tokens(), MARGINS: top1_margins(scores), PREFILL: prefill}


def top1_margins(scores):
    """Per batch row and step: (top-1 − top-2) / std of that step's finite scores; 0 where there is no spread."""
    import numpy as np

    scores = np.asarray(scores, np.float64)
    finite = np.isfinite(scores)
    top_two = np.sort(np.where(finite, scores, -np.inf), axis=-1)[..., -2:]
    count = np.maximum(finite.sum(-1), 1)
    mean = np.where(finite, scores, 0).sum(-1) / count
    spread = np.sqrt(np.where(finite, (scores - mean[..., None]) ** 2, 0).sum(-1) / count)
    gap = top_two[..., 1] - top_two[..., 0]
    gap = np.where(np.isfinite(gap), gap, 0.0)
    return np.where(spread > 0, gap / np.where(spread > 0, spread, 1), 0.0).astype(np.float32)


def raw_timings(records: list[CallRecord]) -> tuple[list[list[float]], list[float]]:
    """Per call [ttft, decode 2, ..., decode N] in ms, and each call's tail (the return after the last token)."""
    token_ms, tail_ms = [], []
    for record in records:
        marks = [record.start_ns, *record.stamps_ns]
        token_ms.append([(b - a) / 1e6 for a, b in zip(marks, marks[1:])])
        tail_ms.append((record.end_ns - marks[-1]) / 1e6)
    return token_ms, tail_ms


def figures(token_ms: list[list[float]], tail_ms: list[float], batch_size: int | None) -> dict:
    """The generation entry of a row from the raw per-token timings of its calls (see docs/results.md); batch_size
    None (calls of different sizes) leaves the tokens/s figures out."""
    new_tokens = len(token_ms[0]) if token_ms else 0
    ttft = [call[0] for call in token_ms]
    decode = [value for call in token_ms for value in call[1:]]
    e2e = [math.fsum(call) + tail for call, tail in zip(token_ms, tail_ms)]
    decode_rates = [
        batch_size * (len(call) - 1) / (math.fsum(call[1:]) / 1000)
        for call in token_ms
        if batch_size and math.fsum(call[1:]) > 0
    ]
    e2e_median = spread(e2e)["median"] if e2e else None
    return {
        "new_tokens": new_tokens,
        "calls": len(token_ms),
        "ttft_ms": spread(ttft),
        "decode_ms_per_token": spread(decode),
        "e2e_ms": spread(e2e),
        "decode_tokens_per_s": spread(decode_rates)["median"] if decode_rates else None,
        "tokens_per_s": batch_size * new_tokens / (e2e_median / 1000) if e2e_median and batch_size else None,
        "token_ms": token_ms,
        "tail_ms": tail_ms,
    }


def merge_figures(entries: list[dict], batch_size: int) -> dict:
    """One generation entry from several rounds' entries: their calls pooled."""
    token_ms = [call for entry in entries for call in entry["token_ms"]]
    tail_ms = [tail for entry in entries for tail in entry["tail_ms"]]
    return figures(token_ms, tail_ms, batch_size)


def compare_generation(got: dict, reference: dict, precision: str, tolerance: dict) -> dict:
    """A checking call's arrays (GenerationCall.reference) against eager fp32's: the prefill logits as outputs
    (relative error, gated), then the tokens (compare_tokens); one verdict over both."""
    tokens = compare_tokens(got[TOKENS], reference, precision, tolerance)
    if PREFILL not in reference:
        return tokens
    prefill = prefill_figures(got.get(PREFILL), reference[PREFILL], tolerance)
    return {
        **tokens,
        **{k: prefill[k] for k in ("relative_error", "max_abs_diff", "mean_abs_diff", "cosine", "finite")},
        "outputs": {PREFILL: prefill},
        "passed": tokens["passed"] and not prefill["failures"],
        "failures": prefill["failures"] + tokens["failures"],
    }


def prefill_figures(got, reference, tolerance: dict) -> dict:
    """The prefill's logits against the reference's, as bench.measure.accuracy compares any output."""
    import numpy as np

    from bench.measure.accuracy import output_figures

    if got is None or np.shape(got) != np.shape(reference):
        shape = None if got is None else list(np.shape(got))
        figures = {"relative_error": None, "max_abs_diff": None, "mean_abs_diff": None, "cosine": None,
                   "finite": None, "constant_reference": None}  # fmt: skip
        return {**figures, "failures": [f"prefill logits have shape {shape}, the reference {list(np.shape(reference))}"]}
    figures = output_figures(np.asarray(got, np.float64), np.asarray(reference, np.float64))
    bound, error, failures = tolerance.get("max_relative_error"), figures["relative_error"], []
    if not figures["finite"]:
        failures.append("prefill logits contain NaN or infinity")
    elif error is None:
        failures.append("prefill logits differ from a constant reference")
    elif bound is not None and not error <= bound:
        failures.append(f"prefill logits relative error {error:.3g} > {bound:g}")
    return {**figures, "failures": failures}


def compare_tokens(got, reference: dict, precision: str, tolerance: dict) -> dict:
    """Generated token ids against the reference's: agreement, first divergence, and the verdict (module doc).

    The keys the readers of any accuracy entry use are there too (passed, failures, tolerance; the numerical
    figures None, argmax_agreement the token agreement)."""
    import numpy as np

    got = np.asarray(got, np.int64)
    ref = np.asarray(reference[TOKENS], np.int64)
    least, decisive_margin = tolerance.get("min_token_agreement"), tolerance.get("top1_margin")
    result = {
        "relative_error": None, "max_abs_diff": None, "mean_abs_diff": None, "cosine": None, "finite": None,
        "outputs": {}, "not_compared": {}, "top1": None,
    }  # fmt: skip
    if got.shape != ref.shape:
        failure = f"generated tokens have shape {list(got.shape)}, the reference {list(ref.shape)}"
        return {**result, "argmax_agreement": None, "token_agreement": None, "first_divergence": None,
                "passed": False, "failures": [failure], "tolerance": dict(tolerance)}  # fmt: skip
    same = got == ref
    firsts = [int(np.argmin(row)) if not row.all() else None for row in same]
    diverged = [f for f in firsts if f is not None]
    first = min(diverged) if diverged else None
    margins = reference.get(MARGINS)
    margin_at = None
    if first is not None and margins is not None:
        rows = [i for i, f in enumerate(firsts) if f == first]
        margin_at = float(min(np.asarray(margins)[i, first] for i in rows))
    agreement = float(same.mean()) if same.size else 1.0
    prefix = float(np.mean([(f if f is not None else same.shape[1]) / same.shape[1] for f in firsts]))
    decisive = decisive_divergences(firsts, margins, decisive_margin)
    failures = [divergence_failure(decisive[0], decisive_margin, len(firsts))] if decisive else []
    if least is not None and not agreement >= least:
        where = f"; first divergence at token {first}" if first is not None else ""
        margin = f" (reference top-1 margin there {margin_at:.2f} std)" if margin_at is not None else ""
        failures.append(f"token agreement {agreement:.3f} < {least:g}{where}{margin}")
    return {
        **result,
        "argmax_agreement": agreement,
        "token_agreement": agreement,
        "prefix_agreement": prefix,
        "first_divergence": first,
        "first_divergence_per_sequence": firsts,
        "reference_margin_at_divergence": margin_at,
        "decisive_divergence": decisive[0][1] if decisive else None,
        "tokens_compared": int(same.size),
        "passed": not failures,
        "failures": failures,
        "tolerance": dict(tolerance),
    }


def decisive_divergences(firsts: list, margins, bound: float | None) -> list[tuple[int, int, float | None]]:
    """(sequence, position, reference margin) of each sequence's first divergence where eager fp32's choice was
    decisive: its top-1 margin at least `bound` std (every divergence when there is no bound or no margin), earliest
    first. After a sequence's first divergence its tokens follow another prefix, so only that one is judged."""
    import numpy as np

    found = []
    for sequence, position in enumerate(firsts):
        if position is None:
            continue
        margin = None if margins is None else float(np.asarray(margins)[sequence, position])
        if margin is None or bound is None or margin >= bound:
            found.append((sequence, position, margin))
    return sorted(found, key=lambda item: item[1])


def divergence_failure(divergence: tuple[int, int, float | None], bound: float | None, sequences: int) -> str:
    sequence, position, margin = divergence
    where = f"token {position}" + (f" of sequence {sequence}" if sequences > 1 else "")
    how = f"top-1 margin {margin:.2f} std" if margin is not None else "its margin unknown"
    limit = f", at least {bound:g}" if bound is not None and margin is not None else ""
    return f"{where} differs from eager fp32's where its choice was decisive ({how}{limit})"
