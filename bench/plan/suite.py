"""The suite file: a typed model of models × backends × shapes × threads × precisions, validated strictly."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.backends import BACKENDS
from bench.errors import SuiteError
from bench.measure.pipeline import TASKS as PIPELINE_TASKS
from bench.measure.texts import TEXT_SETS
from bench.plan.suite_file import SuiteFileProblem, field_path, read_suite_data

Precision = Literal["fp32", "bf16", "int8"]
Scenario = Literal["single-stream", "offline", "server", "closed-loop"]
Arrivals = Literal["poisson", "constant"]
Task = Literal["feature-extraction", "text-classification", "question-answering", "text-generation"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_SEED = 2**32 - 1


class StrictModel(BaseModel):
    """No unknown fields, no coercion (`true` is not a count, "16" is not a length), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Measure(StrictModel):
    """How a case is measured; unset fields fall back to the enclosing level, then to DEFAULT_MEASURE."""

    warmup: Optional[int] = Field(None, ge=0, description="Untimed calls after the first call.")
    min_iterations: Optional[int] = Field(None, ge=1, description="Measured calls at least.")
    min_seconds: Optional[float] = Field(None, ge=0, description="Measured time at least.")
    max_seconds: Optional[float] = Field(None, gt=0, description="Measured time at most (caps min_iterations).")
    timeout: Optional[float] = Field(
        None, gt=0, le=MAX_TIMEOUT, description="Seconds before the case's worker is killed (at most a week)."
    )
    rounds: Optional[int] = Field(
        None, ge=1, le=20, description="Fresh workers per case, in passes over the plan, each pass in its own order."
    )
    retries: Optional[int] = Field(
        None, ge=0, le=10, description="Measure again in the same worker while the interference meter says contaminated."
    )
    paired: Optional[bool] = Field(
        None,
        description="Measure each configuration against its baseline in adjacent blocks, by resident workers:"
        " `rounds` fresh processes per configuration, `passes` pairs in each (docs/results.md).",
    )
    passes: Optional[int] = Field(None, ge=1, le=200, description="Paired: passes over a group per process round.")
    block_seconds: Optional[float] = Field(
        None, gt=0, le=10, description="Paired: how long one block of calls should take (at least one call)."
    )
    server_seconds: Optional[float] = Field(
        None, gt=0, le=86400,
        description="Server: how long each process round's arrival schedule lasts (LoadGen asks 600 s; bench does not).",
    )
    heap_layout: Optional[Literal["redraw", "keep"]] = Field(
        None,
        description="Paired: `redraw` (default) draws each worker's heap layout afresh before each block of calls"
        " under 100 ms, so a process's pairs average over layouts instead of keeping the level one layout sets"
        " (docs/paired.md); `keep` leaves it.",
    )
    allocator: Optional[Literal["glibc", "steady"]] = Field(
        None,
        description="`glibc` (default): the C library's malloc as a process gets it; `steady`: its mmap and trim"
        " thresholds fixed before the model loads, so calls take no page faults for their buffers and every process"
        " of a case lands in the same state (bench/worker/allocator.py, docs/paired.md).",
    )
    round_seconds: Optional[float] = Field(
        None, gt=0, le=86400,
        description="Paired: a process round starts no pass that would end past this many seconds of passes (at"
        " least 2 passes): long calls get fewer passes, not hours.",
    )
    max_rounds: Optional[int] = Field(
        None, ge=1, le=20,
        description="Paired (or an A/B run): a group whose speedups are wider than `resolve` after `rounds` processes"
        " gets another process round, again, up to this many processes.",
    )
    resolve: Optional[float] = Field(
        None, gt=0, lt=1,
        description="With max_rounds: the 95% half-width (0.03: ±3%) a paired group's speedups are measured to.",
    )
    target_ci: Optional[float] = Field(
        None, gt=0, lt=1,
        description="After the minimums, stop once the median's 95% interval is within ± this share (0.01: ±1%).",
    )


