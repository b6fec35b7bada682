"""The verdicts of an A/B run (bench.plan.ab): each candidate case against its twin, from their pairs.

For each case: the ratio B/A of call times, the geometric mean of its pass ratios, with the interval of the two-level
model moderated towards the run's (bench.measure.paired), and the two-sided p-value of "no change" from the same t.

- Holm's method over every case compared decides, at the family-wise level `alpha`: the chance that a run of two
  identical environments calls any case different is at most alpha.
- Benjamini-Hochberg q-values mark the cases in the table (the expected share of false calls among those marked).
- The threshold is a floor on what matters, applied to the interval, not to the point estimate: a case significantly
  slower is `slower` (exit 1) unless its whole interval lies below 1 + threshold, and then it reads `slower, under
  5%`. A true 5% slowdown is thus caught whenever the test sees it, not half the time as a cut on the estimate would.
- The run-wide shift (the geometric mean of all the ratios) is said on its own line, with the canary's reading of
  the machine during each side's blocks beside it: the machine's own change is not taken for the software's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from bench.measure import paired
from bench.results.compare import pair_distrust

ALPHA = 0.05
THRESHOLD = 0.05
SLOWER, FASTER, SLOWER_SMALL, FASTER_SMALL, UNCHANGED, CANT_TELL = (
    "slower", "faster", "slower, under threshold", "faster, under threshold", "unchanged", "can't tell",
)  # fmt: skip


@dataclass
class ABCase:
    base: dict
    new: dict
    verdict: str = CANT_TELL
    ratio: float | None = None
    """B's call time over A's: above 1, the candidate is slower."""
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    p_holm: float | None = None
    q_value: float | None = None
    reasons: list[str] = field(default_factory=list)
    pairs: int = 0
    processes: int = 0

    def to_json(self) -> dict:
        return {
            "case_id": self.base.get("case_id"),
            "candidate_case_id": self.new.get("case_id"),
            **{k: self.base.get(k) for k in ("model", "backend", "precision", "seq_len", "batch_size", "threads")},
            "environments": [self.base.get("environment"), self.new.get("environment")],
            "verdict": self.verdict,
            "ratio": self.ratio,
            "interval": list(self.interval) if self.interval else None,
            "p_value": self.p_value,
            "p_holm": self.p_holm,
            "q_value": self.q_value,
            "pairs": self.pairs,
            "processes": self.processes,
            "reasons": self.reasons,
        }


@dataclass
class ABResult:
    cases: list[ABCase]
    alpha: float
    threshold: float
    shift: float | None
    """The geometric mean of the compared cases' ratios: how much slower B ran overall."""
    canary: tuple[float, float] | None
    """The canary's median reading during A's blocks and during B's (ms)."""

    @property
    def slower(self) -> list[ABCase]:
        return [c for c in self.cases if c.verdict == SLOWER]

    def to_json(self) -> dict:
        return {
            "alpha": self.alpha,
            "threshold": self.threshold,
            "shift": self.shift,
            "canary_ms": list(self.canary) if self.canary else None,
            "cases": [c.to_json() for c in self.cases],
        }


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def two_sided_p(ratio: paired.PairedRatio) -> float | None:
    from scipy.stats import norm, t

    if ratio.se is None or ratio.df is None or ratio.se <= 0:
        return None
    statistic = abs(ratio.log_ratio) / ratio.se
    tail = norm.sf(statistic) if math.isinf(ratio.df) else t.sf(statistic, ratio.df)
    return float(2 * tail)


def ab_result(rows: list[dict], alpha: float = ALPHA, threshold: float = THRESHOLD) -> ABResult:
    by_id = {row["case_id"]: row for row in rows}
    cases, comparisons = [], {}
    for row in rows:
        base = by_id.get(row.get("pair_of") or "")
        if base is None:
            continue
        case = ABCase(base, row)
        cases.append(case)
        own, theirs = pair_distrust(row, base)
        reasons = [f"A: {r}" for r in theirs] + [f"B: {r}" for r in own]
        entry = row.get("paired") or {}
        if not reasons and (entry.get("baseline") != base["case_id"] or not any(entry.get("log_speedups") or [])):
            reasons.append("no pairs")
        case.reasons = reasons
        if not reasons:
            comparisons[row["case_id"]] = paired.Rounds.of(entry["log_speedups"])
    confidence = 1 - alpha
    ratios = paired.ratios(comparisons, confidence) if comparisons else {}
    tested = []
    for case in cases:
        ratio = ratios.get(case.new["case_id"])
        if ratio is None:
            continue
        case.ratio = 1 / ratio.ratio
        case.interval = (1 / ratio.interval[1], 1 / ratio.interval[0]) if ratio.interval else None
        case.p_value, case.pairs, case.processes = two_sided_p(ratio), ratio.pairs, ratio.rounds
        if case.p_value is None:
            case.reasons.append("one process per side and no other case to moderate its variance")
        else:
            tested.append(case)
    if tested:
        from scipy.stats import false_discovery_control

        for case, adjusted in zip(tested, holm([c.p_value for c in tested])):
            case.p_holm = adjusted
        for case, q in zip(tested, false_discovery_control([c.p_value for c in tested], method="bh")):
            case.q_value = float(q)
    for case in cases:
        case.verdict = verdict(case, alpha, threshold)
    return ABResult(cases, alpha, threshold, shift(tested), canary(cases))


def verdict(case: ABCase, alpha: float, threshold: float) -> str:
    if case.p_holm is None or case.interval is None:
        return CANT_TELL
    if case.p_holm >= alpha:
        return UNCHANGED
    if case.ratio > 1:
        return SLOWER if case.interval[1] >= 1 + threshold else SLOWER_SMALL
    return FASTER if case.interval[0] <= 1 / (1 + threshold) else FASTER_SMALL


def shift(cases: list[ABCase]) -> float | None:
    logs = [math.log(c.ratio) for c in cases if c.ratio]
    return math.exp(statistics.fmean(logs)) if logs else None


def canary(cases: list[ABCase]) -> tuple[float, float] | None:
    def level(row: dict) -> list[float]:
        return [c for c in (row.get("paired") or {}).get("canary_ms") or [] if c]

    a = [c for case in cases for c in level(case.base)]
    b = [c for case in cases for c in level(case.new)]
    return (statistics.median(a), statistics.median(b)) if a and b else None


def shift_line(result: ABResult) -> str | None:
    if result.shift is None:
        return None
    compared = len([c for c in result.cases if c.ratio])
    text = f"run-wide: B's calls took {result.shift:.3f}x A's (geometric mean over {compared} cases)"
    if result.canary:
        a, b = result.canary
        text += f"; the machine (matmul canary) ran at {a / b:.3f}x its A-side speed during B's blocks"
    return text
