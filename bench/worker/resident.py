"""A resident worker: one case's backend, loaded and prepared once, measured in many short blocks on the runner's
command. `python -m bench.worker.resident --job JOB.json --result RESULT.json --control NAME`.

The worker prepares its case (export, compile, quantize, the first call and the warm-up) before any block, then
connects to the runner's socket NAME (an abstract Unix socket) and answers one JSON line per command:
- worker → runner, once: {"ready": true, "pid", "rss_mb", "call_ms"} (call_ms: the median warm-up call);
- runner → worker: {"block": N, "warm": W, "relayout": R}: with R, the heap's layout drawn afresh
  (bench.worker.heap_layout); W untimed calls, then N timed ones between two canary readings, with the interference
  meter around them; the answer {"samples_ns", "canary_ns", "interference", "cpu_s"};
- runner → worker: {"window": {"start_ns", "end_ns"}}: an offline window (measure_window); the answer
  {"calls_ns", "samples_ns", "interference", "cpu_s"};
- runner → worker: {"serve": {...}} and {"users": {...}}: a server schedule (serve_queries) or closed-loop users
  (serve_users) served with the other streams; the answer {"queries", "interference", "cpu_s"}, each query of a
  generation case with its tokens' times;
- runner → worker: {"check": true}: one more call's outputs checked against eager fp32, the answer {"accuracy"}
  (bench tune asks before it compares configurations);
- runner → worker: {"finish": true}: the outputs checked against eager fp32 and the answer written to RESULT as
  a worker's envelope (bench.worker.answer), every block's samples together; then it exits.
Between blocks the runner stops the worker (SIGSTOP), so that its thread pools cannot spin on the CPUs another
worker is being timed on.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import socket
import statistics
import struct
import time
from contextlib import contextmanager

from bench.job import Job
from bench.worker.answer import answer
from bench.worker.case import prepare_case, query_stall, read_job
from bench.worker.heap_layout import HeapLayout

CANARY_SIZE = 192
CANARY_REPEATS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker.resident")
    parser.add_argument("--control", required=True)
    args, job = read_job(parser, argv)
    return answer(args.result, lambda: serve(job, args.control))


def serve(job: Job, control: str) -> dict:
    from bench.measure.memory import rss_mb
    from bench.worker.workloads import resident_calls

    case = prepare_case(job)
    calls = resident_calls(case)
    call = calls.call
    canary = Canary()
    layout = HeapLayout()
    channel = Channel(control)
    channel.send({"ready": True, "pid": os.getpid(), "rss_mb": rss_mb(), "call_ms": call_estimate(calls.warm_ms, case)})
    samples_ns, blocks = [], []
    while True:
        command = channel.receive()
        if command is None or command.get("finish"):
            break
        if "serve" in command:
            stall = query_stall(job.case.case_id)
            served = in_streams(lambda c: serve_queries(c, command["serve"], stall, calls.token_times, calls.batch_call),
                                call, calls)  # fmt: skip
            samples_ns += [end - start for start, end in sorted({(q[1], q[2]) for q in served["queries"]})]
            blocks.append({k: v for k, v in served.items() if k != "queries"})
            channel.send(served)
            continue
        if command.get("check"):
            channel.send({"accuracy": calls.accuracy()})
            continue
        if "users" in command:
            served = in_streams(lambda c: serve_users(c, command["users"], calls.token_times), call, calls)
            samples_ns += [q[3] - q[2] for q in served["queries"]]
            blocks.append({k: v for k, v in served.items() if k != "queries"})
            channel.send(served)
            continue
        if "window" in command:
            start_ns, end_ns = command["window"]["start_ns"], command["window"]["end_ns"]
            window = in_streams(lambda c: measure_window(c, start_ns, end_ns), call, calls)
            samples_ns += window["samples_ns"]
            blocks.append({k: v for k, v in window.items() if k not in ("samples_ns", "calls_ns")})
            channel.send(window)
            continue
        if command.get("relayout"):
            layout.redraw()
        block = measure_block(call, command["block"], command.get("warm", 0), canary)
        samples_ns += block["samples_ns"]
        blocks.append({k: v for k, v in block.items() if k != "samples_ns"})
        channel.send(block)
    if not samples_ns:  # the load never reached this stream (more streams than closed-loop users): one call of its own
        samples_ns = measure_block(call, 1, 0, canary)["samples_ns"]
    result = calls.result(samples_ns, summarize(blocks))
    result["blocks"] = len(blocks)
    return result


def in_streams(serve_with, call, calls) -> dict:
    """`serve_with(call)`, or where the backend has streams of its own, `serve_with` on each stream's call at once, a
    thread each (the infer calls release the GIL), their answers as one: every query and call together, the
    interference meter's first contaminated verdict (else the first), the process's CPU time over the longest."""
    if not calls.stream_calls:
        return serve_with(call)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls.stream_calls)) as pool:
        answers = list(pool.map(serve_with, calls.stream_calls))
    merged = {key: [v for a in answers for v in a[key]] for key, value in answers[0].items() if isinstance(value, list)}
    dirty = [a for a in answers if (a.get("interference") or {}).get("contaminated")]
    return {**merged, "interference": (dirty or answers)[0]["interference"], "cpu_s": max(a["cpu_s"] for a in answers),
            "streams_in_process": len(answers)}  # fmt: skip


def call_estimate(warm_ms: list[float], case) -> float:
    return statistics.median(warm_ms) if warm_ms else case.timings["first_call"]


@contextmanager
def metered(steal_contaminates: bool = True):
    """Around a measured stretch: a dict that gets, when the stretch ends, the interference meter's verdict on the
    worker's pinned CPUs and the worker's own CPU time (the `interference` and `cpu_s` of every answer). Under load
    steal time is noted, not contaminating (bench.measure.interference.assess)."""
    from bench.measure.interference import assess, snapshot

    pinned = sorted(os.sched_getaffinity(0))
    cpu_before = own_cpu_s()
    before = snapshot(pinned)
    report: dict = {}
    yield report
    found = assess(before, snapshot(pinned), steal_contaminates=steal_contaminates)
    report["interference"] = {
        "contaminated": found.get("contaminated"),
        "reasons": found.get("reasons"),
        "steal": (found.get("shares") or {}).get("steal"),
    }
    report["cpu_s"] = own_cpu_s() - cpu_before


def measure_block(call, calls: int, warm: int, canary: Canary) -> dict:
    for _ in range(warm):
        call()
    canary_before = canary.time()
    samples = []
    with metered() as report:
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - t0)
    return {"samples_ns": samples, "canary_ns": [canary_before, canary.time()], **report}


def measure_window(call, start_ns: int, end_ns: int) -> dict:
    """An offline window (bench.run.offline): calls back to back from now (the ramp) until one ends past `end_ns`,
    each call's [start, end] on CLOCK_MONOTONIC, which every stream of the machine shares. The calls that lie
    wholly in [start_ns, end_ns] are also the row's samples (its latency under load)."""
    calls = []
    with metered(steal_contaminates=False) as report:
        while True:
            t0 = time.monotonic_ns()
            call()
            t1 = time.monotonic_ns()
            calls.append([t0, t1])
            if t1 >= end_ns:
                break
    return {
        "calls_ns": [c for c in calls if c[1] > start_ns],
        "samples_ns": [c[1] - c[0] for c in calls if c[0] >= start_ns and c[1] <= end_ns],
        **report,
    }


