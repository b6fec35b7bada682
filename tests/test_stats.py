import math
import statistics

import numpy as np
import pytest

from bench.measure.stats import percentile, stability_warnings, summarize, throughput

SAMPLES = [12.0, 10.0, 11.0, 13.0, 10.5, 30.0, 10.2, 10.8, 11.5, 10.1]


def test_summary_matches_numpy_and_statistics():
    s = summarize(SAMPLES)
    arr = np.array(SAMPLES)
    assert s["mean"] == pytest.approx(arr.mean())
    assert s["median"] == pytest.approx(np.median(arr))
    for q in (90, 95, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(arr, q))
    assert s["std"] == pytest.approx(statistics.stdev(SAMPLES))
    assert s["cv"] == pytest.approx(statistics.stdev(SAMPLES) / arr.mean())
    assert s["iqr"] == pytest.approx(np.percentile(arr, 75) - np.percentile(arr, 25))
    assert (s["min"], s["max"]) == (10.0, 30.0)


def test_known_small_cases():
    assert summarize([5.0]) == {
        "mean": 5.0, "median": 5.0, "p90": 5.0, "p95": 5.0, "p99": 5.0,
        "min": 5.0, "max": 5.0, "std": 0.0, "cv": 0.0, "iqr": 0.0,
    }  # fmt: skip
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)


def test_throughput_counts_samples_and_real_tokens():
    t = throughput(median_ms=250.0, batch_size=2, tokens=200)
    assert t == {"samples_per_s": 8.0, "tokens_per_s": 800.0}


def test_warnings_for_spread_short_samples_and_capped_runs():
    steady = summarize([20.0, 20.1, 19.9, 20.0])
    assert stability_warnings(steady, 4, 4) == []
    noisy = summarize(SAMPLES)
    (warning,) = stability_warnings(noisy, 10, 10)
    assert warning.startswith(f"unstable: the standard deviation is {math.floor(noisy['cv'] * 100 + 0.5)}% of the mean")
    short = summarize([0.5, 0.5, 0.5])
    assert stability_warnings(short, 3, 3)[0].startswith("short samples")
    assert stability_warnings(steady, 4, 10)[0].startswith("capped: 4 of 10 iterations")
