"""The measurement loop: nothing but the call and two clock reads per iteration."""

from __future__ import annotations

import time
from typing import Callable


def measure(
    call: Callable[[], object],
    *,
    min_iterations: int,
    min_seconds: float,
    max_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[int]:
    """Call until both min_iterations and min_seconds are reached, or max_seconds has passed; durations in ns.

    At least one iteration always runs. max_seconds wins over min_iterations: a case that is too slow is capped
    (and the stability warnings say so) rather than left running.
    """
    min_ns = int(min_seconds * 1e9)
    max_ns = int(max_seconds * 1e9)
    samples: list[int] = []
    append = samples.append
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        if elapsed >= max_ns or (elapsed >= min_ns and len(samples) >= min_iterations):
            return samples


def timed(call: Callable[[], object], clock: Callable[[], int] = time.perf_counter_ns) -> tuple[object, float]:
    """Run once; return the result and the duration in ms."""
    t0 = clock()
    result = call()
    return result, (clock() - t0) / 1e6
