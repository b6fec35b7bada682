"""One run against another: is each case slower, faster, unchanged, or can the evidence not tell?

A case is slower when three things hold: its median moved up by at least the threshold (5% by default), the
Mann-Whitney U test on the raw samples says the two sets differ (two-sided, p < alpha = 0.01), and the ratio's
interval (at 1 - alpha) lies above 1. Faster is the mirror image (a ratio at most 1 / (1 + threshold)).

The ratio's interval has up to three parts, and is their union:
- within processes: the Hodges-Lehmann interval of the shift in log latency (the U test inverted), exponentiated;
- between processes: when a side was measured in rounds (fresh workers), a bootstrap that resamples whole rounds on
  each side. Samples of one round share that round's level, so they are not independent draws: the U test on the
  pooled samples can call a difference that is only two processes landing on different levels. The rounds
  bootstrap widens the interval by the spread between rounds, so such a difference does not exclude 1.
- the machine's drift: when both rows carry their run's pooled spread between rounds (rounds_agreement.pooled),
  the interval holds the ratio of medians times exp(±t·sqrt(s_b²/k_b + s_n²/k_n)). On a machine whose speed
  drifts, three rounds a side can all land on a slow level by chance; every case of the run shows how likely that
  is, so a quiet re-run does not read as slower.
A rank test on round medians alone cannot reach p < 0.01 with the rounds suites use: with R rounds a side its
smallest p-value is 2 / C(2R, R) (0.33 for 2 rounds, 0.1 for 3, 0.029 for 4).

A row that must not be compared (failed, inaccurate, contaminated, unstable: bench.results.compare.distrust_reasons) on
either side gives "can't tell", never slower or faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.results.compare import distrust_reasons, measured, rounds_of
from bench.errors import BenchError
from bench.results.identity import identity_differences, machine_identity, software_differences, version_differences
from bench.results.run_files import Run

THRESHOLD = 0.05
ALPHA = 0.01
SLOWER, FASTER, UNCHANGED, CANT_TELL = "slower", "faster", "unchanged", "cant_tell"
VERDICT_ORDER = {SLOWER: 0, CANT_TELL: 1, UNCHANGED: 2, FASTER: 3}
SHOWN = {SLOWER: "slower", FASTER: "faster", UNCHANGED: "unchanged", CANT_TELL: "can't tell"}


@dataclass(frozen=True)
class Settings:
    threshold: float = THRESHOLD
    alpha: float = ALPHA

    @property
    def confidence(self) -> float:
        return 1 - self.alpha


@dataclass
class CaseResult:
    """One case in both runs: the verdict, the ratio new/base of medians and its interval, the U test's p-value."""

    case_id: str
    base: dict
    new: dict
    verdict: str
    ratio: float | None = None
    ratio_ci: tuple[float, float] | None = None
    p_value: float | None = None
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        row = self.new if measured(self.new) or not measured(self.base) else self.base
        return {
            "case_id": self.case_id,
            **{k: row.get(k) for k in ("model", "backend", "precision", "seq_len", "batch_size", "threads")},
            "verdict": self.verdict,
            "base_median_ms": median_of(self.base),
            "new_median_ms": median_of(self.new),
            "ratio": self.ratio,
            "ratio_ci": list(self.ratio_ci) if self.ratio_ci else None,
            "p_value": self.p_value,
            "reasons": self.reasons,
            "samples": {"base": sample_count(self.base), "new": sample_count(self.new)},
            "rounds": {"base": len(rounds_of(self.base) or [1]), "new": len(rounds_of(self.new) or [1])},
        }


def median_of(row: dict) -> float | None:
    return row["latency_ms"]["median"] if measured(row) else None


def sample_count(row: dict) -> int:
    return len(row.get("samples_ms") or []) if measured(row) else 0


def judge(base: dict, new: dict, settings: Settings = Settings()) -> CaseResult:
    """The verdict on one case, from its base row and its new row."""
    result = CaseResult(base["case_id"], base, new, CANT_TELL)
    result.reasons = [f"base {r}" for r in distrust_reasons(base)] + [f"new {r}" for r in distrust_reasons(new)]
    if not (measured(base) and measured(new)):
        return result
    result.ratio = float(new["latency_ms"]["median"] / base["latency_ms"]["median"])
    if result.reasons:
        return result
    from bench.results import significance

    n, m = len(base["samples_ms"]), len(new["samples_ms"])
    if significance.smallest_p_value(n, m) >= settings.alpha:
        result.reasons = [f"too few samples ({n} and {m}) for a test at alpha {settings.alpha:g}"]
        return result
    result.p_value = significance.mann_whitney_p(base["samples_ms"], new["samples_ms"])
    result.ratio_ci = significance.ratio_interval(
        base["samples_ms"], new["samples_ms"], rounds_of(base), rounds_of(new), settings.confidence, drift_of(base, new)
    )
    if result.ratio_ci is None:
        result.reasons = [f"too few samples ({n} and {m}) for a {settings.confidence:.0%} interval"]
        return result
    result.verdict = verdict(result.ratio, result.ratio_ci, result.p_value, settings)
    return result


