"""One run against another: is each case slower, faster, unchanged, or can the evidence not tell?

The figures tested are per process, never pooled samples (samples of one process share its level):
- rows of two rounds or more on both sides: each round's median is one figure. The ratio is the geometric mean of
  the new side's round medians over the base side's; Welch's t on the log round medians gives its p-value and
  interval, each side's variance moderated towards its run's pooled spread between rounds (rounds_agreement.pooled,
  on its degrees of freedom): with three rounds a side, the run's other cases say how far rounds stray by drift.
- rows of one round (one process a side): the Mann-Whitney U test and the Hodges-Lehmann interval on the samples,
  widened by the run's pooled spread when both rows carry it. Such a verdict says only that two processes differed.

The decision is family-wise: Holm's method over every case compared, at `alpha` (0.01 by default), so that a
comparison of two identical runs calls any case slower with probability at most alpha, however many cases it has.
Benjamini-Hochberg q-values are reported beside.

The threshold (5% by default) is the smallest change that counts, applied to the interval: a significant change is
slower (or faster) unless its whole interval lies within the threshold. A true 5% slowdown is then caught whenever
the test sees it; a cut on the point estimate would catch it half the time.

A row that must not be compared (failed, inaccurate, contaminated, unstable: bench.results.compare.distrust_reasons) on
either side gives "can't tell", never slower or faster. Between runs measured apart, the machine's drift limits
what can be resolved; `bench run --ab` measures both sides in one run, paired (bench.results.ab).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.results.compare import distrust_reasons, measured, rounds_of
from bench.results.offline import SINGLE_STREAM
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
    p_holm: float | None = None
    """The p-value adjusted by Holm's method over every case of the comparison: what decides the verdict."""
    q_value: float | None = None
    """Benjamini-Hochberg's q-value over the same cases."""
    method: str | None = None
    """rounds: one figure per process (round medians); samples: one process per side, its samples; windows: an
    offline row's windows of one round a side."""
    figure: str = "median call"
    """What the ratio is of: the median call, or for an offline row the time per sample under load."""

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
            "p_holm": self.p_holm,
            "q_value": self.q_value,
            "method": self.method,
            "figure": self.figure,
            "base_samples_per_s": samples_per_s(self.base),
            "new_samples_per_s": samples_per_s(self.new),
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
    scenario = scenario_of(base)
    if scenario != scenario_of(new):
        result.reasons = [f"measured as {scenario} in base and as {scenario_of(new)} in new"]
        return result
    if scenario not in JUDGED_SCENARIOS:
        result.reasons = [UNJUDGED.get(scenario, f"measured as {scenario}: not judged between runs")]
        return result
    if scenario == "offline":
        return judge_offline(result, settings)
    result.ratio = float(new["latency_ms"]["median"] / base["latency_ms"]["median"])
    if result.reasons:
        return result
    rounds = round_level(base, new, settings.confidence)
    if rounds is not None:
        result.ratio, result.ratio_ci, result.p_value = rounds
        result.method = "rounds"
        result.verdict = verdict(result.ratio, result.ratio_ci, result.p_value, settings)
        return result
    sides = (base["samples_ms"], rounds_of(base)), (new["samples_ms"], rounds_of(new))
    return sample_level(result, sides, drift_of(base, new), "samples", settings)


def sample_level(result: CaseResult, sides, drift, what: str, settings: Settings) -> CaseResult:
    """The verdict from one process a side: the U test and the Hodges-Lehmann interval on its `what` (samples, or
    an offline row's windows), `sides` giving each side's (values, rounds or None)."""
    from bench.results import significance

    (b, b_rounds), (n, n_rounds) = sides
    if significance.smallest_p_value(len(b), len(n)) >= settings.alpha:
        result.reasons = [f"too few {what} ({len(b)} and {len(n)}) for a test at alpha {settings.alpha:g}"]
        return result
    result.p_value = significance.mann_whitney_p(b, n)
    result.ratio_ci = significance.ratio_interval(b, n, b_rounds, n_rounds, settings.confidence, drift)
    if result.ratio_ci is None:
        result.reasons = [f"too few {what} ({len(b)} and {len(n)}) for a {settings.confidence:.0%} interval"]
        return result
    result.method = what
    result.verdict = verdict(result.ratio, result.ratio_ci, result.p_value, settings)
    return result


JUDGED_SCENARIOS = (SINGLE_STREAM, "offline")
UNJUDGED = {
    "server": "a server row's queue (its latency at an offered rate, or its highest VALID rate) is what one moment of"
              " the machine served, not a figure with an interval between runs: compare configurations in one run"
              " (bench tune's duel)",
    "closed-loop": "a closed-loop row is a curve of completed queries over users, not judged between runs",
}  # fmt: skip


def scenario_of(row: dict) -> str:
    return row.get("scenario") or SINGLE_STREAM


def offline_figures(row: dict) -> list[list[float]]:
    """An offline row's windows as time per sample (s), round by round: a ratio over 1 is slower, as for latency."""
    windows = (row.get("load") or {}).get("windows") or []
    return [[1.0 / w for w in per_round if w and w > 0] for per_round in windows if per_round]


def samples_per_s(row: dict) -> float | None:
    return (row.get("load") or {}).get("samples_per_s") if measured(row) else None


