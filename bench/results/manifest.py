"""A run folder's manifest checked before `--resume` trusts it: one line naming manifest.json and the field."""

from __future__ import annotations

from pydantic import ValidationError

from bench.errors import BenchError
from bench.plan.matrix import expand, parse_filters
from bench.results.folder import RunDir
from bench.results.shape import type_name
from bench.plan.suite import Suite, check_references, format_error


def checked_for_resume(run_dir: RunDir) -> tuple[dict, Suite]:
    """The manifest and its suite, validated again; BenchError naming the first field that is not as written."""
    manifest = run_dir.read_manifest()
    path = run_dir.manifest_path

    def refuse(field: str, expected: str, got) -> BenchError:
        return BenchError(f"{path}: {field}: expected {expected}, got {got}")

    if not isinstance(manifest.get("suite"), dict):
        raise refuse("suite", "the suite as validated (an object)", describe(manifest, "suite"))
    if not isinstance(manifest.get("suite_file"), str):
        raise refuse("suite_file", "the suite file's path", describe(manifest, "suite_file"))
    for field, required in (("planned_cases", True), ("filters", False)):
        value = manifest.get(field, None if required else [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise refuse(field, "a list of strings", describe(manifest, field))
    if not isinstance(manifest.get("runs"), list):
        raise refuse("runs", "a list of runs", describe(manifest, "runs"))
    suite = validated_suite(manifest["suite"], path)
    try:
        parse_filters(manifest.get("filters", []))
    except BenchError as exc:
        raise BenchError(f"{path}: filters: {exc}")
    return manifest, suite


def validated_suite(data: dict, path) -> Suite:
    try:
        suite = Suite.model_validate(data)
        problems = check_references(suite)
        if not problems:
            expand(suite)
    except ValidationError as exc:
        problems = [format_error(err) for err in exc.errors()]
    except BenchError as exc:
        problems = [str(exc)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BenchError(f"{path}: suite.{problems[0]}{more}; the suite no longer validates")
    return suite


def describe(manifest: dict, field: str) -> str:
    if field not in manifest:
        return "no such field"
    value = manifest[field]
    if isinstance(value, list):
        odd = next((v for v in value if not isinstance(v, str)), None)
        return f"a list holding {type_name(odd)}"
    return type_name(value)
