"""Pipeline cases: whole transformers pipeline calls on real text, clocked per stage, and their answers checked.

A pipeline case measures `pipe(text)` as a user calls it: the tokenizer, the model and the post-processing of one of
transformers' pipelines (question-answering, text-classification, feature-extraction), whichever model class runs it
(the transformers model, Optimum's ORTModelFor<task>, optimum-intel's OVModelFor<task>). Each call takes the next
text of the case's set (bench.measure.texts) round-robin, one text per call.

The clock wraps the pipeline instance's own stages and stamps `time.perf_counter_ns()` around each:

    preprocess  -> tokenize     (the QA pipeline's is a generator: every step of it counts)
    _forward    -> model        (once per chunk for QA; summed)
    postprocess -> postprocess

and `other` = end to end - (tokenize + model + postprocess): the pipeline's own work between them (argument
handling, moving tensors, batching the chunks). So the four stages sum to the end-to-end call exactly, in ns.

Accuracy compares the answers over every text of the set with eager fp32's pipeline on the same texts: the answer
span (start, end) for question answering, the label for text classification (their scores within the precision's
max_relative_error), the embedding of every token for feature extraction (relative error within max_relative_error).
`answer_agreement` is the share of texts whose answer agrees; fp32 must agree on every text, bf16 and int8 on at least
MIN_AGREEMENT of them.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from bench.measure.stats import spread

TASKS = ("question-answering", "text-classification", "feature-extraction")
STAGES = ("tokenize", "model", "postprocess")
PARTS = (*STAGES, "other")
"""The parts an end-to-end call is split into; they sum to it."""
WRAPPED = {"tokenize": "preprocess", "model": "_forward", "postprocess": "postprocess"}
MIN_AGREEMENT = {"fp32": 1.0, "bf16": 0.5, "int8": 0.5}
"""The share of texts whose answer must agree with eager fp32's."""
FAULTED_OUTPUTS = ("start", "end", "logits", "last_hidden_state")
"""The model outputs the test hook negates: a deliberately wrong backend."""


@dataclass
class CallRecord:
    """One pipeline call: which text, its clock reads in perf_counter_ns, and the ns spent in each stage."""

    text: int
    start_ns: int = 0
    end_ns: int = 0
    stages_ns: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0))