DEFAULT_MEASURE = {
    "warmup": 3, "min_iterations": 10, "min_seconds": 1.0, "max_seconds": 10.0, "timeout": 600.0, "rounds": 1, "retries": 2,
    "paired": False, "passes": 8, "block_seconds": 0.2, "heap_layout": "redraw", "allocator": "glibc",
    "round_seconds": 60.0, "server_seconds": 10.0,
}  # fmt: skip


class Tolerance(StrictModel):
    """The accuracy gate against eager fp32 (docs/results.md); a None bound is reported but not gated."""

    max_relative_error: Optional[float] = Field(
        None, ge=0, description="Bound on ‖got − ref‖ / ‖ref − mean(ref)‖ of each output, over real tokens."
    )
    top1_margin: Optional[float] = Field(
        None, ge=0,
        description="Top-1 is gated where the reference's top-1 minus top-2 is at least this many times its RMS.",
    )
    min_top1_agreement: Optional[float] = Field(None, ge=0, le=1, description="Share of those that must agree.")
    min_token_agreement: Optional[float] = Field(
        None, ge=0, le=1,
        description="Text generation: share of generated tokens that must equal eager fp32's at the same position"
        " (default: not gated; a divergence where eager fp32's choice was decisive fails the case anyway).",
    )

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, values):
        for name in RETIRED_TOLERANCES:
            if isinstance(values, dict) and name in values:
                raise ValueError(f"{name} is no longer a bound: the gate is max_relative_error (docs/results.md)")
        return values


RETIRED_TOLERANCES = ("max_abs_diff", "min_cosine", "min_argmax_agreement")
DEFAULT_TOLERANCES = {
    "fp32": {"max_relative_error": 1e-4, "top1_margin": 0.01, "min_top1_agreement": 1.0},
    "bf16": {"max_relative_error": 0.15, "top1_margin": 0.75, "min_top1_agreement": 1.0},
    "int8": {"max_relative_error": 0.18, "top1_margin": 1.0, "min_top1_agreement": 1.0},
}


class RateSearch(StrictModel):
    """Server: the highest rate whose result is VALID under its p99 bounds, found by doubling then bisecting."""

    p99_ms: Optional[float] = Field(
        None, gt=0, description="The latency bound (ms, from the scheduled time) every VALID probe keeps at p99."
    )
    ttft_ms: Optional[float] = Field(
        None, gt=0, description="Text generation: the bound on time to first token (ms, from the scheduled time) at p99."
    )
    tpot_ms: Optional[float] = Field(
        None, gt=0, description="Text generation: the bound on the time per output token after the first (ms) at p99."
    )
    start: Optional[float] = Field(
        None, gt=0, le=100_000,
        description="The first rate probed (default: half what the streams' warm-up calls say they serve).",
    )
    precision: float = Field(0.1, gt=0, lt=1, description="Stop once the highest VALID and lowest failing rate are this close.")
    max_probes: int = Field(15, ge=2, le=50, description="Stop after this many probes, and say so.")

    @model_validator(mode="after")
    def _some_bound(self):
        if self.p99_ms is None and self.ttft_ms is None and self.tpot_ms is None:
            raise ValueError("expected at least one of p99_ms, ttft_ms and tpot_ms, got none")
        return self


class UsersSearch(RateSearch):
    """Closed loop: the most users whose result is VALID under the p99 bounds (from each query's send), found in steps
    from a Little's-law start (doubling from a `start` given), then bisecting: GuideLLM's concurrency search."""

    start: Optional[int] = Field(  # type: ignore[assignment]
        None, ge=1, le=4096,
        description="The first users probed (default: what the streams' fastest call and the budget allow by Little's"
        " law).",
    )  # fmt: skip


