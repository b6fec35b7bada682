"""The measurement loop: nothing but the call and two clock reads per iteration."""

from __future__ import annotations

import time
from typing import Callable

from bench.measure.intervals import minimum_samples, relative_half_width

CHECK_SHARE = 10
"""With a target, the interval is checked again once the samples have grown by a tenth (at least one more)."""


def measure(
    call: Callable[[], object],
    *,
    min_iterations: int,
    min_seconds: float,
    max_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
    target_ci: float | None = None,
    cycle: int = 1,
) -> list[int]:
    """Call until both min_iterations and min_seconds are reached, or max_seconds has passed; durations in ns.

    At least one iteration always runs. max_seconds wins over min_iterations: a case that is too slow is capped
    (and the stability warnings say so) rather than left running.

    With target_ci, the loop goes on past the minimums until the median's 95% interval is within ±target_ci of it.
    That check (a sort and two ranks) runs between timed calls, on a geometric schedule, so its total cost stays a
    small multiple of one sort of the final samples; max_seconds still ends the loop.

    With `cycle` > 1 (a pipeline going round its texts), the loop ends only on a whole cycle: every text counts
    equally in the median. max_seconds then ends the loop at the end of the cycle it falls in.
    """
    min_ns = int(min_seconds * 1e9)
    max_ns = int(max_seconds * 1e9)
    next_check = max(min_iterations, minimum_samples()) if target_ci else min_iterations
    samples: list[int] = []
    append = samples.append
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        if len(samples) % cycle:
            continue
        if elapsed >= max_ns:
            return samples
        if elapsed >= min_ns and len(samples) >= next_check:
            if not target_ci or firm(samples, target_ci):
                return samples
            next_check = len(samples) + max(1, len(samples) // CHECK_SHARE)


def firm(samples: list[int], target_ci: float) -> bool:
    """Whether the median's 95% interval is within ±target_ci of it."""
    width = relative_half_width(sorted(samples))
    return width is not None and width <= target_ci


def timed(call: Callable[[], object], clock: Callable[[], int] = time.perf_counter_ns) -> tuple[object, float]:
    """Run once; return the result and the duration in ms."""
    t0 = clock()
    result = call()
    return result, (clock() - t0) / 1e6