def serve_queries(call, schedule: dict, stall: tuple[int, float] | None = None, token_times=None,
                  batch_call=None) -> dict:  # fmt: skip
    """The server scenario (bench.run.server): whenever this stream is free it takes the next query from the counter
    all streams share, waits for the query's scheduled time and calls. With identical streams that is one queue
    served first come first served by whichever stream frees first, and nothing generates load while they serve.
    Each query's [index, start, end] on CLOCK_MONOTONIC; queries taken past `deadline_ns` are left unserved.
    `stall`: (query index, seconds) to sleep after dispatching that query (a test hook, bench.worker.case);
    `token_times`: when the last call's tokens came, ns before its end (a generation case's): each query's record
    then ends with its tokens' times on CLOCK_MONOTONIC. `batch_call`: see serve_batches."""
    if schedule.get("max_batch"):
        return serve_batches(call, schedule, stall, batch_call, token_times)
    start_ns, offsets, deadline_ns = schedule["start_ns"], schedule["offsets_ns"], schedule["deadline_ns"]
    served = []
    with metered(steal_contaminates=False) as report, SharedFile(schedule["counter"]) as counter:
        while True:
            with counter.held():
                index = int.from_bytes(counter.read(8), "little")
                counter.write((index + 1).to_bytes(8, "little"))
            if index >= len(offsets) or time.monotonic_ns() >= deadline_ns:
                break
            wait_until(start_ns + offsets[index])
            t0 = time.monotonic_ns()
            if stall and stall[0] == index:
                time.sleep(stall[1])
            call()
            t1 = time.monotonic_ns()
            served.append([index, t0, t1, *([[t1 - ns for ns in token_times()]] if token_times else [])])
    return {"queries": served, **report}