class DynamicBatching(StrictModel):
    """Server: queries of one sample each, gathered into batches of up to the case's batch size."""

    max_wait_ms: float = Field(
        ge=0, le=10_000,
        description="How long a batch waits after its first query's scheduled time for more to arrive before it runs"
        " (it runs at once when full). Every batch runs at the case's batch size, padded; a pipeline case's batch is"
        " the texts gathered, padded to the longest of them.",
    )  # fmt: skip


class GenerationSlo(StrictModel):
    """Generation under load: what a request must meet to count towards goodput (vLLM's `--goodput`)."""

    ttft_ms: Optional[float] = Field(None, gt=0, description="Time to first token (ms, from the scheduled time or send).")
    tpot_ms: Optional[float] = Field(None, gt=0, description="Time per output token after the first (ms).")
    e2e_ms: Optional[float] = Field(None, gt=0, description="Whole request (ms, from the scheduled time or send).")

    @model_validator(mode="after")
    def _some_bound(self):
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise ValueError("expected at least one of ttft_ms, tpot_ms and e2e_ms, got none")
        return self


class Axes(StrictModel):
    """The matrix axes; any level (defaults, model, backend) may set them, the most specific wins."""

    seq_lens: Optional[list[int]] = Field(None, min_length=1)
    batch_sizes: Optional[list[int]] = Field(None, min_length=1)
    threads: Optional[list[int]] = Field(None, min_length=1)
    precisions: Optional[list[Precision]] = Field(None, min_length=1)
    padding_ratios: Optional[list[float]] = Field(
        None, min_length=1, description="Average share of padding in a batch, 0 to 0.5 (batch 1 is never padded)."
    )
    scenario: Optional[Scenario] = Field(
        None,
        description="How calls are issued: single-stream (one at a time; the default), offline (`streams` workers"
        " calling back to back at once, measured in samples/s), server (queries arriving at `rates` per second,"
        " latency from each one's scheduled time) or closed-loop (`concurrency` users, each sending when answered,"
        " latency from the send; docs/scenarios.md).",
    )
    streams: Optional[list[int]] = Field(
        None, min_length=1, description="Under load: worker processes at once, each on `threads` threads."
    )
    concurrency: Optional[list[int]] = Field(
        None, min_length=1,
        description="Closed loop: users at once, each sending its next query as soon as its last is answered.",
    )
    rates: Optional[list[float]] = Field(None, min_length=1, description="Server: queries offered per second.")
    arrivals: Optional[Arrivals] = Field(
        None, description="Server: poisson (exponential gaps from the suite's seed; the default) or constant."
    )
    p99_ms: Optional[float] = Field(
        None, gt=0, description="Server: the latency bound (ms, from the scheduled time) a VALID result's p99 keeps."
    )
    max_rate_under: Optional[RateSearch] = Field(
        None, description="Server: search the highest VALID rate under this bound instead of measuring `rates`."
    )
    max_users_under: Optional[UsersSearch] = Field(
        None, description="Closed loop: search the most users VALID under this bound instead of measuring `concurrency`."
    )
    dynamic_batching: Optional[DynamicBatching] = Field(
        None, description="Server: each query one sample, batched by the server up to the case's batch size."
    )
    slo: Optional[GenerationSlo] = Field(
        None, description="Generation under load (server, closed-loop): the bounds a request meets to count as goodput."
    )
    measure: Optional[Measure] = None

    @field_validator("seq_lens", "batch_sizes", "threads", "precisions", "padding_ratios", "streams", "rates", "concurrency")
    @classmethod
    def _distinct(cls, values):
        if values is not None:
            seen = set()
            for v in values:
                if v in seen:
                    raise ValueError(f"expected distinct values, got {_given(v)} twice")
                seen.add(v)
        return values

    @field_validator("seq_lens", "batch_sizes", "threads", "streams", "concurrency")
    @classmethod
    def _positive(cls, values):
        if values is not None:
            for v in values:
                if v < 1:
                    raise ValueError(f"expected integers of at least 1, got {v}")
        return values

    @field_validator("rates")
    @classmethod
    def _rate(cls, values):
        if values is not None:
            for v in values:
                if not 0 < v <= 100_000:
                    raise ValueError(f"expected queries per second above 0 and at most 100000, got {_given(v)}")
        return values

    @field_validator("padding_ratios")
    @classmethod
    def _ratio(cls, values):
        if values is not None:
            for v in values:
                if not 0 <= v <= 0.5:
                    raise ValueError(f"expected ratios from 0 to 0.5, got {v}")
        return values


