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
    within: float | None = None
    """The variance a round's figure would have from its pairs' scatter alone (the robust variance of the pairs about
    their round's median, over the pairs per round): what the prior's trend is fitted on (`priors`)."""

    @classmethod
    def of(cls, per_round: Sequence[Sequence[float]]) -> "Rounds":
        kept = [list(values) for values in per_round if len(values)]
        medians = [statistics.median(v) for v in kept]
        residuals = [x - m for v, m in zip(kept, medians) for x in v if len(v) > 2]
        within = mad_variance(residuals) / statistics.fmean(map(len, kept)) if len(residuals) > 2 else None
        return cls(tuple(medians), tuple(len(v) for v in kept), within or None)

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


def mad_variance(values: Sequence[float]) -> float:
    """The variance a normal scatter with these values' median absolute deviation from 0 would have: pairs that a
    switch of the machine's level splits do not count."""
    return (1.4826 * statistics.median(abs(v) for v in values)) ** 2


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


def fit_f_dist(variances: Iterable[float], dfs: Iterable[float], covariate: Iterable[float] | None = None):
    """limma's fitFDist: the scaled F (inverse χ²) prior that the comparisons' variances share.

    With z = log s², e = z − ψ(d/2) + log(d/2): the prior's log variance is mean(e) + ψ(d0/2) − log(d0/2), and
    ψ'(d0/2) = var(e) − mean(ψ'(d/2)). Where that is not positive the variances scatter no more than sampling
    explains, and limma takes d0 as infinite; here d0 is at most the sum of the variances' own degrees of freedom.
    With a covariate (limma-trend, with a straight line), mean(e) becomes a least-squares line in it, var(e) the
    residuals' variance, and the result one Prior per comparison (None for those it could not use). Without one, a
    single Prior. None with too few usable variances.
    """
    from scipy.special import digamma, polygamma

    variances, dfs = list(variances), list(dfs)
    xs = list(covariate) if covariate is not None else [0.0] * len(variances)
    usable = [
        i for i, (s2, d, x) in enumerate(zip(variances, dfs, xs))
        if s2 is not None and s2 > 0 and d and d > 0 and x is not None and math.isfinite(x)
    ]  # fmt: skip
    parameters = 2 if covariate is not None else 1
    if len(usable) < parameters + 1:
        return None
    e = {i: math.log(variances[i]) - float(digamma(dfs[i] / 2)) + math.log(dfs[i] / 2) for i in usable}
    line = fitted_line({i: xs[i] for i in usable}, e)
    residual = sum((e[i] - line(xs[i])) ** 2 for i in usable) / (len(usable) - parameters)
    e_var = residual - statistics.fmean(float(polygamma(1, dfs[i] / 2)) for i in usable)
    # The prior carries no more degrees of freedom than the variances it was estimated from: with a few comparisons,
    # limma's estimate of d0 is often infinite by chance, and would pool a noisy shape with quiet ones.
    most = sum(dfs[i] for i in usable)
    d0 = most if e_var <= 0 else min(most, 2 * trigamma_inverse(e_var))
    shift = float(digamma(d0 / 2)) - math.log(d0 / 2)
    if covariate is None:
        return Prior(d0, math.exp(line(0.0) + shift))
    return [Prior(d0, math.exp(line(x) + shift)) if x is not None and math.isfinite(x) else None for x in xs]


def fitted_line(xs: dict, ys: dict):
    """The least-squares line of ys on xs (a flat one where xs do not vary), as a function."""
    x_mean, y_mean = statistics.fmean(xs.values()), statistics.fmean(ys.values())
    sxx = sum((x - x_mean) ** 2 for x in xs.values())
    slope = sum((xs[i] - x_mean) * (ys[i] - y_mean) for i in xs) / sxx if sxx > 0 else 0.0
    return lambda x: y_mean + slope * (x - x_mean)


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
    """Every comparison's ratio, each moderated towards the prior all of them give (`priors`)."""
    return {key: paired_ratio(c, p, confidence) for (key, c), p in zip(comparisons.items(), priors(comparisons))}


def priors(comparisons: dict[str, Rounds]) -> list[Prior | None]:
    """Each comparison's prior: limma-trend on the log of its pairs' scatter within rounds (`Rounds.within`).

    On these VMs some shapes are far noisier than others (bert-tiny at 128 tokens, batch 8: pairs scatter 5-10x more
    and processes land on levels 5-10% apart), and one prior for all would pull such a shape's variance to the quiet
    ones' and give it a tight, wrong interval. Its pairs' scatter within rounds, estimated from many pairs, says so;
    the trend lets the prior follow it. Without that scatter for every comparison, one prior for all.
    """
    values = list(comparisons.values())
    variances, dfs = [c.var for c in values], [c.df for c in values]
    if values and all(c.within for c in values):
        trend = fit_f_dist(variances, dfs, [math.log(c.within) for c in values])
        if trend is not None:
            return trend
    return [fit_f_dist(variances, dfs)] * len(values)


def unresolved(comparisons: dict, targets: dict, confidence: float = CONFIDENCE) -> dict:
    """{key: half-width (None: no interval)} of the comparisons with a target (± a share) that their interval is
    wider than. Only the intervals' widths decide, which come from the variances, never the estimates: giving a wide
    comparison more processes does not steer where its estimate lands."""
    found = {}
    for key, ratio in ratios(comparisons, confidence).items():
        half = ratio.half_width
        if key in targets and (half is None or half > targets[key]):
            found[key] = half
    return found


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
