"""What a queue of identical servers should serve under a latency budget: the first guess of bench tune's first rate
search (bench.run.tune.first_guess), so that two or three probes bracket the answer instead of a doubling search's
five to ten."""

from __future__ import annotations

import math


def erlang_c(servers: int, offered: float) -> float:
    """The chance that a query waits in an M/M/c queue (Erlang's C formula), `offered` = rate × service time."""
    term, below = 1.0, 0.0
    for k in range(servers):
        below += term
        term *= offered / (k + 1)
    waiting = term * servers / (servers - offered)
    return waiting / (below + waiting)


def modelled_rate(servers: int, service_ms: float, budget_ms: float, tail: float = 0.01) -> float | None:
    """The highest rate at which a queue of `servers` with calls of `service_ms` keeps its (1 - tail) quantile of
    latency under `budget_ms`: the call plus the M/M/c wait's quantile, halved for calls of a fixed length (an M/D/c
    queue waits about half as long); None when the call alone exceeds the budget."""
    if service_ms >= budget_ms:
        return None
    low, high = 0.0, 1.0  # utilisation
    for _ in range(40):
        load = (low + high) / 2
        offered = load * servers
        spare_per_ms = servers * (1 - load) / service_ms
        waits = erlang_c(servers, offered)
        wait_ms = max(0.0, math.log(waits / tail) / spare_per_ms) / 2 if waits > tail else 0.0
        low, high = (load, high) if service_ms + wait_ms <= budget_ms else (low, load)
    return low * servers * 1000.0 / service_ms
