"""The protocol every backend follows, and what each one declares for the registry (`bench.backends.BACKENDS`).

The worker drives a backend through load → prepare → run, timing `load` and `prepare` as a whole, then reads its
outputs, hidden state, precision mode and effective settings. What each step may do:

- **load**: make the runtime ready and read the model as it is stored. Import the backend's libraries (and what they
  import when first used), apply the thread settings, and read the transformers model from the case's source when the
  backend runs that model itself. Nothing in load depends on the artifact cache or on the inputs, so a case's `load`
  is the same with a cold cache as with a warm one.
- **prepare**: everything derived from the model, for the case's inputs: artifact cache lookups; reading the source
  model when an artifact has to be built from it; export, conversion, quantization, tracing, freezing, compilation;
  sessions and compiled models; reading a cached artifact back; the calls that still compile or profile; the inputs
  in the form the measured call takes. Each sub-step goes into `timings` (`export_ms`, `compile_ms`, ...).
- **run**: one inference on the prepared inputs, nothing else: the call that is measured.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.backends.options import Options
from bench.job import MAIN, Job
from bench.measure.loading import select_outputs

if TYPE_CHECKING:
    import numpy as np


class Backend(ABC):
    """One backend in one worker process.

    A backend class declares what the registry needs in its class statement, e.g.
    `class PytorchBackend(TorchBackend, name="pytorch", options_model=PytorchOptions, precisions=("fp32", "bf16"))`;
    a family's base class (torch.common.TorchBackend) declares what its backends share. `timings` collects
    sub-steps in ms (export_ms, compile_ms, ...); `details` anything else a row should carry (cache hits, file
    sizes, recompilations); `warnings` what the row should say.
    """

    name: ClassVar[str]
    """The backend's type in suites and rows."""
    options_model: ClassVar[type[Options]]
    """The options a suite may give it, checked in the parent; the worker hands the parsed model to `self.options`."""
    precisions: ClassVar[tuple[str, ...]]
    thread_family: ClassVar[str]
    """Which translation of a thread count applies (bench.backends.threads.thread_settings)."""
    environment: ClassVar[str] = MAIN
    """The environment its cases run in unless a suite says otherwise."""
    requires: ClassVar[tuple[str, ...]]
    """The modules `bench doctor` imports to tell whether the backend can run in an environment."""
    records: ClassVar[tuple[str, ...]]
    """The distributions whose versions every row and manifest record."""
    generates: ClassVar[bool] = False
    """Whether it runs text generation cases (generate_model); a suite's generation cases on another are left out."""
    pipelines: ClassVar[bool] = False
    """Whether it runs pipeline cases (pipeline_model); a suite's pipeline cases on another are left out."""
    builds_ahead: ClassVar[bool] = False
    """Whether its prepare builds artifact cache entries (bench.backends.artifacts) that no shape or thread count
    enters: a run with a cold cache builds them before it measures anything, on all its CPUs (bench.run.ahead)."""

    def __init_subclass__(cls, **declared) -> None:
        unknown = set(declared) - set(DECLARED)
        if unknown:
            raise TypeError(f"{cls.__name__} declares {sorted(unknown)}; a backend declares {DECLARED}")
        super().__init_subclass__()
        for key, value in declared.items():
            setattr(cls, key, value)

    def __init__(self, job: Job):
        self.job = job
        self.case = self.job.case
        self.options = self.options_model.model_validate(self.case.backend_options)
        self.threads: dict = self.job.thread_settings
        self.timings: dict[str, float] = {}
        self.details: dict[str, Any] = {}
        self.warnings: list[str] = []

    @abstractmethod
    def load(self) -> None:
        """The runtime and the model as stored (timed as load; see the module's docstring)."""

    @abstractmethod
    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Everything derived from the model, for these inputs (timed as prepare; see the module's docstring)."""

    @abstractmethod
    def run(self) -> Any:
        """One inference on the prepared inputs: the call that is measured."""

    def outputs(self, raw: Any) -> dict[str, np.ndarray]:
        """The task's outputs of one run() as float32 arrays, named as the reference names them."""
        return select_outputs(self.case.task, raw)

    @abstractmethod
    def hidden_state(self):
        """For the accuracy call of a model with a head: a BaseModelHook that sees the last hidden state, or why none
        (bench.measure.hidden_state)."""

    @abstractmethod
    def effective(self) -> dict:
        """Settings as the library reports them back, not as they were asked for."""

    @abstractmethod
    def precision_mode(self) -> dict:
        """What was computed, read from what the backend built: {weights, compute, how, label}
        (bench.backends.precision_mode.mode)."""

    def generate_model(self):
        """For a generation case, after prepare: the model whose `generate` (transformers' GenerationMixin) is
        measured, set up with a KV cache. Only a backend that declares `generates=True` is asked."""
        raise NotImplementedError(f"the {self.name} backend does not run text generation")

    def generate_context(self):
        """The context every generate call runs in (autocast for bf16, ...)."""
        import contextlib

        return contextlib.nullcontext()

    def pipeline_model(self):
        """For a pipeline case, after prepare: the model handed to transformers' pipeline with the tokenizer (the
        transformers model, or Optimum's ORTModelFor<task>, OVModelFor<task>). Only a backend that declares
        `pipelines=True` is asked."""
        if not self.pipelines:
            raise NotImplementedError(f"the {self.name} backend does not run pipelines")
        return self.model

    def after_measurement(self) -> None:
        """A hook for checks on what happened while measuring (e.g. recompilations)."""

    def take(self, step) -> None:
        """Adopt the timings, details and warnings of a helper that did part of the preparation."""
        self.timings.update(step.timings)
        self.details.update(step.details)
        self.warnings += step.warnings


DECLARED = (
    "name", "options_model", "precisions", "thread_family", "environment", "requires", "records", "generates",
    "pipelines", "builds_ahead",
)  # fmt: skip


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend as the parent sees it, without importing anything heavy."""

    backend: type[Backend]
    module: str
    environment: str
    precisions: tuple[str, ...]
    options: type[Options]
    thread_family: str
    requires: tuple[str, ...]
    records: tuple[str, ...]
    generates: bool
    pipelines: bool
    builds_ahead: bool

    @classmethod
    def of(cls, backend: type[Backend]) -> BackendInfo:
        missing = [key for key in DECLARED if not hasattr(backend, key)]
        if missing:
            raise TypeError(f"{backend.__name__} does not declare {missing}")
        shared = {key: getattr(backend, key) for key in DECLARED if key not in ("name", "options_model")}
        return cls(backend=backend, module=backend.__module__, options=backend.options_model, **shared)
