"""Expand a validated suite into cases, each with a stable id, and filter them."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

from bench.backends import BACKENDS
from bench.text import plural
from bench.environments import MAIN
from bench.errors import BenchError
from bench.job import CLOSED_LOOP, OFFLINE, SERVER, SINGLE_STREAM, Case
from bench.measure.pipeline import TASKS as PIPELINE_TASKS
from bench.measure.texts import NOMINAL_TOKENS
from bench.plan.suite import DEFAULT_MEASURE, DEFAULT_TOLERANCES, Suite

AXES_DEFAULTS = {
    "seq_lens": [128], "batch_sizes": [1], "threads": [1], "precisions": ["fp32"], "padding_ratios": [0.0], "streams": [1],
    "rates": [0.0], "concurrency": [0],
}  # fmt: skip
ENTRY_EXCLUDED = set(AXES_DEFAULTS) | {"measure", "generate", "pipeline", "scenario", "arrivals", "p99_ms",
                                       "max_rate_under", "max_users_under", "dynamic_batching", "slo"}  # fmt: skip
"""What a case's model_entry leaves out: the axes and measure it was expanded with, its generate and pipeline blocks."""
FILTER_FIELDS = (
    "case_id", "model", "task", "backend", "backend_type", "environment",
    "precision", "seq_len", "batch_size", "threads", "padding_ratio", "new_tokens",
    "texts", "scenario", "streams", "rate", "concurrency",
)  # fmt: skip


def case_id(params: dict) -> str:
    """Readable prefix plus a digest of every parameter that changes what is measured (not how long)."""
    identity = {k: v for k, v in params.items()
                if k not in ("measure", "tolerance", "suite", "case_id", "p99_ms", "slo")}  # fmt: skip
    if not identity.get("new_tokens"):
        identity.pop("new_tokens", None)  # a forward-pass case keeps the id it had before generation cases existed
    if not identity.get("texts"):
        identity.pop("texts", None)
    if not identity.get("pair_of"):
        identity.pop("pair_of", None)
    if identity.get("scenario", SINGLE_STREAM) == SINGLE_STREAM:
        identity.pop("scenario", None)  # single-stream cases keep the ids they had before scenarios existed
        identity.pop("streams", None)
    if identity.get("scenario") != SERVER:
        identity.pop("rate", None)  # and offline ones the ids they had before the server scenario
        identity.pop("arrivals", None)
    if not identity.get("search"):
        identity.pop("search", None)
    if not identity.get("concurrency"):
        identity.pop("concurrency", None)
    if not identity.get("batching"):
        identity.pop("batching", None)
    allocator = (params.get("measure") or {}).get("allocator", "glibc")
    if allocator != "glibc":
        identity["allocator"] = allocator  # the default keeps the ids cases had before the allocator was chosen
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    pad = f"-p{params['padding_ratio']:g}" if params["padding_ratio"] else ""
    new = f"-n{params['new_tokens']}" if params.get("new_tokens") else ""
    shape = f"-t{params['texts']}" if params.get("texts") else f"-s{params['seq_len']}"
    load = f"x{params['streams']}-{params['scenario']}-" if params.get("scenario", SINGLE_STREAM) != SINGLE_STREAM else ""
    if params.get("scenario") == SERVER:
        load += "search-" if params.get("search") else f"r{params['rate']:g}-"
        if params.get("batching"):
            load += f"db{params['batching']['max_wait_ms']:g}-"
    if params.get("scenario") == CLOSED_LOOP:
        load += "search-" if params.get("search") else f"c{params['concurrency']}-"
    return (
        f"{params['model']}-{params['backend']}-{params['precision']}"
        f"{shape}{new}-b{params['batch_size']}-t{params['threads']}{pad}-{load}{digest}"
    )


def generation_axes(model, defaults) -> tuple[list[int] | None, list[int]]:
    """A text-generation model's (prompt lengths, new token counts) from its generate block or the defaults', or
    (None, [0]) when it has none: its cases then measure the forward pass. prompt_lens None: the seq_lens apply."""
    block = model.generate or (defaults.generate if model.task == "text-generation" else None)
    if block is None:
        return None, [0]
    return block.prompt_lens, list(block.new_tokens)