def serve_batches(call, schedule: dict, stall: tuple[int, float] | None = None, batch_call=None,
                  token_times=None) -> dict:  # fmt: skip
    """serve_queries with dynamic batching: one stream at a time gathers (a lock file beside the counter, so the
    streams act as one batcher handing batches to whichever stream is free, as Triton's dynamic batcher does). It
    takes the next query, waits until `max_batch` queries have arrived or `max_wait_ns` has passed since the first's
    scheduled time, takes every query arrived by then (up to `max_batch`), and calls once: the call runs the whole
    prepared batch, padded, or with `batch_call` (a pipeline's or a generator's), `batch_call(queries taken)` on just
    those queries. Each query's [index, start, end] (with `token_times`, its call's tokens' times, as serve_queries
    gives them); "batches" the number of queries in each call."""
    start_ns, offsets, deadline_ns = schedule["start_ns"], schedule["offsets_ns"], schedule["deadline_ns"]
    max_batch, max_wait_ns = schedule["max_batch"], schedule["max_wait_ns"]
    served, batches = [], []
    with metered(steal_contaminates=False) as report, SharedFile(schedule["counter"]) as counter, \
            SharedFile(schedule["counter"] + ".gather", create=True) as gather:  # fmt: skip
        while True:
            with gather.held():
                with counter.held():
                    first = int.from_bytes(counter.read(8), "little")
                if first >= len(offsets) or time.monotonic_ns() >= deadline_ns:
                    break
                last = min(first + max_batch, len(offsets)) - 1
                full = last - first + 1 == max_batch  # else the schedule ends first: as a server, wait the whole wait
                due = start_ns + offsets[first] + max_wait_ns
                wait_until(min(due, start_ns + offsets[last]) if full else due)
                now = time.monotonic_ns()
                taken = [i for i in range(first, last + 1) if start_ns + offsets[i] <= now]
                with counter.held():
                    counter.write((first + len(taken)).to_bytes(8, "little"))
            t0 = time.monotonic_ns()
            if stall and stall[0] in taken:
                time.sleep(stall[1])
            batch_call(taken) if batch_call else call()
            t1 = time.monotonic_ns()
            tokens = [[t1 - ns for ns in token_times()]] if token_times else []
            served += [[index, t0, t1, *tokens] for index in taken]
            batches.append(len(taken))
    return {"queries": served, "batches": batches, **report}


IN_FLIGHT = 2**63 - 1
"""A closed-loop user's send time while its query is being served."""


def serve_users(call, spec: dict, token_times=None) -> dict:
    """The closed-loop scenario (bench.run.closed_loop): `users` users share the streams, each sending its next query
    the moment its last is answered (their send times in a file the streams share, under a lock). Whenever this
    stream is free it takes the query sent first and calls: one queue, first come first served. A stream that finds
    every user waiting for an answer has nothing left to do (more streams than users) and ends; queries sent at or
    after `end_ns` are not taken. Each query's [user, sent, start, end] on CLOCK_MONOTONIC, and with `token_times`
    (serve_queries) its tokens' times."""
    users, end_ns = spec["users"], spec["end_ns"]
    served = []
    with metered(steal_contaminates=False) as report, SharedFile(spec["state"]) as state:
        while True:
            with state.held():
                sent_at = list(struct.unpack(f"<{users}q", state.read(8 * users)))
                sent = min(sent_at)
                user = sent_at.index(sent)
                if sent == IN_FLIGHT or sent >= end_ns:
                    break
                state.write(struct.pack("<q", IN_FLIGHT), at=8 * user)
            wait_until(sent)  # only the first queries, sent at the start
            t0 = time.monotonic_ns()
            call()
            t1 = time.monotonic_ns()
            with state.held():
                state.write(struct.pack("<q", t1), at=8 * user)
            served.append([user, sent, t0, t1, *([[t1 - ns for ns in token_times()]] if token_times else [])])
    return {"queries": served, **report}


class SharedFile:
    """A small file the streams share, read and written whole under an exclusive lock (`with f.held(): ...`)."""

    def __init__(self, path: str, create: bool = False):
        self.path, self.flags = path, os.O_RDWR | (os.O_CREAT if create else 0)

    def __enter__(self):
        self.fd = os.open(self.path, self.flags, 0o600)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    @contextmanager
    def held(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read(self, size: int) -> bytes:
        return os.pread(self.fd, size, 0)

    def write(self, data: bytes, at: int = 0) -> None:
        os.pwrite(self.fd, data, at)


SPIN_BEFORE_NS = 200_000
"""The last 0.2 ms before a query's time are waited for awake: a sleep can overrun by about that much."""


def wait_until(due_ns: int) -> None:
    left = due_ns - time.monotonic_ns()
    if left > SPIN_BEFORE_NS:
        time.sleep((left - SPIN_BEFORE_NS) / 1e9)
    while time.monotonic_ns() < due_ns:
        pass


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
