"""The matmul peak probe's child: `python -m bench.worker.peak --threads N --seconds S --result RESULT.json`.

Pinned by its parent (bench.run.peak) like a worker, it times torch matrix products (fp32 and bf16 `torch.mm`, int8
`torch._int_mm`) at a few sizes and keeps the best rate of each precision, each rate from the median call: the
statistic the cases are reported with, so a case's % of peak compares like with like. A size whose median call
takes longer than the time given per point is the last tried: an emulated precision costs a fraction of a second,
not a minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.worker.answer import answer
from bench.worker.case import START_VAR

PRECISIONS = ("fp32", "bf16", "int8")
SIZES = (512, 1024)
SECONDS_PER_POINT = 0.1
MIN_CALLS = 3


def median_rate(call, operations: float, seconds: float, clock=time.perf_counter) -> tuple[float, int, float]:
    """(G operations per second of the median call, number of calls, the median call's seconds) over about
    `seconds` of calls."""
    call()
    durations = []
    deadline = clock() + seconds
    while len(durations) < MIN_CALLS or clock() < deadline:
        start = clock()
        call()
        durations.append(clock() - start)
    median = statistics.median(durations)
    return operations / median / 1e9, len(durations), median


def kernel(torch, precision: str, n: int):
    generator = torch.Generator().manual_seed(0)
    if precision == "int8":
        a, b = (torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator) for _ in range(2))
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
    return lambda: torch.mm(a, b)


def probe(threads: int, seconds: float = SECONDS_PER_POINT, precisions=PRECISIONS) -> dict:
    """{"gflops": {precision: best}, "sizes": {...}, "errors": {...}, "threads", "cpus", "torch": version}."""
    import torch

    torch.set_num_threads(threads)
    out = {"threads": torch.get_num_threads(), "cpus": sorted(os.sched_getaffinity(0)), "torch": torch.__version__}
    out["start"] = os.environ.get(START_VAR, "cold")
    out.update(gflops={}, sizes={}, errors={})
    for precision in precisions:
        for n in SIZES:
            try:
                rate, _, call_seconds = median_rate(kernel(torch, precision, n), 2.0 * n**3, seconds)
            except (RuntimeError, NotImplementedError) as exc:  # an operation this torch or CPU lacks
                out["errors"][precision] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                break
            if rate > out["gflops"].get(precision, 0.0):
                out["gflops"][precision], out["sizes"][precision] = rate, n
            if call_seconds > seconds:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker.peak", description="the matmul probe (child side)")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_POINT)
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated, of fp32, bf16, int8")
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: expected some of {', '.join(PRECISIONS)}, got {', '.join(unknown)}")
    return answer(args.result, lambda: probe(args.threads, args.seconds, precisions))


if __name__ == "__main__":
    raise SystemExit(main())