def judge_offline(result: CaseResult, settings: Settings) -> CaseResult:
    """An offline case judged on its throughput under load: the figure is the time per sample (1 / samples/s) of
    each round's median window, tested as round medians are; with one round a side, its windows as samples."""
    import statistics

    base, new = result.base, result.new
    result.figure = "time per sample under load (1 / samples/s)"
    b, n = offline_figures(base), offline_figures(new)
    if not (samples_per_s(base) and samples_per_s(new)) or not any(b) or not any(n):
        result.reasons = result.reasons or ["no throughput under load recorded"]
        return result
    result.ratio = float(samples_per_s(base) / samples_per_s(new))
    if result.reasons:
        return result
    level = figure_level([statistics.median(w) for w in b if w], [statistics.median(w) for w in n if w], base, new,
                         settings.confidence)  # fmt: skip
    if level is None:
        return sample_level(result, (([w for r in b for w in r], None), ([w for r in n for w in r], None)), None,
                            "windows", settings)  # fmt: skip
    result.ratio, result.ratio_ci, result.p_value = level
    result.method = "rounds"
    result.verdict = verdict(result.ratio, result.ratio_ci, result.p_value, settings)
    return result


def round_medians(row: dict) -> list[float] | None:
    rounds = rounds_of(row)
    if rounds is None:
        return None
    import statistics

    return [statistics.median(samples) for samples in rounds if samples]


def moderated_side(medians: list[float], pooled: dict | None) -> tuple[float, float]:
    """(variance of one round's log median, its degrees of freedom): the case's own, moderated towards its run's
    pooled spread between rounds (sd_log on df) when the row carries it."""
    import statistics

    logs = [math.log(m) for m in medians]
    own, own_df = statistics.variance(logs), len(logs) - 1
    if not isinstance(pooled, dict) or not pooled.get("df"):
        return own, own_df
    prior_df = float(pooled["df"])
    return (prior_df * pooled["sd_log"] ** 2 + own_df * own) / (prior_df + own_df), prior_df + own_df


def round_level(base: dict, new: dict, confidence: float):
    """(ratio, interval, p) from the rounds, one figure per process: the geometric mean of the new side's round
    medians over the base side's, Welch's t on the log round medians with each side's variance moderated towards
    its run's pooled spread. None unless both sides have two rounds or more."""
    return figure_level(round_medians(base), round_medians(new), base, new, confidence)


def figure_level(b: list[float] | None, n: list[float] | None, base: dict, new: dict, confidence: float):
    """round_level on one figure per round of each side (round medians, or an offline round's time per sample)."""
    from scipy.stats import t

    if not b or not n or len(b) < 2 or len(n) < 2 or min(b + n) <= 0:
        return None
    pooled = lambda row: (row.get("rounds_agreement") or {}).get("pooled")  # noqa: E731
    (vb, db), (vn, dn) = moderated_side(b, pooled(base)), moderated_side(n, pooled(new))
    diff = sum(map(math.log, n)) / len(n) - sum(map(math.log, b)) / len(b)
    wb, wn = vb / len(b), vn / len(n)
    se = math.sqrt(wb + wn)
    if se == 0:
        return math.exp(diff), (math.exp(diff), math.exp(diff)), 0.0 if diff else 1.0
    df = (wb + wn) ** 2 / (wb**2 / db + wn**2 / dn)
    half = float(t.ppf(1 - (1 - confidence) / 2, df)) * se
    p = float(2 * t.sf(abs(diff) / se, df))
    return math.exp(diff), (math.exp(diff - half), math.exp(diff + half)), p


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
    """slower or faster when the change is significant, its interval excludes 1 and reaches the threshold.

    The threshold is applied to the interval, not to the ratio: a change is dismissed as too small only when the
    whole interval is within it. A true slowdown of exactly the threshold is then caught whenever the test sees it,
    where a cut on the point estimate would miss it half the time.
    """
    significant = p_value < settings.alpha
    limit = 1 + settings.threshold
    if significant and interval[0] > 1 and (interval[1] >= limit or math.isclose(interval[1], limit)):
        return SLOWER
    if significant and interval[1] < 1 and (interval[0] <= 1 / limit or math.isclose(interval[0], 1 / limit)):
        return FASTER
    return UNCHANGED


def family_wise(cases: list[CaseResult], settings: Settings) -> None:
    """Holm's method over every case tested decides at family-wise alpha: each verdict is taken again on its Holm-
    adjusted p-value. Benjamini-Hochberg q-values are recorded beside them for the report."""
    tested = [c for c in cases if c.p_value is not None and c.ratio_ci is not None and not c.reasons]
    if not tested:
        return
    from scipy.stats import false_discovery_control

    ps = [c.p_value for c in tested]
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[index]))
        tested[index].p_holm = running
    for case, q in zip(tested, false_discovery_control(ps, method="bh")):
        case.q_value = float(q)
        case.verdict = verdict(case.ratio, case.ratio_ci, case.p_holm, settings)


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

    @property
    def shift(self) -> float | None:
        """The geometric mean of every judged case's ratio: the run-wide change, software and machine together."""
        logs = [math.log(c.ratio) for c in self.cases if c.ratio and not c.reasons]
        return math.exp(sum(logs) / len(logs)) if logs else None

    @property
    def machine_shift(self) -> float | None:
        """The machine's own change between the runs, as the drift canary of their paired rows saw it: new over base
        time, above 1 the machine ran slower. Never subtracted: an upgrade can slow everything; this only says how
        much of a shift the machine itself shows. None unless both runs have paired rows."""
        base, new = canary_level(self.base.rows), canary_level(self.new.rows)
        return new / base if base and new else None


def canary_level(rows: list[dict]) -> float | None:
    import statistics

    levels = [c for r in rows for c in (r.get("paired") or {}).get("canary_ms") or [] if c]
    return statistics.median(levels) if levels else None


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
    family_wise(cases, settings)
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
