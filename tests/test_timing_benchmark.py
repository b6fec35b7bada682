"""The timing loop's own cost per iteration on a no-op call.

Run with `pytest tests/test_timing_benchmark.py --benchmark-enable` (or `nox -s benchmarks`); the figure is
printed in the benchmark table as the mean divided by ITERATIONS, and stored as extra_info. The default test run
executes it once as a plain test, with no timing assertion.
"""

from bench.measure.timing import measure

ITERATIONS = 20_000


def noop():
    return None


def loop():
    return measure(noop, min_iterations=ITERATIONS, min_seconds=0, max_seconds=600)


def test_timing_loop_overhead_per_iteration(benchmark):
    samples = benchmark(loop)
    assert len(samples) == ITERATIONS
    assert all(s >= 0 for s in samples)
    if benchmark.stats is not None:
        per_iteration_us = benchmark.stats.stats.mean / ITERATIONS * 1e6
        benchmark.extra_info["loop_overhead_us_per_iteration"] = per_iteration_us
        print(f"\ntiming loop overhead: {per_iteration_us:.3f} µs per iteration")
