"""The call a case measures on its ONNX Runtime session (option `call`): Optimum's model class, the bare
InferenceSession.run, or run_with_iobinding. The session, its options and its graph are the same for all three."""

from __future__ import annotations


class OptimumCall:
    """ORTModelFor<task>.__call__: Optimum's wrapper around the session, as an Optimum user calls it."""

    uses_io_binding = False

    def __init__(self, model, feed: dict):
        self.model, self.feed = model, feed
        self.uses_io_binding = bool(model.use_io_binding)

    def __call__(self):
        return self.model(**self.feed)

    def named(self, raw):
        return raw


class SessionCall:
    """InferenceSession.run on the feed: the outputs come back as a list, in the graph's order."""

    uses_io_binding = False

    def __init__(self, model, feed: dict):
        self.session, self.feed = model.model, feed
        self.names = [output.name for output in self.session.get_outputs()]

    def __call__(self):
        return self.session.run(self.names, self.feed)

    def named(self, raw) -> dict:
        return dict(zip(self.names, raw))


class IoBindingCall:
    """InferenceSession.run_with_iobinding: the inputs bound once, the outputs written into arrays allocated once,
    of the shapes a first run (in preparation) gave."""

    uses_io_binding = True

    def __init__(self, model, feed: dict):
        import numpy as np
        from onnxruntime import OrtValue

        self.session = model.model
        self.binding = self.session.io_binding()
        names = [output.name for output in self.session.get_outputs()]
        self.arrays = dict(zip(names, (np.empty_like(a) for a in self.session.run(names, feed))))
        self.bound = {name: OrtValue.ortvalue_from_numpy(array) for name, array in feed.items()}
        for name, value in self.bound.items():
            self.binding.bind_ortvalue_input(name, value)
        self.written = {name: OrtValue.ortvalue_from_numpy(array) for name, array in self.arrays.items()}
        for name, value in self.written.items():
            self.binding.bind_ortvalue_output(name, value)

    def __call__(self):
        self.session.run_with_iobinding(self.binding)
        return self.arrays

    def named(self, raw) -> dict:
        return {name: array.copy() for name, array in raw.items()}  # the next call overwrites them


CALLS = {"optimum": OptimumCall, "session": SessionCall, "iobinding": IoBindingCall}