def pipeline_texts(model, defaults) -> list[str]:
    """A pipeline model's text sets from its pipeline block or the defaults', or [""] when it has none: its cases
    then measure the forward pass."""
    block = model.pipeline or (defaults.pipeline if model.task in PIPELINE_TASKS else None)
    return list(block.texts) if block is not None else [""]


def expand(suite: Suite) -> list[Case]:
    """Every combination of model × backend × axes, most specific setting first, minus excludes."""
    cases = []
    defaults = suite.defaults
    for model, backend in itertools.product(suite.models, suite.backends):
        info = BACKENDS[backend.type]
        axes = {name: _pick(name, backend, model, defaults) for name in AXES_DEFAULTS}
        scenario = _pick_scenario(backend, model, defaults)
        measure = _merge_measure(defaults, model, backend)
        prompt_lens, new_token_counts = generation_axes(model, defaults)
        if new_token_counts != [0] and not info.generates:
            continue  # said once by dropped_combinations
        if prompt_lens is not None:
            axes["seq_lens"] = prompt_lens
        text_sets = pipeline_texts(model, defaults)
        if text_sets != [""] and not info.pipelines:
            continue  # said once by dropped_combinations
        batched = batches_dynamically(backend, model, defaults)
        if text_sets != [""]:  # one text per call at its own length; batched, up to batch_sizes texts per call
            axes.update(seq_lens=[0], padding_ratios=[0.0], **({} if batched else {"batch_sizes": [1]}))
        if scenario == OFFLINE and (new_token_counts != [0] or text_sets != [""]):
            continue  # said once by dropped_combinations
        slo = _setting("slo", backend, model, defaults)
        streams_axis = axes["streams"] if scenario != SINGLE_STREAM else [1]
        search = _setting("max_users_under" if scenario == CLOSED_LOOP else "max_rate_under", backend, model, defaults)
        rates_axis = axes["rates"] if scenario == SERVER and search is None else [0.0]
        users_axis = axes["concurrency"] if scenario == CLOSED_LOOP and search is None else [0]
        for seq, batch, threads, precision, pad, new_tokens, texts, streams, rate, users in itertools.product(
            axes["seq_lens"], axes["batch_sizes"], axes["threads"], axes["precisions"], axes["padding_ratios"],
            new_token_counts, text_sets, streams_axis, rates_axis, users_axis,
        ):
            if precision not in info.precisions or (pad and batch == 1) or (pad and new_tokens):
                continue
            if (new_tokens or texts) and streams > 1 and backend.options.get("own_streams"):
                continue  # said once by scenario_notes
            seq = NOMINAL_TOKENS[texts] if texts else seq
            params = {
                "suite": suite.name,
                "model": model.name,
                "task": model.task,
                "model_entry": model.model_dump(exclude_none=True, exclude=ENTRY_EXCLUDED),
                "backend": backend.label,
                "backend_type": backend.type,
                "backend_options": info.options.model_validate(backend.options).model_dump(),
                "environment": backend.environment or info.environment,
                "precision": precision,
                "seq_len": seq,
                "batch_size": batch,
                "threads": threads,
                "padding_ratio": pad,
                "seed": defaults.seed,
                "measure": measure,
                "tolerance": _tolerance(defaults, precision),
            }
            if new_tokens:
                params["new_tokens"] = new_tokens
            if texts:
                params["texts"] = texts
            if scenario != SINGLE_STREAM:
                params.update(scenario=scenario, streams=streams)
            if scenario == SERVER:
                arrivals = _setting("arrivals", backend, model, defaults, "poisson")
                bound = _setting("p99_ms", backend, model, defaults, 0.0)
                params.update(rate=float(rate), arrivals=arrivals, p99_ms=float(bound))
                batching = _setting("dynamic_batching", backend, model, defaults)
                if batching is not None:
                    params["batching"] = batching.model_dump()
                if search is not None:  # a bound not given leaves the case id as it was before TTFT and TPOT could be
                    unbounded = {key for key in ("ttft_ms", "tpot_ms") if getattr(search, key) is None}
                    params.update(search=search.model_dump(exclude=unbounded), p99_ms=search.p99_ms or 0.0)
            if scenario == CLOSED_LOOP:
                params["concurrency"] = users
                if search is not None:
                    params["search"] = search.model_dump(exclude_none=True)
            if new_tokens and scenario in (SERVER, CLOSED_LOOP) and slo is not None:
                params["slo"] = slo.model_dump(exclude_none=True)
            case = Case(**params, case_id=case_id(params))
            if not any(_matches_exclude(case, ex) for ex in suite.exclude):
                cases.append(case)
    return cases + environment_baselines(cases, suite)


