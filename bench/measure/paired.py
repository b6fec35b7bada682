"""Paired statistics: a configuration against its baseline, measured in adjacent blocks, pair by pair.

A *pass* measures the baseline B and a configuration X in adjacent blocks (B X B): the machine's speed, which moves
in levels every few seconds, is nearly the same for both, so the log ratio log(B/X) of one pass cancels it. Each
block's figure is its median call; a pass's log speedup is the mean of its two baseline blocks' logs minus X's.

One process lands on its own level, so the passes of one pair of processes are not independent evidence. The
model has two levels (Kalibera & Jones, "Rigorous benchmarking in reasonable time", 2013): processes, and passes
within them. The estimate is the mean of the process rounds' mean log ratios; its variance is their sample variance
over the number of rounds, which holds both levels' noise. With three rounds that variance has 2 degrees of freedom,
so it is moderated towards the run's (limma's empirical Bayes, Smyth 2004): the prior degrees of freedom and
variance are estimated from every comparison's variance (`fit_f_dist`), and the interval uses Student's t on the
prior's plus the comparison's own degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

CONFIDENCE = 0.95
TIE_MARGIN = 0.02
"""Two configurations are tied unless the paired test shows one more than this share faster than the other."""


@dataclass(frozen=True)
class Prior:
    """The run's variance of a round's mean log ratio: `var` on `df` degrees of freedom (inf: every comparison
    shares one variance)."""

    df: float
    var: float


@dataclass(frozen=True)
class Rounds:
    """One comparison's process rounds: one log ratio per round (the median of its pairs'), with the number of pairs
    behind each. The median, since a pair that a switch of the machine's level splits is an outlier of ±0.5 on these
    VMs; the interval comes from the spread between rounds, whatever estimator each round uses."""

    means: tuple[float, ...]
    pairs: tuple[int, ...]

    @classmethod
    def of(cls, per_round: Sequence[Sequence[float]]) -> "Rounds":
        kept = [list(values) for values in per_round if len(values)]
        return cls(tuple(statistics.median(v) for v in kept), tuple(len(v) for v in kept))

    @property
    def estimate(self) -> float:
        return statistics.fmean(self.means)

    @property
    def df(self) -> int:
        return len(self.means) - 1

    @property
    def var(self) -> float | None:
        """The sample variance of the round means, or None with one round."""
        return statistics.variance(self.means) if len(self.means) > 1 else None


@dataclass(frozen=True)
class PairedRatio:
    """exp(estimate) with its interval: a speedup (baseline over configuration) or a ratio of two speedups."""

    log_ratio: float
    se: float | None
    df: float | None
    rounds: int
    pairs: int
    confidence: float = CONFIDENCE

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.se is None or self.df is None:
            return None
        half = t_quantile(1 - (1 - self.confidence) / 2, self.df) * self.se
        return math.exp(self.log_ratio - half), math.exp(self.log_ratio + half)

    @property
    def half_width(self) -> float | None:
        """The interval's farther end from the ratio, as a share of it."""
        interval = self.interval
        if interval is None:
            return None
        return max(self.ratio - interval[0], interval[1] - self.ratio) / self.ratio

    def to_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "interval": list(self.interval) if self.interval else None,
            "confidence": self.confidence,
            "log_se": self.se,
            "df": None if self.df is None or math.isinf(self.df) else self.df,
            "rounds": self.rounds,
            "pairs": self.pairs,
        }


def t_quantile(q: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.ppf(q)) if math.isinf(df) else float(t.ppf(q, df))


def pass_log_speedup(baseline_before_ms: float, configuration_ms: float, baseline_after_ms: float | None) -> float:
    """log(B/X) of one pass: B the geometric mean of the baseline blocks around X (the one before, at the end)."""
    logs = [math.log(baseline_before_ms)] + ([math.log(baseline_after_ms)] if baseline_after_ms else [])
    return statistics.fmean(logs) - math.log(configuration_ms)


