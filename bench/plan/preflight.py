"""Everything `bench validate` (and `bench run`, before it starts) can know about a suite without a worker.

Each model's source is resolved and its config.json read; environments are known names; the plan is not empty,
not over PLAN_CAP cases unless allowed, and every case's sequence length and memory need fit the model and the
machine. Imports nothing heavy (no torch, no transformers) and writes nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from bench.plan import model_limits
from bench.plan import model_sources
from bench.backends import BACKENDS
from bench.environments import env_root, known_names
from bench.errors import MAX_PROBLEMS, SuiteError
from bench.job import Case
from bench.plan.matrix import AXES_DEFAULTS, expand, parse_filters, select, suite_dir_of
from bench.plan.suite import DEFAULT_MEASURE, ModelEntry, Suite, load_suite

PLAN_CAP = 5000
COUNT_BEFORE_EXPANDING = 100_000
SOURCE_FIELDS = ("packaged", "path", "config", "hub")


@dataclass
class Checked:
    suite: Suite
    path: Path
    cases: list[Case]
    warnings: list[str] = field(default_factory=list)


def check_suite(path: str | Path, filters: list[str] = (), allow_large: bool = False, adjust=None) -> Checked:
    """The suite and its planned cases, or SuiteError with every problem found; warnings for what will not run.
    `adjust(suite)`: the suite as a command runs it (bench tune's)."""
    suite, path = load_suite(path)
    suite = adjust(suite) if adjust else suite
    problems, warnings = measure_problems(suite) + environment_problems(suite), []
    configs: dict[int, dict] = {}
    for i, model in enumerate(suite.models):
        config, found, warned = model_config(i, model, suite_dir_of(path), suite.defaults.seed)
        problems, warnings = problems + found, warnings + warned
        if config is not None:
            configs[i] = config
    if problems:
        raise SuiteError(str(path), problems)
    cases = plan_cases(suite, path, list(filters), allow_large)
    problems = shape_problems(suite, cases, configs)
    if problems:
        raise SuiteError(str(path), problems)
    warnings += thread_warnings(suite, cases) + cpu_warnings(suite, cases)
    if len(warnings) > MAX_PROBLEMS:
        warnings = warnings[:MAX_PROBLEMS] + [f"... and {len(warnings) - MAX_PROBLEMS} more warnings"]
    return Checked(suite, path, cases, warnings)


BOUNDS = (("min_seconds", "max_seconds"), ("rounds", "max_rounds"))
"""Measure fields that must not be above their bound once the levels are merged (an unset bound is no bound)."""


def measure_problems(suite: Suite) -> list[str]:
    """Measure fields at odds once the levels are merged, blamed on the more specific of the two settings."""
    problems = []
    for (mi, model), (bi, backend) in itertools.product(enumerate(suite.models), enumerate(suite.backends)):
        levels = [("defaults.measure", suite.defaults), (f"models[{mi}].measure", model),
                  (f"backends[{bi}].measure", backend)]  # fmt: skip
        found = {name: (DEFAULT_MEASURE.get(name), None, 0) for pair in BOUNDS for name in pair}
        found["resolve"] = (None, None, 0)
        for rank, (where, level) in enumerate(levels, 1):
            for name in found:
                value = getattr(level.measure, name, None) if level.measure else None
                if value is not None:
                    found[name] = (value, where, rank)
        for problem in bound_problems(found) + resolve_problems(found):
            if problem not in problems:
                problems.append(problem)
    return problems


def bound_problems(found: dict) -> list[str]:
    problems = []
    for low_name, high_name in BOUNDS:
        (low, low_at, low_rank), (high, high_at, high_rank) = found[low_name], found[high_name]
        if high is None or high >= low:
            continue
        if high_rank >= low_rank:
            problems.append(f"{high_at}.{high_name}: expected at least {low_name} ({low:g}{_origin(low_at)}), got {high:g}")
        else:
            problems.append(f"{low_at}.{low_name}: expected at most {high_name} ({high:g}{_origin(high_at)}), got {low:g}")
    return problems


def resolve_problems(found: dict) -> list[str]:
    """`resolve` asks paired groups (measure.paired, or an A/B run) for more processes, up to `max_rounds`: one
    without the other does nothing."""
    (resolve, resolve_at, _), (most, most_at, _) = found["resolve"], found["max_rounds"]
    rounds = found["rounds"][0]
    more = most is not None and most > rounds
    if resolve is not None and not more:
        got = "none" if most is None else f"max_rounds {most}"
        return [f"{resolve_at}.resolve: expected max_rounds above rounds ({rounds}) beside it, got {got}"]
    if resolve is None and more:
        return [f"{most_at}.max_rounds: expected resolve beside it (the half-width that asks for more processes),"
                " got none"]  # fmt: skip
    return []


def _origin(where: str | None) -> str:
    return f", from {where}" if where else ", the default"


def environment_problems(suite: Suite) -> list[str]:
    known = known_names()
    return [
        f"backends[{i}].environment: expected one of {', '.join(map(repr, known))} (or an environment built"
        f" under {env_root()}), got {backend.environment!r}"
        for i, backend in enumerate(suite.backends)
        if backend.environment is not None and backend.environment not in known
    ]


def model_config(i: int, model: ModelEntry, suite_dir: Path, seed: int) -> tuple[dict | None, list[str], list[str]]:
    """(the config with overrides, problems, warnings) for one model entry."""
    kind = next(k for k in SOURCE_FIELDS if getattr(model, k) is not None)
    where, value = f"models[{i}].{kind}", getattr(model, kind)
    try:
        source = model_sources.resolve(model, suite_dir, seed)
    except model_sources.SourceUnavailable as exc:
        if kind == "hub":
            return None, [], [f"{where}: {exc}; its cases will be `unavailable` rows"]
        if kind == "config":
            names = ", ".join(model_sources.shipped_configs())
            return None, [f"{where}: expected a shipped config ({names}) or a config.json path, got {value!r}"], []
        return None, [f"{where}: expected {_EXPECTED[kind]}, got {value!r} ({exc})"], []
    try:
        base = model_sources.read_config(source)
    except model_sources.SourceUnavailable as exc:
        return None, [f"{where}: {exc}"], []
    problems = [f"{where}: {model_sources.config_file(source)}: {key}: {problem}"
                for key, problem in model_limits.size_problems(base)]  # fmt: skip
    for key, given in model.config_overrides.items():
        problem = model_limits.kind_problem(base.get(key), given)
        if problem:
            problems.append(f"models[{i}].config_overrides.{key}: {problem}")
    config = {**base, **model.config_overrides}
    if not problems:
        problems = [f"models[{i}].config_overrides.{key}: {problem}"
                    for key, problem in model_limits.size_problems(config)]  # fmt: skip
    if not problems:
        try:
            model_sources.read_config(source, model.config_overrides)
        except model_sources.SourceUnavailable as exc:
            problems = [f"models[{i}].config_overrides: {exc}"]
    return (None if problems else config), problems, []


_EXPECTED = {
    "packaged": "an installed package that ships a model/ folder",
    "path": "a model directory with a config.json",
}


def plan_cases(suite: Suite, path: Path, filters: list[str], allow_large: bool) -> list[Case]:
    """The cases to run: at least one, and at most PLAN_CAP unless allow_large."""
    too_many = f"expected at most {PLAN_CAP} cases (pass --allow-large for a larger plan)"
    if not allow_large and (upper := combinations(suite)) > COUNT_BEFORE_EXPANDING:
        raise SuiteError(str(path), [f"(plan): {too_many}, got {upper} combinations before excludes"])
    cases = select(expand(suite), parse_filters(filters))
    if not cases:
        why = "no case matches the --filter given" if filters else "every combination is excluded or unsupported"
        raise SuiteError(str(path), [f"(plan): expected at least one case, got none ({why})"])
    if len(cases) > PLAN_CAP and not allow_large:
        raise SuiteError(str(path), [f"(plan): {too_many}, got {len(cases)}"])
    return cases


def combinations(suite: Suite) -> int:
    """The number of cases before excludes, counted without making them."""
    total = 0
    for model, backend in itertools.product(suite.models, suite.backends):
        axes = {name: axis_value(suite, model, backend, name) for name in AXES_DEFAULTS}
        precisions = sum(p in BACKENDS[backend.type].precisions for p in axes["precisions"])
        unpadded = sum(not p for p in axes["padding_ratios"])
        shapes = sum(len(axes["padding_ratios"]) if b != 1 else unpadded for b in axes["batch_sizes"])
        total += len(axes["seq_lens"]) * len(axes["threads"]) * len(axes["streams"]) * len(axes["rates"]) * precisions * shapes
    return total


def axis_value(suite: Suite, model, backend, name: str):
    for level in (backend, model, suite.defaults):
        if getattr(level, name) is not None:
            return getattr(level, name)
    return AXES_DEFAULTS[name]


def axis_location(suite: Suite, case: Case, name: str) -> str:
    """The field that set this axis for the case's model and backend: the most specific level that sets it."""
    mi = next(i for i, m in enumerate(suite.models) if m.name == case.model)
    bi = next(i for i, b in enumerate(suite.backends) if b.label == case.backend)
    if getattr(suite.backends[bi], name) is not None:
        return f"backends[{bi}].{name}"
    if getattr(suite.models[mi], name) is not None:
        return f"models[{mi}].{name}"
    return f"defaults.{name}" + ("" if getattr(suite.defaults, name) is not None else " (the default)")


def generate_location(suite: Suite, case: Case) -> str:
    """The generate block that made a generation case: its model's, or the defaults'."""
    mi = next(i for i, m in enumerate(suite.models) if m.name == case.model)
    return f"models[{mi}].generate" if suite.models[mi].generate is not None else "defaults.generate"


def pipeline_location(suite: Suite, case: Case) -> str:
    """The pipeline block that made a pipeline case: its model's, or the defaults'."""
    mi = next(i for i, m in enumerate(suite.models) if m.name == case.model)
    return f"models[{mi}].pipeline" if suite.models[mi].pipeline is not None else "defaults.pipeline"


def length_location(suite: Suite, case: Case) -> tuple[str, str]:
    """Where a case's length was set, and the length as the message gives it."""
    if case.generating:
        return generate_location(suite, case), f"{case.seq_len} + {case.new_tokens} new tokens"
    if case.pipelined:
        return pipeline_location(suite, case), f"{case.seq_len} (the most tokens of the {case.texts} texts)"
    return axis_location(suite, case, "seq_lens"), f"{case.seq_len}"


def shape_problems(suite: Suite, cases: list[Case], configs: dict[int, dict]) -> list[str]:
    """Sequence lengths over the model's positions, and cases that cannot fit in this machine's memory."""
    import psutil

    total = psutil.virtual_memory().total
    index = {m.name: i for i, m in enumerate(suite.models)}
    problems: dict[tuple, str] = {}
    for case in cases:
        config = configs.get(index[case.model])
        if config is None:
            continue
        limit = model_limits.usable_positions(config)
        if limit is not None and case.seq_len + case.new_tokens > limit[1]:
            where, got = length_location(suite, case)
            problems.setdefault((where, case.model, "seq"), f"{where}: expected at most {limit[1]} for model"
                                f" {case.model} ({limit[0]}), got {got}")  # fmt: skip
            continue
        need = model_limits.memory_estimate(config, case.task, case.batch_size, case.seq_len)
        if need is not None and need > total:
            where = axis_location(suite, case, "batch_sizes" if case.batch_size > 1 else "seq_lens")
            problems.setdefault((where, case.model, "memory"), (
                f"{where}: expected a case that fits in memory, got batch {case.batch_size} at seq_len"
                f" {case.seq_len} for model {case.model}: at least {need / 2**30:.1f} GiB estimated from its"
                f" config, this machine has {total / 2**30:.1f} GiB"))  # fmt: skip
    return list(problems.values())


def thread_warnings(suite: Suite, cases: list[Case]) -> list[str]:
    from bench.topology import available_cpus

    cpus = len(available_cpus())
    warnings: dict[str, str] = {}
    for case in cases:
        if case.threads > cpus:
            where = axis_location(suite, case, "threads")
            warnings.setdefault(where, f"{where}: {case.threads} threads is more than the {cpus} CPUs this process"
                                " may use; those cases will be `unavailable` rows")  # fmt: skip
        elif case.streams * case.threads > cpus:
            where = axis_location(suite, case, "streams")
            warnings.setdefault(where, f"{where}: {case.streams} streams × {case.threads} threads is more than the"
                                f" {cpus} CPUs this process may use; those cases will be `unavailable` rows")  # fmt: skip
    return list(warnings.values())


def cpu_warnings(suite: Suite, cases: list[Case]) -> list[str]:
    """Each backend and precision this CPU cannot run, runs as fp32 or only emulates, in the words its row will use.

    Read from this machine's /proc/cpuinfo: where the cases run elsewhere (`bench slurm`), each node decides."""
    from bench import cpu

    flags = cpu.cpu_flags()
    warnings: dict[str, str] = {}
    for case in cases:
        support = cpu.support(case.backend_type, case.precision, flags, case.backend_options)
        if support.tier == cpu.NATIVE:
            continue
        where = f"{axis_location(suite, case, 'precisions')} ({case.backend} {case.precision})"
        said = cpu.not_measured_reason(support) or support.reason
        warnings.setdefault(where, f"{where}: {said}")
    if warnings:
        read = cpu.FAKE_FLAGS_VAR if cpu.fake_flags() is not None else "/proc/cpuinfo here"
        warnings["cpu"] = (f"this machine's CPU decides the above ({read}); under `bench slurm` each compute node"
                           " decides for itself when its shard runs")  # fmt: skip
    return list(warnings.values())