class Generate(StrictModel):
    """Text generation cases: whole greedy generate calls, each producing exactly new_tokens tokens."""

    prompt_lens: Optional[list[int]] = Field(
        None, min_length=1, description="Prompt lengths in tokens; default: the seq_lens that apply."
    )
    new_tokens: list[int] = Field(min_length=1, description="Tokens each generate call produces (min = max).")

    @field_validator("prompt_lens", "new_tokens")
    @classmethod
    def _positive_distinct(cls, values):
        if values is not None:
            for v in values:
                if v < 1:
                    raise ValueError(f"expected integers of at least 1, got {v}")
            if len(set(values)) != len(values):
                raise ValueError("expected distinct values, got one twice")
        return values


class Pipeline(StrictModel):
    """Pipeline cases: whole transformers pipeline calls (tokenizer, model, post-processing) on shipped texts."""

    texts: list[str] = Field(
        min_length=1, description=f"Shipped text sets, one case each: {', '.join(TEXT_SETS)} (bench.measure.texts)."
    )

    @field_validator("texts")
    @classmethod
    def _shipped(cls, values):
        for value in values:
            if value not in TEXT_SETS:
                raise ValueError(f"expected one of {', '.join(map(repr, TEXT_SETS))}, got {value!r}")
        if len(set(values)) != len(values):
            raise ValueError("expected distinct values, got one twice")
        return values


class Defaults(Axes):
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for random weights and inputs.")
    tolerances: dict[Precision, Tolerance] = Field(default_factory=dict)
    generate: Optional[Generate] = Field(
        None, description="Text generation (for models of task text-generation that do not set their own)."
    )
    pipeline: Optional[Pipeline] = Field(
        None, description="Pipeline cases (for models of a pipeline task that do not set their own)."
    )