def fit_f_dist(variances: Iterable[float], dfs: Iterable[float]) -> Prior | None:
    """limma's fitFDist without covariate: the scaled F (inverse χ²) prior that the comparisons' variances share.

    With z = log s², e = z − ψ(d/2) + log(d/2): the prior's log variance is mean(e) + ψ(d0/2) − log(d0/2), and
    ψ'(d0/2) = var(e) − mean(ψ'(d/2)). Where that is not positive the variances scatter no more than sampling
    explains, and limma takes d0 as infinite; here d0 is at most the sum of the variances' own degrees of freedom.
    None with fewer than two usable variances.
    """
    from scipy.special import digamma, polygamma

    kept = [(s2, d) for s2, d in zip(variances, dfs) if s2 is not None and s2 > 0 and d and d > 0]
    if len(kept) < 2:
        return None
    e = [math.log(s2) - float(digamma(d / 2)) + math.log(d / 2) for s2, d in kept]
    e_mean = statistics.fmean(e)
    e_var = statistics.variance(e) - statistics.fmean(float(polygamma(1, d / 2)) for _, d in kept)
    # The prior carries no more degrees of freedom than the variances it was estimated from: with a few comparisons,
    # limma's estimate of d0 is often infinite by chance, and would pool a noisy shape with quiet ones.
    most = sum(d for _, d in kept)
    d0 = most if e_var <= 0 else min(most, 2 * trigamma_inverse(e_var))
    return Prior(d0, math.exp(e_mean + float(digamma(d0 / 2)) - math.log(d0 / 2)))


def trigamma_inverse(x: float) -> float:
    """y with ψ'(y) = x, by limma's Newton iteration."""
    from scipy.special import polygamma

    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        step = tri * (1 - tri / x) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def moderated(var: float | None, df: int, prior: Prior | None) -> tuple[float | None, float | None]:
    """(variance, degrees of freedom) after moderation: (d0·s0² + d·s²) / (d0 + d) on d0 + d; the comparison's own
    without a prior; the prior's alone for a comparison of one round."""
    if prior is None:
        return (var, df) if var is not None and df > 0 else (None, None)
    if math.isinf(prior.df):
        return prior.var, math.inf
    if var is None or df <= 0:
        return prior.var, prior.df
    return (prior.df * prior.var + df * var) / (prior.df + df), prior.df + df


def paired_ratio(rounds: Rounds, prior: Prior | None, confidence: float = CONFIDENCE) -> PairedRatio:
    """The comparison's ratio: exp(mean of round means), se = sqrt(moderated variance / rounds)."""
    var, df = moderated(rounds.var, rounds.df, prior)
    se = None if var is None else math.sqrt(var / len(rounds.means))
    return PairedRatio(rounds.estimate, se, df, len(rounds.means), sum(rounds.pairs), confidence)


def ratios(comparisons: dict[str, Rounds], confidence: float = CONFIDENCE) -> dict[str, PairedRatio]:
    """Every comparison's ratio, each moderated towards the prior all of them give."""
    prior = fit_f_dist([c.var for c in comparisons.values()], [c.df for c in comparisons.values()])
    return {key: paired_ratio(c, prior, confidence) for key, c in comparisons.items()}


def difference(a: Rounds, b: Rounds) -> Rounds:
    """a's log speedup minus b's, round by round: both were paired with the same baseline processes, so the round
    difference carries both ratios' variance and their covariance."""
    return Rounds(tuple(x - y for x, y in zip(a.means, b.means)), tuple(min(p, q) for p, q in zip(a.pairs, b.pairs)))


def tied_with_fastest(comparisons: dict[str, Rounds], confidence: float = CONFIDENCE, margin: float = TIE_MARGIN):
    """(fastest, {key: PairedRatio of fastest over key, for the ones tied with it}).

    The fastest has the highest estimated speedup. Another is tied with it unless the paired test shows the fastest
    more than `margin` faster: the lower end of the interval of their ratio, with its variance moderated towards the
    run's differences, is above 1 + margin.
    """
    if not comparisons:
        return None, {}
    best = max(comparisons, key=lambda key: comparisons[key].estimate)
    differences = {
        key: difference(comparisons[best], c)
        for key, c in comparisons.items()
        if key != best and len(c.means) == len(comparisons[best].means)
    }
    tied = {}
    for key, ratio in ratios(differences, confidence).items():
        interval = ratio.interval
        if interval is None or interval[0] <= 1 + margin:
            tied[key] = ratio
    return best, tied