def baseline_label(environment: str) -> str:
    return f"eager@{environment}"


def environment_baselines(cases: list[Case], suite: Suite) -> list[Case]:
    """An eager fp32 PyTorch case in each environment other than main, at each model and shape where the suite has
    cases there but no baseline: speedups then divide by a baseline run on the same software. It is measured as
    the suite and its model say (not as the backend it stands beside)."""
    models = {model.name: model for model in suite.models}
    have = {c.baseline_key for c in cases if c.is_baseline}
    added: dict[tuple, Case] = {}
    for case in cases:
        key = case.baseline_key
        if case.environment == MAIN or key in have or key in added:
            continue
        params = {
            **{k: v for k, v in case.to_dict().items() if k != "case_id"},
            "backend": baseline_label(case.environment),
            "backend_type": "pytorch",
            "backend_options": BACKENDS["pytorch"].options(attn_implementation="eager").model_dump(),
            "precision": "fp32",
            "measure": _merge_measure(suite.defaults, models[case.model]),
            "tolerance": _tolerance(suite.defaults, "fp32"),
        }
        added[key] = Case(**params, case_id=case_id(params))
    return list(added.values())


def baseline_notes(cases: list[Case]) -> list[str]:
    """Said in the run's notes: which baselines the plan added, and why."""
    added: dict[str, int] = {}
    for case in cases:
        if case.backend == baseline_label(case.environment) and case.is_baseline and case.environment != MAIN:
            added[case.environment] = added.get(case.environment, 0) + 1
    return [
        f"{baseline_label(env)}: eager fp32 PyTorch added in environment {env!r} at {count} {plural('shape', count)},"
        f" so that {env}'s cases are compared with a baseline measured on the same software"
        for env, count in added.items()
    ]


def dropped_combinations(suite: Suite) -> list[str]:
    """Backends asked for a precision, generation or pipelines they do not support, pipeline batch sizes other than 1
    where no server batches the texts (said once, not silently dropped)."""
    notes = []
    for backend in suite.backends:
        info = BACKENDS[backend.type]
        for model in suite.models:
            for precision in _pick("precisions", backend, model, suite.defaults):
                note = f"{backend.label} ({backend.type}) does not support {precision}; those cases are left out"
                if precision not in info.precisions and note not in notes:
                    notes.append(note)
            generating = generation_axes(model, suite.defaults)[1] != [0]
            note = (
                f"{backend.label} ({backend.type}) does not support text generation yet (unsupported: it has no"
                f" generate path); its generation cases are left out"
            )
            if generating and not info.generates and note not in notes:
                notes.append(note)
            notes += [n for n in pipeline_notes(backend, model, suite.defaults) if n not in notes]
            notes += [n for n in scenario_notes(backend, model, suite.defaults) if n not in notes]
    return notes


def scenario_notes(backend, model, defaults) -> list[str]:
    """Cases a scenario leaves out: offline measures the forward pass only (not generate or pipeline calls), and
    streams other than 1 mean nothing to a single-stream case; settings that apply elsewhere only."""
    scenario = _pick_scenario(backend, model, defaults)
    rates = [r for r in _pick("rates", backend, model, defaults) if r]
    users = [u for u in _pick("concurrency", backend, model, defaults) if u]
    generating = generation_axes(model, defaults)[1] != [0]
    pipelined = pipeline_texts(model, defaults) != [""]
    where = f"{model.name} on {backend.label}"
    ignored = []
    if rates and scenario != SERVER:
        ignored.append(f"{where}: rates {rates} apply to scenario server only")
    if users and scenario != CLOSED_LOOP:
        ignored.append(f"{where}: concurrency {users} applies to scenario closed-loop only")
    if _setting("max_users_under", backend, model, defaults) is not None and scenario != CLOSED_LOOP:
        ignored.append(f"{where}: max_users_under applies to scenario closed-loop only")
    if _setting("max_rate_under", backend, model, defaults) is not None and scenario == CLOSED_LOOP:
        ignored.append(f"{where}: max_rate_under applies to scenario server only (max_users_under searches users)")
    if _setting("dynamic_batching", backend, model, defaults) is not None and scenario != SERVER:
        ignored.append(f"{where}: dynamic_batching applies to scenario server only")
    slo = _setting("slo", backend, model, defaults)
    if slo is not None and not (generating and scenario in (SERVER, CLOSED_LOOP)):
        ignored.append(f"{where}: slo applies to generation cases under scenario server or closed-loop only")
    if scenario == SINGLE_STREAM:
        streams = [s for s in _pick("streams", backend, model, defaults) if s != 1]
        return ignored + ([f"{where}: streams {streams} apply to the scenarios under load only; single-stream cases"
                           " run one stream"] if streams else [])  # fmt: skip
    if (generating or pipelined) and backend.options.get("own_streams") and any(
            s > 1 for s in _pick("streams", backend, model, defaults)):
        ignored.append(f"{where}: own_streams serves forward-pass calls; its {'generation' if generating else 'pipeline'}"
                       " cases of more than one stream are left out (each request calls the model class, one infer"
                       " request)")  # fmt: skip
    if (generating or pipelined) and scenario == OFFLINE:
        return [f"{where}: scenario offline measures forward-pass cases only (generation and pipelines run under"
                " server or closed-loop); its cases are left out"]  # fmt: skip
    return ignored


