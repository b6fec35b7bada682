"""The statistics of a run-against-run comparison: the U test, and intervals for the ratio of two medians.

- within processes: the Hodges-Lehmann interval of the shift in log latency (the U test inverted: the ranks of the
  pairwise differences that bound it come from the normal approximation of U), exponentiated into a ratio;
- between processes: a percentile bootstrap that resamples whole rounds on each side (a side measured in one round
  stays as it is), of the ratio of the pooled medians;
- the machine's drift: when both sides carry their run's pooled spread between rounds (s on df degrees of freedom,
  k rounds), the ratio of medians times exp(±t·sqrt(s_b²/k_b + s_n²/k_n)), t on the Welch-Satterthwaite df.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0
BISECTION_STEPS = 200


def smallest_p_value(n: int, m: int) -> float:
    """The smallest two-sided p-value the exact U test can give with n and m samples."""
    return min(1.0, 2 / math.comb(n + m, n)) if n and m else 1.0


def mann_whitney_p(base, new) -> float:
    """Two-sided p-value of the Mann-Whitney U test that the two sets of samples come from one distribution."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(new, base, alternative="two-sided").pvalue)


def ratio_interval(base, new, base_rounds, new_rounds, confidence: float, drift=None) -> tuple[float, float] | None:
    """new/base: the Hodges-Lehmann interval, widened by a bootstrap over rounds when a side has several, and by the
    machine's drift when `drift` gives each side's pooled spread and rounds: ((pooled, k) of base, of new)."""
    within = hodges_lehmann_ratio(base, new, confidence)
    if within is None:
        return None
    interval = within
    if base_rounds is not None or new_rounds is not None:
        interval = union(interval, rounds_bootstrap_ratio(base_rounds or [base], new_rounds or [new], confidence))
    if drift is not None:
        ratio = float(np.median(new) / np.median(base))
        interval = union(interval, drift_ratio_bound(ratio, *drift[0], *drift[1], confidence))
    return interval


def union(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return min(a[0], b[0]), max(a[1], b[1])


def drift_ratio_bound(ratio: float, base_spread: dict, base_k: int, new_spread: dict, new_k: int, confidence: float):
    """ratio·exp(±t·sqrt(s_b²/k_b + s_n²/k_n)): how far two medians of k rounds each stray apart by the machine's
    drift alone; t at the Welch-Satterthwaite degrees of freedom of the two pooled spreads."""
    from scipy.stats import t

    base_var, new_var = base_spread["sd_log"] ** 2 / base_k, new_spread["sd_log"] ** 2 / new_k
    if base_var + new_var <= 0:
        return ratio, ratio
    df = (base_var + new_var) ** 2 / (base_var**2 / base_spread["df"] + new_var**2 / new_spread["df"])
    half = float(t.ppf(1 - (1 - confidence) / 2, df)) * math.sqrt(base_var + new_var)
    return ratio * math.exp(-half), ratio * math.exp(half)


def hodges_lehmann_ratio(base, new, confidence: float) -> tuple[float, float] | None:
    """Interval for new/base from the pairwise differences of log latencies (normal approximation of U's ranks)."""
    from scipy.stats import norm

    x, y = np.sort(np.log(base)), np.sort(np.log(new))
    n, m = len(x), len(y)
    z = norm.ppf(1 - (1 - confidence) / 2)
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    if k < 1:
        return None
    low, high = kth_difference(x, y, k), kth_difference(x, y, n * m + 1 - k)
    return float(math.exp(low)), float(math.exp(high))


def kth_difference(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of all y[j] - x[i], both sorted, without forming the n*m differences."""
    low, high = y[0] - x[-1], y[-1] - x[0]
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if np.searchsorted(y, x + middle, side="right").sum() >= k:
            high = middle
        else:
            low = middle
    return float(high)


def rounds_bootstrap_ratio(base_rounds, new_rounds, confidence: float) -> tuple[float, float]:
    """Percentile bootstrap of median(new) / median(base), resampling whole rounds on each side independently."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    base_medians = pooled_medians(base_rounds, rng)
    new_medians = pooled_medians(new_rounds, rng)
    ratios = new_medians / base_medians
    tail = (1 - confidence) / 2
    return float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))


def pooled_medians(rounds, rng) -> np.ndarray:
    """The median of the pooled samples of BOOTSTRAP_RESAMPLES resamples of the rounds, drawn with replacement."""
    arrays = [np.asarray(r, dtype=float) for r in rounds]
    draws = np.sort(rng.integers(0, len(arrays), size=(BOOTSTRAP_RESAMPLES, len(arrays))), axis=1)
    cache: dict[tuple, float] = {}
    medians = np.empty(len(draws))
    for i, draw in enumerate(map(tuple, draws)):
        if draw not in cache:  # few distinct multisets when rounds are few
            cache[draw] = float(np.median(np.concatenate([arrays[j] for j in draw])))
        medians[i] = cache[draw]
    return medians
