"""The interface every backend implements; the worker drives it through load → prepare → run."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.measure.loading import select_outputs


class Backend:
    """One backend in one worker process. Subclasses override load, prepare, run and effective.

    `timings` collects sub-steps in ms (export_ms, compile_ms, ...); `details` anything else a row should carry
    (cache hits, file sizes, recompilations).
    """

    def __init__(self, job: dict):
        self.job = job
        self.case = job["case"]
        self.options = self.case["backend_options"]
        self.threads = job["thread_settings"]
        self.timings: dict[str, float] = {}
        self.details: dict[str, Any] = {}
        self.warnings: list[str] = []

    def load(self) -> None:
        """Read the model (timed as load)."""
        raise NotImplementedError

    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Everything before the first call: conversion, export, tracing, compilation (timed as preparation)."""
        raise NotImplementedError

    def run(self) -> Any:
        """One inference on the prepared inputs: the call that is measured."""
        raise NotImplementedError

    def outputs(self, raw: Any) -> dict[str, np.ndarray]:
        return select_outputs(self.case["task"], raw)

    def hidden_state(self):
        """For the accuracy call of a model with a head: a BaseModelHook that sees the last hidden state, or why none.

        The default is a reason; torch backends that run the transformers model return a hook on it.
        """
        return f"the {self.case['backend_type']} backend does not expose the last hidden state"

    def effective(self) -> dict:
        """Settings as the library reports them back, not as they were asked for."""
        return {}

    def precision_mode(self) -> dict:
        """What was computed, read from what the backend built: {weights, compute, how, label}
        (bench.backends.precision_mode). This default only echoes the case's precision, marked as not read back."""
        from bench.backends.precision_mode import mode

        return mode(None, self.case["precision"], "not read back")

    def after_measurement(self) -> None:
        """A hook for checks on what happened while measuring (e.g. recompilations)."""
