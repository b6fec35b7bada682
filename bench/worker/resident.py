"""A resident worker: one case's backend, loaded and prepared once, measured in many short blocks on the runner's
command. `python -m bench.worker.resident --job JOB.json --result RESULT.json --control NAME`.

The worker prepares its case (export, compile, quantize, the first call and the warm-up) before any block, then
connects to the runner's socket NAME (an abstract Unix socket) and answers one JSON line per command:
- worker → runner, once: {"ready": true, "pid", "rss_mb", "call_ms"} (call_ms: the median warm-up call);
- runner → worker: {"block": N, "warm": W}: W untimed calls, then N timed ones between two canary readings, with
  the interference meter around them; the answer {"samples_ns", "canary_ns", "interference", "cpu_s"};
- runner → worker: {"finish": true}: the outputs checked against eager fp32 and the answer written to RESULT as
  a worker's envelope (bench.worker.answer), every block's samples together; then it exits.
Between blocks the runner stops the worker (SIGSTOP), so that its thread pools cannot spin on the CPUs another
worker is being timed on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import time

from bench.job import Job
from bench.worker.answer import answer
from bench.worker.case import measured_result, prepare_case, read_job, warm_up

CANARY_SIZE = 192
CANARY_REPEATS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker.resident")
    parser.add_argument("--control", required=True)
    args, job = read_job(parser, argv)
    return answer(args.result, lambda: serve(job, args.control))


def serve(job: Job, control: str) -> dict:
    from bench.measure.memory import rss_mb

    case = prepare_case(job)
    warm_ms = warm_up(case)
    canary = Canary()
    channel = Channel(control)
    channel.send({"ready": True, "pid": os.getpid(), "rss_mb": rss_mb(), "call_ms": call_estimate(warm_ms, case)})
    samples_ns, blocks = [], []
    while True:
        command = channel.receive()
        if command is None or command.get("finish"):
            break
        block = measure_block(case.backend.run, command["block"], command.get("warm", 0), canary)
        samples_ns += block["samples_ns"]
        blocks.append({k: v for k, v in block.items() if k != "samples_ns"})
        channel.send(block)
    result = measured_result(case, samples_ns, summarize(blocks))
    result["blocks"] = len(blocks)
    return result


def call_estimate(warm_ms: list[float], case) -> float:
    return statistics.median(warm_ms) if warm_ms else case.timings["first_call"]


def measure_block(call, calls: int, warm: int, canary: Canary) -> dict:
    from bench.measure.interference import assess, snapshot

    pinned = sorted(os.sched_getaffinity(0))
    for _ in range(warm):
        call()
    cpu_before = own_cpu_s()
    canary_before = canary.time()
    before = snapshot(pinned)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    interference = assess(before, snapshot(pinned))
    canary_after = canary.time()
    return {
        "samples_ns": samples,
        "canary_ns": [canary_before, canary_after],
        "interference": {"contaminated": interference.get("contaminated"), "reasons": interference.get("reasons")},
        "cpu_s": own_cpu_s() - cpu_before,
    }


CONTAMINATED_SHARE = 0.25
"""A contaminated block leaves its pairs out; the row is contaminated when more than this share of blocks were."""


def summarize(blocks: list[dict]) -> dict:
    """The row's interference entry, over its blocks."""
    dirty = [b["interference"] for b in blocks if (b.get("interference") or {}).get("contaminated")]
    reasons = list(dict.fromkeys(r for entry in dirty for r in entry.get("reasons") or []))
    contaminated = len(dirty) > CONTAMINATED_SHARE * len(blocks)
    return {"contaminated": contaminated, "reasons": reasons, "blocks": len(blocks), "contaminated_blocks": len(dirty)}


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Canary:
    """The peak probe's kernel, kept short: the median of a few fp32 matmuls, at the worker's own thread count. It
    reads the machine's speed next to every block; None where torch is missing."""

    def __init__(self):
        try:
            import torch

            self.a = torch.randn(CANARY_SIZE, CANARY_SIZE)
            self.b = torch.randn(CANARY_SIZE, CANARY_SIZE)
            self.mm = torch.mm
            self.mm(self.a, self.b)
        except Exception:
            self.mm = None

    def time(self) -> int | None:
        if self.mm is None:
            return None
        times = []
        for _ in range(CANARY_REPEATS):
            t0 = time.perf_counter_ns()
            self.mm(self.a, self.b)
            times.append(time.perf_counter_ns() - t0)
        return int(statistics.median(times))


class Channel:
    """JSON lines over the runner's abstract Unix socket."""

    def __init__(self, name: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("\0" + name)
        self.reader = self.sock.makefile("rb")

    def send(self, message: dict) -> None:
        self.sock.sendall((json.dumps(message) + "\n").encode())

    def receive(self) -> dict | None:
        line = self.reader.readline()
        return json.loads(line) if line else None


if __name__ == "__main__":
    raise SystemExit(main())
