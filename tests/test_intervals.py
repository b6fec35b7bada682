"""The median's confidence interval against scipy, and the rounds bootstrap against what it is for."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binom, quantile_test

from bench.measure.intervals import (
    ORDER_STATISTICS,
    ROUNDS_BOOTSTRAP,
    median_interval,
    median_ranks,
    minimum_samples,
    relative_half_width,
)
from conftest import PROJECT


def scipy_ranks(n, confidence):
    """1-based ranks of the order statistics scipy's quantile_test puts at the ends of its interval."""
    tail = (1 - confidence) / 2
    low = int(binom.ppf(tail, n, 0.5))
    return None if low < 1 else (low, int(binom.isf(tail, n, 0.5)) + 1)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.975, 0.99])
def test_ranks_match_scipys_binomial_for_every_small_and_some_large_counts(confidence):
    for n in [*range(1, 1500), 4999, 10_007, 50_000, 200_001]:
        assert median_ranks(n, confidence) == scipy_ranks(n, confidence), n


def test_interval_matches_scipy_quantile_test_on_known_samples():
    rng = np.random.default_rng(7)
    for n in (6, 7, 10, 11, 20, 37, 100, 501, 2000):
        x = rng.lognormal(mean=2.0, sigma=0.3, size=n)
        expected = quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
        got = median_interval(list(x))
        assert got["median_ci"] == [expected.low, expected.high]
        assert got["median_ci_method"] == ORDER_STATISTICS and got["median_ci_n"] == n


def test_too_few_samples_have_no_interval_and_say_so():
    smallest = next(n for n in range(1, 20) if not np.isnan(quantile_test(np.arange(n), q=1).confidence_interval().low))
    assert minimum_samples() == smallest
    few = median_interval([1.0] * (smallest - 1))
    assert few["median_ci"] is None and few["median_ci_method"] is None
    assert few["median_ci_reason"] == f"{smallest - 1} samples: a 95% interval of the median needs at least {smallest}"
    assert relative_half_width(sorted([1.0, 2.0, 3.0])) is None


def test_relative_half_width_is_the_farther_end_over_the_median():
    values = [9.0 + 0.1 * i for i in range(21)]  # median 10.0; ranks 6 and 16 of 21 at 95%: 9.5 and 10.5
    assert median_ranks(21) == (6, 16)
    assert median_interval(values)["median_ci"] == pytest.approx([9.5, 10.5])
    assert relative_half_width(values) == pytest.approx(0.05)
    skewed = [*values[:16], 12.0, 13.0, 14.0, 15.0, 16.0]  # the 16th value stays 10.5
    assert relative_half_width(sorted(skewed)) == pytest.approx(0.05)


def rounds_like_the_machine(rng, count, shift_sd, within_sd=0.002, per_round=20):
    """Rounds that each settle on their own level (fresh workers), around a true median of 1."""
    return [1 + rng.normal(0, shift_sd) + rng.normal(0, within_sd, per_round) for _ in range(count)]


def test_the_rounds_bootstrap_covers_the_spread_between_rounds_where_order_statistics_do_not():
    rng = np.random.default_rng(3)
    covered = {ROUNDS_BOOTSTRAP: 0, ORDER_STATISTICS: 0}
    trials = 60
    for _ in range(trials):
        rounds = rounds_like_the_machine(rng, count=6, shift_sd=0.05)
        pooled = np.concatenate(rounds)
        with_rounds, without = median_interval(pooled, rounds), median_interval(pooled)
        assert with_rounds["median_ci_method"] == ROUNDS_BOOTSTRAP
        low, high = with_rounds["median_ci"]
        assert low <= without["median_ci"][0] and without["median_ci"][1] <= high  # never narrower
        covered[ROUNDS_BOOTSTRAP] += low <= 1 <= high
        covered[ORDER_STATISTICS] += without["median_ci"][0] <= 1 <= without["median_ci"][1]
    assert covered[ROUNDS_BOOTSTRAP] / trials >= 0.8
    assert covered[ORDER_STATISTICS] / trials <= 0.5


def test_one_round_or_rounds_that_agree_give_the_order_statistic_interval():
    rng = np.random.default_rng(5)
    samples = list(1 + rng.normal(0, 0.01, 30))
    assert median_interval(samples, [samples])["median_ci_method"] == ORDER_STATISTICS
    same = [samples[:15], samples[15:]]
    assert median_interval(samples, same)["median_ci"] == pytest.approx(median_interval(samples)["median_ci"], rel=0.01)


def test_measuring_code_does_not_import_scipy():
    """The worker runs the interval between timed calls and in environments that may lack scipy."""
    code = "import sys, bench.measure.timing, bench.measure.stats, bench.measure.intervals; print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT, check=True)
    assert result.stdout.strip() == "False"
