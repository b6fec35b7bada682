"""The get-or-build chain of a backend that runs an export of the torch model (ONNX Runtime, OpenVINO).

Each artifact is one entry of the artifact cache (bench.backends.cache), keyed by what determines its bytes: the
export of the torch model, and artifacts derived from that export (an optimized graph, an int8 model). A derived
artifact is built from the cached export, so the torch model is read only when no export exists yet, and on a hit
no torch model is read at all. A family names its steps; this class runs them in that order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from bench.backends.cache import CacheEntry, get_or_build
from bench.job import Job
from bench.measure.timing import timed


WITH_PAST = "-with-past"


def package_versions(packages) -> dict:
    """The installed version of each package in this interpreter, None for one that is missing."""
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


class ArtifactChain(ABC):
    """Gets the case's artifact from the cache or builds it, export first; `timings`, `details` and `warnings` say
    what that took and found (`details`: cache, artifact, model_bytes; a derived build also the export's status and
    size under the names in `export_details`)."""

    backend: ClassVar[str]
    """The first word of the entries' names, and the key's `backend`."""
    export_kind: ClassVar[str]
    export_attn: ClassVar[str]
    """The torch attention the export is made from."""
    export_step: ClassVar[str]
    """The timing of the export itself (the torch model's reading is `torch_load_ms`)."""
    export_details: ClassVar[tuple[str, str]]
    """Where a derived build records the export's cache status and size."""
    versioned: ClassVar[tuple[str, ...]]
    """The packages whose versions are in every key: a new version may write other bytes."""
    seeded: ClassVar[bool]
    """Whether the seed is in every key (it sets the weights of any head a checkpoint lacks)."""

    def __init_subclass__(cls, **declared) -> None:
        """A family declares the attributes above in its class statement."""
        super().__init_subclass__()
        for key, value in declared.items():
            if key not in ArtifactChain.__annotations__:
                raise TypeError(f"{cls.__name__} declares {key!r}, which an artifact chain does not have")
            setattr(cls, key, value)

    def __init__(self, job: Job, options: Any):
        self.job = job
        self.case = job.case
        self.options = options
        self.timings: dict[str, float] = {}
        self.details: dict = {}
        self.warnings: list[str] = []

    @abstractmethod
    def kind(self) -> str:
        """The artifact this case runs (`export_kind`, or one derived from it)."""

    @abstractmethod
    def extra_parts(self, kind: str) -> dict:
        """What else determines this kind's bytes, beyond the model, task, kind, export attention and versions."""

    @abstractmethod
    def export(self, model, folder: Path) -> None:
        """Write the export of the loaded torch model into `folder`."""

    @abstractmethod
    def derive(self, kind: str, export: Path, folder: Path) -> None:
        """Build `kind` from the export in `export` into `folder`, timing its steps into `timings`."""

    @abstractmethod
    def size(self, folder: Path) -> int:
        """The model's bytes on disk in an entry's folder."""

    def parts(self, kind: str) -> dict:
        """The entry's key: everything that determines its bytes, and nothing that does not (shape, threads)."""
        return {
            "backend": self.backend,
            "model": self.job.source.identity,
            "task": self.task(),
            **({"seed": self.case.seed} if self.seeded else {}),
            "artifact": kind,
            "export_attn_implementation": self.export_attn,
            "versions": package_versions(self.versioned),
            **self.extra_parts(kind),
        }

    def task(self) -> str:
        """The export's task: a generation case's export carries a KV cache (Optimum's `-with-past` tasks), so it is
        another entry than the forward-pass export of the same model."""
        return self.case.task + (WITH_PAST if self.case.generating else "")

    def get(self) -> Path:
        kind = self.kind()
        entry = self._entry(kind)
        self.details.update({"cache": entry.status, "artifact": kind, "model_bytes": self.size(entry.path)})
        return entry.path

    def _entry(self, kind: str) -> CacheEntry:
        build = self._export if kind == self.export_kind else lambda folder: self._derive(kind, folder)
        name = f"{self.backend}-{self.case.model}-{kind}" + (WITH_PAST if self.case.generating else "")
        return get_or_build(self.job.cache_dir, name, self.parts(kind), build)

    def _export(self, folder: Path) -> None:
        from bench.measure.loading import load_model

        model, self.timings["torch_load_ms"] = timed(lambda: load_model(self.job, attn_implementation=self.export_attn))
        _, self.timings[self.export_step] = timed(lambda: self.export(model, folder))

    def _derive(self, kind: str, folder: Path) -> None:
        export = self._entry(self.export_kind)
        status, size = self.export_details
        self.details[status] = export.status
        self.details[size] = self.size(export.path)
        self.derive(kind, export.path, folder)
