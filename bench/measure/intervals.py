"""Distribution-free confidence intervals for a median latency.

Within one set of samples: the order-statistic interval [x(l), x(u)], whose ranks come from the binomial
distribution (what scipy.stats.quantile_test(...).confidence_interval() returns). The ranks are computed here with
`math` so that a worker, which runs this between timed calls and in environments without scipy, never imports
scipy into the process it measures; the tests check them against scipy.

Over rounds (each a fresh worker's samples): a percentile bootstrap that resamples whole rounds
(scipy.stats.bootstrap), never narrower than the order-statistic interval of all the samples together.

Over the run: a machine whose speed drifts moves every case's round medians alike, so the run's other cases tell
how far apart a case's rounds land by drift alone. Their pooled variance of log round medians gives the bound
median·exp(±t·s/√k) for a case of k rounds, and the merged row's interval is never narrower than it.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

CONFIDENCE = 0.95
SKIPPED_SIGMAS = 7.0
"""The binomial walk starts this many standard deviations below n/2: the mass it skips is under 1e-11."""
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0
ORDER_STATISTICS, ROUNDS_BOOTSTRAP, ROUNDS_POOLED = "order_statistics", "rounds_bootstrap", "rounds_pooled"
MIN_POOLED_DF = 4
"""The fewest degrees of freedom (rounds beyond each case's first, summed) the run's pooled spread needs."""


def median_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (l, u) with P(x(l) <= median <= x(u)) >= confidence, as tight as possible; None if n is too small.

    l is the largest rank with P(B <= l - 1) <= (1 - confidence) / 2 for B ~ Binomial(n, 1/2), and u = n + 1 - l.
    """
    tail = (1 - confidence) / 2
    if n < 1 or 0.5**n > tail:
        return None
    k = max(0, int(n / 2 - SKIPPED_SIGMAS * math.sqrt(n) / 2))
    log_norm = math.lgamma(n + 1) + n * math.log(0.5)
    cdf = 0.0
    while True:
        pmf = math.exp(log_norm - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        if cdf + pmf > tail:
            return k, n + 1 - k
        cdf += pmf
        k += 1


def minimum_samples(confidence: float = CONFIDENCE) -> int:
    """The fewest samples that have an order-statistic interval at this confidence (6 at 95%)."""
    return math.ceil(math.log2(2 / (1 - confidence)))


def order_statistic_interval(sorted_values: Sequence[float], confidence: float = CONFIDENCE):
    """[low, high] for the median of already sorted values, or None when there are too few of them."""
    ranks = median_ranks(len(sorted_values), confidence)
    if ranks is None:
        return None
    return [sorted_values[ranks[0] - 1], sorted_values[ranks[1] - 1]]


def relative_half_width(sorted_values: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """The farther end of the median's interval from the median, as a share of the median; None without interval."""
    n = len(sorted_values)
    median = (sorted_values[(n - 1) // 2] + sorted_values[n // 2]) / 2 if n else 0.0
    return half_width_share(median, order_statistic_interval(sorted_values, confidence))


def half_width_share(median: float, interval: Sequence[float] | None) -> float | None:
    """max(median - low, high - median) / median: the interval is '±' this share of the median."""
    if interval is None or median <= 0:
        return None
    return max(median - interval[0], interval[1] - median) / median


def rounds_bootstrap_interval(rounds: Sequence[Sequence[float]], confidence: float = CONFIDENCE) -> list[float]:
    """Percentile bootstrap of the median of all samples, resampling whole rounds (at least two rounds)."""
    import numpy as np
    from scipy.stats import bootstrap

    arrays = [np.asarray(r, dtype=float) for r in rounds]
    pooled: dict[tuple, float] = {}

    def pooled_median(indices) -> float:
        key = tuple(sorted(indices.tolist()))  # few distinct multisets when rounds are few
        if key not in pooled:
            pooled[key] = float(np.median(np.concatenate([arrays[i] for i in key])))
        return pooled[key]

    def statistic(indices, axis=-1):
        resamples = np.moveaxis(indices, axis, -1)
        flat = resamples.reshape(-1, resamples.shape[-1])
        return np.array([pooled_median(row) for row in flat]).reshape(resamples.shape[:-1])

    result = bootstrap(
        (np.arange(len(arrays)),), statistic, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED),
    )  # fmt: skip
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def median_interval(
    samples: Sequence[float], rounds: Sequence[Sequence[float]] | None = None, confidence: float = CONFIDENCE
) -> dict:
    """The median's interval as the row records it: median_ci ([low, high] or None), method, n, and why not."""
    values = sorted(samples)
    n = len(values)
    record = {"median_ci": None, "median_ci_method": None, "median_ci_n": n, "median_ci_reason": None}
    within = order_statistic_interval(values, confidence)
    if within is None:
        need = minimum_samples(confidence)
        record["median_ci_reason"] = f"{n} samples: a {confidence:.0%} interval of the median needs at least {need}"
        return record
    used_rounds = [r for r in rounds or [] if len(r)]
    if len(used_rounds) >= 2:
        between = rounds_bootstrap_interval(used_rounds, confidence)
        low, high = min(within[0], between[0]), max(within[1], between[1])
        record.update(median_ci=[float(low), float(high)], median_ci_method=ROUNDS_BOOTSTRAP)
    else:
        record.update(median_ci=[float(within[0]), float(within[1])], median_ci_method=ORDER_STATISTICS)
    return record


def pooled_log_spread(round_medians: Iterable[Sequence[float]]) -> dict | None:
    """The between-round spread that cases share: {sd_log, df, cases}, or None below MIN_POOLED_DF.

    For each group of round medians (one case's, k_i >= 2 of them) the sample variance s_i^2 (n-1) of their logs;
    pooled s^2 = sum((k_i - 1) s_i^2) / sum(k_i - 1), on df = sum(k_i - 1) degrees of freedom.
    """
    df, weighted, cases = 0, 0.0, 0
    for medians in round_medians:
        logs = [math.log(m) for m in medians if m is not None and m > 0]
        if len(logs) < 2:
            continue
        df += len(logs) - 1
        weighted += (len(logs) - 1) * statistics.variance(logs)
        cases += 1
    if df < MIN_POOLED_DF:
        return None
    return {"sd_log": math.sqrt(weighted / df), "df": df, "cases": cases}


def pooled_bound(
    median: float, rounds: int, pooled: dict, confidence: float = CONFIDENCE, runs: int = 1
) -> list[float]:
    """median·exp(±t·s·√(runs/k)): how far a mean of k round levels strays when the machine's own spread is s
    (runs=1); with runs=2, how far another run's of k rounds strays from this one's."""
    from scipy.stats import t

    half = float(t.ppf(1 - (1 - confidence) / 2, pooled["df"])) * pooled["sd_log"] * math.sqrt(runs / rounds)
    return [median * math.exp(-half), median * math.exp(half)]


def with_pooled_bound(record: dict, rounds: int, pooled: dict | None, confidence: float = CONFIDENCE) -> dict:
    """A latency summary of k >= 2 rounds whose interval is widened to hold the pooled bound; as it was otherwise."""
    if pooled is None or rounds < 2 or record.get("median_ci") is None:
        return record
    low, high = pooled_bound(record["median"], rounds, pooled, confidence)
    interval = [float(min(record["median_ci"][0], low)), float(max(record["median_ci"][1], high))]
    rerun = [float(v) for v in pooled_bound(record["median"], rounds, pooled, confidence, runs=2)]
    return {**record, "median_ci": interval, "median_ci_method": ROUNDS_POOLED, "rerun_interval": rerun}