class StageClock:
    """Wraps a pipeline instance's preprocess, _forward and postprocess; adds each one's ns to `current`."""

    def __init__(self, pipe):
        self.current = dict.fromkeys(STAGES, 0)
        for stage, method in WRAPPED.items():
            setattr(pipe, method, self.timed(stage, getattr(pipe, method)))

    def timed(self, stage: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter_ns()
            result = function(*args, **kwargs)
            self.current[stage] += time.perf_counter_ns() - start
            return self.timed_steps(stage, result) if inspect.isgenerator(result) else result

        return wrapper

    def timed_steps(self, stage: str, steps):
        """A generator stage (the QA pipeline's preprocess): the time of every step counts, not of what runs
        between its steps."""
        while True:
            start = time.perf_counter_ns()
            try:
                item = next(steps)
            except StopIteration:
                self.current[stage] += time.perf_counter_ns() - start
                return
            self.current[stage] += time.perf_counter_ns() - start
            yield item


def negate_outputs(pipe) -> None:
    """Test hook: the model's float outputs negated after every _forward (a wrong span, label, embedding)."""
    forward = pipe._forward

    def negated(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        for key in FAULTED_OUTPUTS:
            value = outputs.get(key) if hasattr(outputs, "get") else None
            if value is not None and getattr(value, "dtype", None) is not None and value.dtype.is_floating_point:
                outputs[key] = -value
        return outputs

    pipe._forward = negated


def arguments(task: str, text: dict) -> dict:
    if task == "question-answering":
        return {"question": text["question"], "context": text["context"]}
    return {"inputs": text["context"]}


class PipelineCall:
    """One pipeline call on the next text per __call__, clocked per stage; `records` keeps every call's, `outputs`
    each text's latest answer."""

    def __init__(self, pipe, task: str, texts: list[dict], context: Callable = None):
        self.pipe, self.task, self.texts = pipe, task, texts
        self.context = context or contextlib.nullcontext
        self.clock = StageClock(pipe)
        self.records: list[CallRecord] = []
        self.outputs: dict[int, object] = {}
        self.calls = 0
        self.lengths = self.token_counts() if task == "feature-extraction" else None
        """Each text's tokens (feature extraction's), counted before any call is timed: see unpadded."""

    def __call__(self):
        index = self.calls % len(self.texts)
        self.calls += 1
        record = CallRecord(index)
        self.clock.current = record.stages_ns
        kwargs = arguments(self.task, self.texts[index])
        record.start_ns = time.perf_counter_ns()
        with self.context():
            output = self.pipe(**kwargs)
        record.end_ns = time.perf_counter_ns()
        self.records.append(record)
        self.outputs[index] = output
        return output

    def batch(self, queries: list[int]):
        """One pipeline call on several queries' texts at once (query i asks text i modulo their count), batched by
        the pipeline and padded to the longest of them: a dynamically batched server's call."""
        chosen = [query % len(self.texts) for query in queries]
        record = CallRecord(chosen[0])
        self.clock.current = record.stages_ns
        asked = [arguments(self.task, self.texts[index]) for index in chosen]
        kwargs = {key: [a[key] for a in asked] for key in asked[0]}
        record.start_ns = time.perf_counter_ns()
        with self.context():
            outputs = self.pipe(**kwargs, batch_size=len(asked))
        record.end_ns = time.perf_counter_ns()
        self.calls += 1
        self.records.append(record)
        if len(asked) == 1 and self.task == "question-answering":
            outputs = [outputs]  # the question-answering pipeline unwraps a single answer
        for index, output in zip(chosen, outputs):
            self.outputs[index] = self.unpadded(index, output)
        return outputs

    def unpadded(self, index: int, output):
        """A text's answer from a batched call as a call on it alone gives it: feature extraction's embeddings come
        back for every position of the batch's padded length, and only the text's own tokens are its answer."""
        if self.lengths is None:
            return output
        own = self.lengths[index]
        left = getattr(self.pipe.tokenizer, "padding_side", "right") == "left"
        return [rows[-own:] if left else rows[:own] for rows in output]

    def answers(self) -> dict:
        """Every text's answer, in order, as arrays (what the reference keeps and a case is compared on): the timed
        calls' own, and one more call for a text they did not reach."""
        with self.context():
            for index, text in enumerate(self.texts):
                if index not in self.outputs:
                    self.outputs[index] = self.pipe(**arguments(self.task, text))
        outputs = [self.outputs[index] for index in range(len(self.texts))]
        return answer_arrays(self.task, outputs, getattr(self.pipe.model.config, "label2id", None) or {})

    def token_counts(self) -> list[int]:
        """Each text's length in tokens as the pipeline's tokenizer gives it (question and context for QA)."""
        tokenizer = self.pipe.tokenizer
        if self.task == "question-answering":
            return [len(tokenizer(t["question"], t["context"])["input_ids"]) for t in self.texts]
        return [len(tokenizer(t["context"])["input_ids"]) for t in self.texts]


def answer_arrays(task: str, outputs: list, label2id: dict) -> dict:
    """The answers of every text as arrays: QA start, end, score; classification label id, score; feature
    extraction every token's embedding (texts one after another) and each text's token count."""
    import numpy as np

    if task == "question-answering":
        return {
            "answer_start": np.array([o["start"] for o in outputs], np.int64),
            "answer_end": np.array([o["end"] for o in outputs], np.int64),
            "answer_score": np.array([o["score"] for o in outputs], np.float32),
        }
    if task == "text-classification":
        first = [o[0] if isinstance(o, list) else o for o in outputs]
        return {
            "label_id": np.array([label2id.get(o["label"], -1) for o in first], np.int64),
            "label_score": np.array([o["score"] for o in first], np.float32),
        }
    embeddings = [np.asarray(o, np.float32).reshape(-1, np.asarray(o).shape[-1]) for o in outputs]
    return {
        "embeddings": np.concatenate(embeddings),
        "embedding_tokens": np.array([len(e) for e in embeddings], np.int64),
    }


def raw_timings(records: list[CallRecord]) -> dict:
    """Per call, in ms: each part's time (other = end to end - the stages, so the parts sum to it) and the text."""
    calls = {part: [] for part in (*PARTS, "e2e")}
    for record in records:
        e2e_ns = record.end_ns - record.start_ns
        for stage in STAGES:
            calls[stage].append(record.stages_ns[stage] / 1e6)
        calls["other"].append((e2e_ns - sum(record.stages_ns.values())) / 1e6)
        calls["e2e"].append(e2e_ns / 1e6)
    calls["text"] = [record.text for record in records]
    return calls


def figures(texts: str, tokens: list[int], calls_ms: dict) -> dict:
    """The pipeline entry of a row (docs/results.md#pipelines): per part median and p90, each part's share of the
    end-to-end time, the texts' token counts, and the raw per-call times."""
    total = math.fsum(calls_ms["e2e"])
    return {
        "texts": texts,
        "tokens": tokens,
        "tokens_median": spread(tokens)["median"],
        "calls": len(calls_ms["e2e"]),
        "stages_ms": {part: spread(calls_ms[part]) for part in (*PARTS, "e2e")},
        "share": {part: math.fsum(calls_ms[part]) / total if total else None for part in PARTS},
        "calls_ms": calls_ms,
    }


def merge_figures(entries: list[dict]) -> dict:
    """One pipeline entry from several rounds' entries: their calls pooled."""
    calls = {key: [v for entry in entries for v in entry["calls_ms"][key]] for key in entries[0]["calls_ms"]}
    return figures(entries[-1]["texts"], entries[-1]["tokens"], calls)


def compare_answers(got: dict, reference: dict, task: str, precision: str, tolerance: dict, texts: list[dict]):
    """The answers against eager fp32's, text by text (module doc); the keys every accuracy entry has are there too."""
    import numpy as np

    bound = tolerance.get("max_relative_error", 1e-4)
    least = MIN_AGREEMENT.get(precision, 1.0)
    agree, errors, cosines = answer_agreement(got, reference, task, bound)
    agreement = float(np.mean(agree)) if len(agree) else 1.0
    first = next((i for i, same in enumerate(agree) if not same), None)
    worst = max(errors) if errors else None
    failures = []
    if agreement < least:
        where = f"; first disagreeing text {first}: {texts[first]['context'][:60]!r}" if first is not None else ""
        failures.append(f"answer agreement {agreement:.3f} < {least:g}{where}")
    if precision == "fp32" and worst is not None and worst > bound:
        failures.append(f"relative error {worst:.2e} > {bound:g}")
    return {
        "relative_error": worst, "max_abs_diff": None, "mean_abs_diff": None,
        "cosine": min(cosines) if cosines else None, "finite": None, "outputs": {}, "not_compared": {}, "top1": None,
        "argmax_agreement": agreement, "answer_agreement": agreement, "first_disagreement": first,
        "texts_compared": len(agree), "passed": not failures, "failures": failures, "tolerance": dict(tolerance),
    }  # fmt: skip


def answer_agreement(got: dict, reference: dict, task: str, bound: float) -> tuple[list[bool], list[float], list]:
    """Per text whether the answer agrees; the relative errors of the scores (of the embeddings); the cosines."""
    import numpy as np

    if task == "feature-extraction":
        return embedding_agreement(got, reference, bound)
    keys = ("answer_start", "answer_end") if task == "question-answering" else ("label_id",)
    score = "answer_score" if task == "question-answering" else "label_score"
    same = np.all([np.asarray(got[k]) == np.asarray(reference[k]) for k in keys], axis=0)
    ref_score = np.asarray(reference[score], np.float64)
    errors = np.abs(np.asarray(got[score], np.float64) - ref_score) / np.maximum(np.abs(ref_score), 1e-12)
    return [bool(s) for s in same], [float(e) for e, s in zip(errors, same) if s], []


def embedding_agreement(got: dict, reference: dict, bound: float):
    import numpy as np

    counts, ref_counts = list(got["embedding_tokens"]), list(reference["embedding_tokens"])
    if counts != ref_counts:
        return [a == b for a, b in zip(counts, ref_counts)], [], []
    agree, errors, cosines = [], [], []
    offsets = np.cumsum([0, *counts])
    for start, end in zip(offsets, offsets[1:]):
        a = np.asarray(got["embeddings"][start:end], np.float64).ravel()
        b = np.asarray(reference["embeddings"][start:end], np.float64).ravel()
        error = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
        cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        agree.append(error <= bound)
        errors.append(error)
        cosines.append(cosine)
    return agree, errors, cosines