def drift_of(base: dict, new: dict) -> tuple[tuple[dict, int], tuple[dict, int]] | None:
    """Each side's run-pooled spread between rounds and its count of rounds, when both rows carry one."""
    sides = []
    for row in (base, new):
        pooled, rounds = (row.get("rounds_agreement") or {}).get("pooled"), rounds_of(row)
        if not (isinstance(pooled, dict) and rounds):
            return None
        sides.append((pooled, len(rounds)))
    return sides[0], sides[1]


def verdict(ratio: float, interval: tuple[float, float], p_value: float, settings: Settings) -> str:
    """slower or faster when the change is significant, beyond the threshold, and its interval excludes 1."""
    significant = p_value < settings.alpha
    limit = 1 + settings.threshold
    if significant and interval[0] > 1 and (ratio >= limit or math.isclose(ratio, limit)):
        return SLOWER
    if significant and interval[1] < 1 and (ratio <= 1 / limit or math.isclose(ratio, 1 / limit)):
        return FASTER
    return UNCHANGED


@dataclass
class Comparison:
    base: Run
    new: Run
    settings: Settings
    cases: list[CaseResult]
    only_base: list[str]
    only_new: list[str]
    differences: list[str]

    @property
    def regression(self) -> bool:
        return any(case.verdict == SLOWER for case in self.cases)

    def counts(self) -> dict[str, int]:
        return {v: sum(case.verdict == v for case in self.cases) for v in VERDICT_ORDER}


def compare_runs(base: Run, new: Run, settings: Settings = Settings(), force: bool = False) -> Comparison:
    """Every case both runs have, judged and sorted: slower first, then can't tell, unchanged, faster."""
    if not 0 <= settings.threshold < 1:
        raise BenchError(
            f"compare: --threshold: expected a share between 0 and 1 (0.05 is 5%), got {settings.threshold:g}"
        )
    if not 0 < settings.alpha < 1:
        raise BenchError(f"compare: --alpha: expected a probability between 0 and 1, got {settings.alpha:g}")
    differences = run_differences(base, new)
    if differences and not force:
        raise BenchError(
            f"{new.path / 'manifest.json'}: not comparable with {base.path}: {'; '.join(differences)};"
            " give --force to compare anyway"
        )
    base_rows, new_rows = base.by_case(), new.by_case()
    cases = [judge(base_rows[cid], new_rows[cid], settings) for cid in base_rows if cid in new_rows]
    cases.sort(key=lambda c: (VERDICT_ORDER[c.verdict], -(c.ratio or 0.0), c.case_id))
    return Comparison(
        base, new, settings, cases,
        only_base=[cid for cid in base_rows if cid not in new_rows],
        only_new=[cid for cid in new_rows if cid not in base_rows],
        differences=differences,
    )  # fmt: skip


def run_differences(base: Run, new: Run) -> list[str]:
    """What differs between the runs' machines (kind, not hostname) and software, one entry per field."""
    found = identity_differences(
        machine_identity(base.manifest.get("machine"), str(base.path / "manifest.json")),
        machine_identity(new.manifest.get("machine"), str(new.path / "manifest.json")),
        recorded_isa(base.manifest), recorded_isa(new.manifest),
    )
    found += software_differences(base.manifest.get("software"), new.manifest.get("software"))
    return found + environment_differences(base.by_case(), new.by_case())


def recorded_isa(manifest: dict) -> dict:
    isa = ((manifest.get("machine") or {}).get("cpu") or {}).get("isa")
    return isa if isinstance(isa, dict) else {}


def environment_differences(base_rows: dict, new_rows: dict) -> list[str]:
    """Library versions the workers of each environment reported (rows' effective.versions), each difference once."""
    found: dict[str, None] = {}
    for case_id, base in base_rows.items():
        new = new_rows.get(case_id) or {}
        base_versions = (base.get("effective") or {}).get("versions")
        new_versions = (new.get("effective") or {}).get("versions")
        if isinstance(base_versions, dict) and isinstance(new_versions, dict):
            label = f"effective.versions ({base.get('environment')} environment)"
            found.update(dict.fromkeys(version_differences(label, base_versions, new_versions)))
    return list(found)
