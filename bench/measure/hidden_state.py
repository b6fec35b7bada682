"""The last hidden state of a model with a task head, for the accuracy check.

A random head (classification, QA) maps the encoder's output to a few numbers that sit close together, so a wrong
kernel shows far better in the hidden state the head reads. Torch backends that run the transformers model catch it
with a forward hook on its base model (the encoder or decoder under the head); the other backends say why they
cannot give it (their graph has only the task outputs), and the row records that it was not compared.
"""

from __future__ import annotations

from bench.measure.accuracy import HIDDEN_STATE


class BaseModelHook:
    """Keeps the first output of `model.base_model` (its last hidden state) from the calls made while attached."""

    def __init__(self, model, persistent: bool = False):
        self.module = model.base_model
        if self.module is model:
            raise ValueError(f"{type(model).__name__} has no base model apart from its head")
        self.persistent = persistent
        self.handle = None
        self.value = None

    def attach(self) -> "BaseModelHook":
        if self.handle is None:
            self.handle = self.module.register_forward_hook(self._keep)
        return self

    def _keep(self, module, args, output):
        self.value = output[0]

    def __enter__(self) -> "BaseModelHook":
        self.value = None
        return self.attach()

    def __exit__(self, *exc) -> None:
        if not self.persistent and self.handle is not None:
            self.handle.remove()
            self.handle = None


def hook_or_reason(model, persistent: bool = False) -> BaseModelHook | str:
    try:
        return BaseModelHook(model, persistent)
    except ValueError as exc:
        return str(exc)


def accuracy_outputs(backend) -> tuple[dict, dict]:
    """One more call's task outputs, with the last hidden state where the model has a head and the backend shows it.

    Returns the outputs and, for what could not be taken, why (`{"last_hidden_state": reason}`).
    """
    if backend.case.task == "feature-extraction":
        return backend.outputs(backend.run()), {}
    source = backend.hidden_state()
    if isinstance(source, str):
        return backend.outputs(backend.run()), {HIDDEN_STATE: source}
    with source:
        raw = backend.run()
    outputs = backend.outputs(raw)
    if source.value is None:
        return outputs, {HIDDEN_STATE: f"the hook on {type(source.module).__name__} saw no call"}
    outputs[HIDDEN_STATE] = to_numpy(source.value)
    return outputs, {}


def to_numpy(value):
    import numpy as np

    return np.asarray(value.detach().float().numpy(), dtype=np.float32)