class ModelEntry(Axes):
    name: str = Field(pattern=NAME_PATTERN)
    task: Task = "feature-extraction"
    packaged: Optional[str] = Field(None, description="An installed package that ships a model/ folder.")
    path: Optional[str] = Field(None, description="A local Hugging Face model directory (relative to the suite).")
    config: Optional[str] = Field(
        None, description="A shipped architecture name (see `bench models`) or a config.json path; random weights."
    )
    hub: Optional[str] = Field(None, description="A Hub id, used only if it is already in the local cache.")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="config.json values to replace: booleans, integers, finite numbers, strings."
    )
    generate: Optional[Generate] = Field(
        None, description="Text generation cases instead of the forward pass (task text-generation only)."
    )
    pipeline: Optional[Pipeline] = Field(
        None, description="Pipeline cases instead of the forward pass (tasks " + ", ".join(PIPELINE_TASKS) + ")."
    )

    @field_validator("config_overrides")
    @classmethod
    def _scalars(cls, values):
        for key, value in values.items():
            finite = not isinstance(value, float) or math.isfinite(value)
            if not isinstance(value, (bool, int, float, str)) or not finite:
                given = _given(value)
                raise ValueError(f"expected a boolean, integer, finite number or string for {key!r}, got {given}")
        return values

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("packaged", "path", "config", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of packaged, path, config, hub, got {given or 'none'}")
        if self.config_overrides and not self.config:
            raise ValueError("expected config_overrides only with config (random weights), got it with " + given[0])
        if self.generate is not None and self.task != "text-generation":
            raise ValueError(f"expected generate only with task text-generation, got it with task {self.task}")
        if self.pipeline is not None and self.task not in PIPELINE_TASKS:
            tasks = ", ".join(PIPELINE_TASKS)
            raise ValueError(f"expected pipeline only with task {tasks}, got it with task {self.task}")
        return self


class BackendEntry(Axes):
    type: str = Field(description="One of the registered backends.")
    name: Optional[str] = Field(None, pattern=NAME_PATTERN, description="Label in results; defaults to type.")
    options: dict[str, Any] = Field(default_factory=dict)
    environment: Optional[str] = Field(
        None, pattern=NAME_PATTERN, description="Run under this named environment (see `bench env list`)."
    )

    @field_validator("type")
    @classmethod
    def _known(cls, value):
        if value not in BACKENDS:
            raise ValueError(f"expected one of {', '.join(map(repr, BACKENDS))}, got {value!r}")
        return value

    @property
    def label(self) -> str:
        return self.name or self.type


class Exclude(StrictModel):
    model: Optional[str] = None
    backend: Optional[str] = None
    precision: Optional[Precision] = None
    seq_len: Optional[int] = None
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    padding_ratio: Optional[float] = None
    streams: Optional[int] = None
    rate: Optional[float] = None
    concurrency: Optional[int] = None

    @model_validator(mode="after")
    def _not_empty(self):
        if not self.model_dump(exclude_none=True):
            raise ValueError("expected at least one field to match, got an empty exclude")
        return self


class Suite(StrictModel):
    name: Optional[str] = Field(None, pattern=NAME_PATTERN)
    description: Optional[str] = None
    defaults: Defaults = Field(default_factory=Defaults)
    models: list[ModelEntry] = Field(min_length=1)
    backends: list[BackendEntry] = Field(min_length=1)
    exclude: list[Exclude] = Field(default_factory=list)


def load_suite(path: str | Path) -> tuple[Suite, Path]:
    """Read, parse and validate a suite file; raise SuiteError listing every problem."""
    path = Path(path)
    try:
        data = read_suite_data(path)
    except SuiteFileProblem as exc:
        raise SuiteError(str(path), [str(exc)])
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise SuiteError(str(path), [f"(top level): expected a mapping, got {got}"])
    problems = option_problems(data)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(str(path), [format_error(err) for err in exc.errors()] + problems)
    problems += check_references(suite)
    if problems:
        raise SuiteError(str(path), problems)
    if suite.name is None:
        suite = suite.model_copy(update={"name": path.stem})
    return suite, path


def option_problems(data: dict) -> list[str]:
    """Every backend's options checked against its options model, all at once, even when other fields are wrong."""
    problems = []
    backends = data.get("backends")
    for i, backend in enumerate(backends if isinstance(backends, list) else []):
        if not isinstance(backend, dict) or not isinstance(backend.get("type"), str):
            continue
        info = BACKENDS.get(backend["type"])
        options = backend.get("options", {})
        if info is None or not isinstance(options, dict):
            continue
        try:
            info.options.model_validate(options)
        except ValidationError as exc:
            for err in exc.errors():
                err = dict(err, loc=("backends", i, "options") + tuple(err["loc"]))
                problems.append(format_error(err, info.options, ("backends", i, "options")))
    return problems


def check_references(suite: Suite) -> list[str]:
    """Checks pydantic cannot express: unique names, excludes that name real entries."""
    problems = []
    problems += _duplicates("models", [m.name for m in suite.models])
    problems += _duplicates("backends", [b.label for b in suite.backends])
    names = {"model": {m.name for m in suite.models}, "backend": {b.label for b in suite.backends}}
    for i, exclude in enumerate(suite.exclude):
        for field, known in names.items():
            value = getattr(exclude, field)
            if value is not None and value not in known:
                expected = ", ".join(map(repr, sorted(known)))
                problems.append(f"exclude[{i}].{field}: expected one of {expected}, got {_given(value)}")
    problems += server_problems(suite)
    return problems


def server_problems(suite: Suite) -> list[str]:
    """A server case needs the rates it offers, a closed-loop case its users: said where the scenario is set, once
    per place."""
    problems = []
    for model_index, model in enumerate(suite.models):
        for backend_index, backend in enumerate(suite.backends):
            levels = (
                ("backends", backend_index, backend), ("models", model_index, model), ("defaults", None, suite.defaults)
            )  # fmt: skip
            scenario = next(((s, i, lv) for s, i, lv in levels if lv.scenario is not None), None)
            if scenario is None or scenario[2].scenario not in ("server", "closed-loop"):
                continue
            section, index, _ = scenario
            where = section if index is None else f"{section}[{index}]"
            if scenario[2].scenario == "closed-loop":
                given = any(lv.concurrency is not None or lv.max_users_under is not None for _, _, lv in levels)
                problem = (f"{where}.concurrency: expected the users scenario closed-loop runs at once (or"
                           " max_users_under), got nothing")  # fmt: skip
            else:
                given = any(lv.rates is not None or lv.max_rate_under is not None for _, _, lv in levels)
                problem = (f"{where}.rates: expected the queries per second scenario server offers (or max_rate_under),"
                           " got nothing")  # fmt: skip
            if not given and problem not in problems:
                problems.append(problem)
            problem = token_bounds_problem(levels, model)
            if problem and problem not in problems:
                problems.append(problem)
    return problems


def token_bounds_problem(levels, model) -> str | None:
    """A rate or users search bounding TTFT or TPOT needs a text generation case: tokens to time."""
    found = next(((s, i, lv.max_rate_under, "max_rate_under") for s, i, lv in levels if lv.max_rate_under is not None),
                 None) or next(((s, i, lv.max_users_under, "max_users_under") for s, i, lv in levels
                               if lv.max_users_under is not None), None)  # fmt: skip
    if found is None or not any(getattr(found[2], key) for key in ("ttft_ms", "tpot_ms")):
        return None
    defaults = levels[-1][2]
    if model.task == "text-generation" and (model.generate or defaults.generate) is not None:
        return None
    section, index, search, name = found
    key = "ttft_ms" if search.ttft_ms else "tpot_ms"
    where = section if index is None else f"{section}[{index}]"
    return (f"{where}.{name}.{key}: expected with text generation cases (generate), got model"
            f" {model.name!r}, which generates nothing: bound p99_ms instead")  # fmt: skip


def _duplicates(section: str, names: list[str]) -> list[str]:
    seen, problems = set(), []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{section}[{i}].name: expected a name not used above, got {_given(name)} again")
        seen.add(name)
    return problems


def format_error(err: dict, root: type[BaseModel] = Suite, root_loc: tuple = ()) -> str:
    """One pydantic error as `path.to.field: what was expected, what was given`."""
    loc = err["loc"]
    where = dotted(loc)
    given = _given(err.get("input"))
    kind = err["type"]
    if kind == "missing":
        return f"{where}: expected this required field, got nothing"
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[len(root_loc):-1])
        expected = f"one of {', '.join(allowed)}" if allowed else "no other field"
        return f"{where}: unknown field, expected {expected}, got {loc[-1]!r}"
    message = err["msg"]
    if message.startswith("Value error, "):
        return f"{where}: {message[len('Value error, '):]}"
    message = re.sub(r"^Input should be ", "expected ", message)
    message = re.sub(r"^String should match pattern ", "expected a name matching ", message)
    return f"{where}: {message[0].lower() + message[1:]}, got {given}"


def dotted(loc: tuple) -> str:
    return field_path(loc)


def _given(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Field names of the model reached by following loc from `model` (for unknown-field messages)."""
    for part in loc:
        model = _unwrap(model)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            if field is None:
                return []
            model = field.annotation
        elif get_args(model):
            model = get_args(model)[-1]
        else:
            return []
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] → X; list[X] and dict[K, X] are left for the caller to index into."""
    while get_origin(annotation) is Union:
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
        if len(args) != 1:
            break
    return annotation


def json_schema() -> dict:
    return Suite.model_json_schema()
