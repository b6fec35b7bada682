"""What crosses the process boundary: the case to measure, the job a worker is given, and the envelope it answers in.

The parent builds a `Job`, writes it as JSON, and the child reads it back with `Job.from_dict`; every child process
(the worker, the peak probe, the import probe) answers with one `envelope`, versioned by `ENVELOPE_SCHEMA`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

ENVELOPE_SCHEMA = 1
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
"""Every command's exit codes: 0 all good, 1 something measured is not (a failure, a flag, a regression), 2 bad input."""

MAIN = "main"
"""The environment bench itself runs in, where the accuracy reference is computed."""


SINGLE_STREAM, OFFLINE, SERVER, CLOSED_LOOP = "single-stream", "offline", "server", "closed-loop"
SCENARIOS = (SINGLE_STREAM, OFFLINE, SERVER, CLOSED_LOOP)


@dataclass(frozen=True)
class Case:
    """One measurement: a model at a shape on a backend, precision and thread count, in an environment."""

    suite: str
    model: str
    task: str
    model_entry: dict
    backend: str
    backend_type: str
    backend_options: dict
    environment: str
    precision: str
    seq_len: int
    batch_size: int
    threads: int
    padding_ratio: float
    seed: int
    measure: dict = field(compare=False)
    tolerance: dict = field(compare=False)
    case_id: str = ""
    new_tokens: int = 0
    """Tokens each generate call must produce (a generation case), or 0: the model's forward pass is measured."""
    texts: str = ""
    """The shipped text set a pipeline case runs on (short, medium, long; bench.measure.texts), or "": no pipeline."""
    pair_of: str = ""
    """In an A/B run (`bench run --ab ENV`), the case id of the case this one is the candidate side of, or ""."""
    scenario: str = "single-stream"
    """How its calls are issued: "single-stream" (one call at a time, nothing else asked of the machine) or
    "offline" (`streams` workers calling back to back at once; bench.run.offline), "server" (queries on a schedule;
    bench.run.server) or "closed-loop" (`concurrency` users, each sending when answered; bench.run.closed_loop)."""
    streams: int = 1
    """Under load: worker processes calling at once, each on `threads` threads of its own CPUs."""
    rate: float = 0.0
    """Server: queries offered per second."""
    arrivals: str = ""
    """Server: "poisson" (exponential gaps, seeded) or "constant"."""
    p99_ms: float = 0.0
    """Server: the latency bound a VALID result keeps its 99th percentile under (0: none; not part of the id)."""
    search: dict = field(default_factory=dict)
    """Server: the rate search (`max_rate_under`: p99_ms, ttft_ms and tpot_ms as given, start, precision, max_probes),
    or {}: `rate` is measured."""
    concurrency: int = 0
    """Closed loop: users, each sending its next query as soon as its last is answered (0: not closed loop)."""
    batching: dict = field(default_factory=dict)
    """Server: dynamic batching ({"max_wait_ms": W}): each query one sample, gathered into batches of up to
    `batch_size`, each run padded to it; {}: each query is a whole batch of `batch_size`."""
    slo: dict = field(default_factory=dict)
    """Generation under load: the bounds (ttft_ms, tpot_ms, e2e_ms) a request meets to count as goodput, or {}
    (not part of the id)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Case:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    @property
    def is_baseline(self) -> bool:
        """Eager fp32 PyTorch (its options at their defaults): what every other case of its environment at the same
        shape is compared with."""
        return (
            self.backend_type == "pytorch"
            and self.scenario == SINGLE_STREAM
            and self.backend_options.get("attn_implementation", "eager") == "eager"
            and self.backend_options.get("bf16", "autocast") == "autocast"
            and self.precision == "fp32"
        )

    @property
    def generating(self) -> bool:
        """A text generation case: whole generate calls of new_tokens greedy tokens after a prompt of seq_len."""
        return self.new_tokens > 0

    @property
    def pipelined(self) -> bool:
        """A pipeline case: whole tokenizer, model and post-processing calls on the texts of set `texts`."""
        return bool(self.texts)

    @property
    def baseline_key(self) -> tuple:
        """What a baseline stands for: the environment, model and shape at a thread count (and tokens generated)."""
        shape = (self.environment, self.model, self.seq_len, self.batch_size, self.threads, self.padding_ratio)
        return shape + ((self.new_tokens,) if self.new_tokens else ()) + ((self.texts,) if self.texts else ())

    def reference(self) -> Case:
        """The case whose outputs this one is checked against: eager fp32 in main, at the same shape."""
        return dataclasses.replace(
            self,
            backend="reference",
            backend_type="pytorch",
            backend_options={"attn_implementation": "eager"},
            environment=MAIN,
            precision="fp32",
            measure={**self.measure, "warmup": 0},
            scenario=SINGLE_STREAM,
            streams=1,
            rate=0.0,
            arrivals="",
            p99_ms=0.0,
            search={},
            concurrency=0,
            batching={},
            slo={},
        )

    @property
    def offline(self) -> bool:
        return self.scenario == OFFLINE

    @property
    def server(self) -> bool:
        return self.scenario == SERVER

    @property
    def closed_loop(self) -> bool:
        return self.scenario == CLOSED_LOOP

    @property
    def own_streams(self) -> bool:
        """Under load, its streams are the backend's own (OpenVINO's NUM_STREAMS, an infer request each) in one
        process on all their CPUs, not a process each (the backend option `own_streams`)."""
        return self.under_load and self.streams > 1 and bool(self.backend_options.get("own_streams"))

    @property
    def process_threads(self) -> int:
        """The threads of one worker process: all its streams' where the streams are the backend's own."""
        return self.threads * self.streams if self.own_streams else self.threads

    @property
    def under_load(self) -> bool:
        """Measured by streams of resident workers under a load (bench.run.offline, bench.run.server)."""
        return self.scenario != SINGLE_STREAM


@dataclass(frozen=True)
class Source:
    """Where a model's weights come from: a directory on disk, or a config.json for random weights."""

    kind: str
    location: str
    identity: str
    """A digest of what determines the model's outputs."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "location": self.location, "identity": self.identity}

    @classmethod
    def from_dict(cls, data: dict) -> Source:
        return cls(data["kind"], data["location"], data["identity"])


@dataclass
class Job:
    """Everything one worker needs to measure one case (or, with mode "reference", to compute its reference, and
    with mode "build", to build its artifacts into the cache)."""

    mode: str
    case: Case
    source: Source
    vocab: dict
    """{"size": the model's vocabulary size, "pad_token_id": its padding token or None}."""
    thread_settings: dict
    cpus: list[int]
    reference: str
    cache_dir: str

    def to_dict(self) -> dict:
        return {**asdict(self), "case": self.case.to_dict(), "source": self.source.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        nested = {"case": Case, "source": Source}
        return cls(**{key: nested[key].from_dict(value) if key in nested else value for key, value in data.items()})


UNSUPPORTED = "unsupported"
NOT_MEASURED = "not_measured"
"""A precision this CPU only emulates, left out of a run unless asked for (`bench run --emulated`)."""
NOT_RUN_ON_PURPOSE = (UNSUPPORTED, NOT_MEASURED)
"""Rows that hold a reason instead of a measurement, and are no failure of the run."""


class Unsupported(Exception):
    """The backend's own maker declines this model or task (not a failure of the run): the case's row has status
    "unsupported" and the maker's reason, with the equivalent configuration where there is one."""


def envelope(status: str, **content: Any) -> dict:
    """A child's answer: `{"schema", "status", ...}`, with `result` when it worked and `error` when it did not."""
    return {"schema": ENVELOPE_SCHEMA, "status": status, **content}