def pipeline_notes(backend, model, defaults) -> list[str]:
    """A pipeline model's cases left out: on a backend without a pipeline path, at batch sizes other than 1 (unless
    a server batches its texts dynamically: then the batch size is the largest batch)."""
    if pipeline_texts(model, defaults) == [""]:
        return []
    if not BACKENDS[backend.type].pipelines:
        return [f"{backend.label} ({backend.type}) does not run pipelines (unsupported: no model class that"
                f" transformers' pipeline takes); its pipeline cases are left out"]  # fmt: skip
    batches = [b for b in _pick("batch_sizes", backend, model, defaults) if b != 1]
    if batches and not batches_dynamically(backend, model, defaults):
        return [f"{model.name}: pipeline cases run one text per call; batch sizes {batches} are left out (batch 1)"]
    return []


def _pick_scenario(backend, model, defaults) -> str:
    return _setting("scenario", backend, model, defaults, SINGLE_STREAM)


def batches_dynamically(backend, model, defaults) -> bool:
    """A server case whose server gathers queries into one call (its batch size is then the largest batch)."""
    batching = _setting("dynamic_batching", backend, model, defaults)
    return batching is not None and _pick_scenario(backend, model, defaults) == SERVER


def _setting(name, backend, model, defaults, default=None):
    """The backend's setting, else the model's, else the suite defaults', else `default`."""
    return next((getattr(lv, name) for lv in (backend, model, defaults) if getattr(lv, name) is not None), default)


def _pick(name, backend, model, defaults):
    return _setting(name, backend, model, defaults, AXES_DEFAULTS[name])


def _merge_measure(*levels) -> dict:
    merged = dict(DEFAULT_MEASURE)
    for level in levels:
        if level.measure is not None:
            merged.update(level.measure.model_dump(exclude_none=True))
    if merged["max_seconds"] < merged["min_seconds"]:
        raise BenchError(
            f"measure: expected max_seconds >= min_seconds, got {merged['max_seconds']} < {merged['min_seconds']}"
        )
    return merged


def _tolerance(defaults, precision: str) -> dict:
    tolerance = dict(DEFAULT_TOLERANCES[precision])
    if precision in defaults.tolerances:
        tolerance.update(defaults.tolerances[precision].model_dump(exclude_unset=True))
    return tolerance


def _matches_exclude(case: Case, exclude) -> bool:
    return all(getattr(case, k) == v for k, v in exclude.model_dump(exclude_none=True).items())


def parse_filters(filters: list[str]) -> dict[str, set[str]]:
    """`FIELD=VALUE` strings → {field: {values}}; values of one field are alternatives, fields all must match."""
    parsed: dict[str, set[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise BenchError(f"--filter: expected FIELD=VALUE, got {item!r}")
        if key not in FILTER_FIELDS:
            raise BenchError(f"--filter: expected a field among {', '.join(FILTER_FIELDS)}, got {key!r}")
        parsed.setdefault(key, set()).add(value)
    return parsed


def select(cases: list[Case], filters: dict[str, set[str]]) -> list[Case]:
    return [c for c in cases if all(_text(getattr(c, k)) in values for k, values in filters.items())]


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def suite_dir_of(path: Path) -> Path:
    return path.resolve().parent
