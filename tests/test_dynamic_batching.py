"""Dynamic batching in the server scenario: each query one sample, the streams acting as one batcher (checked with
threads as streams, whose calls take a known time), the suite field, and a real run where batching keeps up with a
rate one query per call cannot."""

import json
import statistics
import threading
import time

import pytest

from bench.plan.matrix import dropped_combinations, expand
from bench.plan.suite import load_suite
from bench.results.folder import row_is_good
from bench.worker.resident import serve_batches
from conftest import TINY_MODEL, bench_cli, two_cpus, write_suite

MS = 1_000_000


def batched_in_threads(tmp_path, streams, gap_ms, call_ms, max_batch, max_wait_ms, count):
    """`streams` threads serving `count` queries `gap_ms` apart with calls of `call_ms`: (queries, batch sizes,
    start_ns, offsets)."""
    counter = tmp_path / "queries.counter"
    counter.write_bytes(bytes(8))
    offsets = [round(i * gap_ms * MS) for i in range(count)]
    start_ns = time.monotonic_ns() + 20 * MS
    schedule = {"start_ns": start_ns, "offsets_ns": offsets, "deadline_ns": start_ns + 60_000 * MS,
                "counter": str(counter), "max_batch": max_batch, "max_wait_ns": round(max_wait_ms * MS)}  # fmt: skip
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(serve_batches(lambda: time.sleep(call_ms / 1000), schedule)))
               for _ in range(streams)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queries = sorted((q for a in answers for q in a["queries"]), key=lambda q: q[0])
    return queries, [b for a in answers for b in a["batches"]], start_ns, offsets


def test_under_light_load_each_query_waits_at_most_the_wait_and_runs_alone(tmp_path):
    """A query every 20 ms, 2 ms calls, a 4 ms wait: no second query arrives in time, so every batch holds one, and
    each starts once the wait after its query's time is over: a sleep overruns by a millisecond or so, now and then
    (the VM) by a few, and never by the 16 ms until the next query's time."""
    queries, batches, start_ns, offsets = batched_in_threads(tmp_path, 1, 20, 2, 4, 4, 40)
    assert [q[0] for q in queries] == list(range(40)) and batches == [1] * 40
    waits = [(begin - start_ns - offsets[index]) / MS for index, begin, _ in queries]
    assert all(4 <= waited < 12 for waited in waits), waits
    assert statistics.median(waits) < 5.5, waits


def test_under_heavy_load_the_streams_fill_batches_in_arrival_order_and_keep_up(tmp_path):
    """A query every millisecond against two streams whose calls take 6 ms: one query per call would serve 333 a
    second of the 1000 offered; batches of 4 serve 1333, so the queue stays short. One stream gathers at a time, so
    batches are consecutive queries in order, no query runs twice, and never more than two calls run at once."""
    queries, batches, start_ns, offsets = batched_in_threads(tmp_path, 2, 1, 6, 4, 3, 400)
    assert [q[0] for q in queries] == list(range(400)) and sum(batches) == 400
    assert max(batches) == 4 and batches.count(4) >= 0.8 * len(batches), batches
    calls = sorted({(begin, end) for _, begin, end in queries})
    assert max(sum(1 for b, e in calls if b <= t < e) for t, _ in calls) <= 2
    for (b1, e1), (b2, e2) in zip(calls, calls[1:]):
        first_of = {(b, e): min(i for i, bb, ee in queries if (bb, ee) == (b, e)) for b, e in ((b1, e1), (b2, e2))}
        assert first_of[(b1, e1)] < first_of[(b2, e2)]  # started in arrival order
    for index, begin, _ in queries:
        assert begin >= start_ns + offsets[index]  # a query never runs before its time
    latest = max((end - start_ns - offsets[index]) / MS for index, _, end in queries)
    assert latest < 60, latest  # kept up: no query waited long (unbatched, the last would wait about 800 ms)


BATCHING = """\
name: batching
defaults:
  seq_lens: [16]
  threads: [1]
  streams: [1]
  scenario: server
  rates: [300]
  p99_ms: 50
  arrivals: constant
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120, server_seconds: 3}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
  - name: eager-batched
    type: pytorch
    batch_sizes: [4]
    dynamic_batching: {max_wait_ms: 4}
"""
SPIN_MS = 5
"""Each call spins this long whatever its batch, on top of bert-tiny's 1-3 ms: one stream serves about 150 calls a
second, so 300 queries a second need batches of two or more."""


def test_a_batching_suite_makes_a_server_case_that_batches_and_the_field_is_checked(tmp_path):
    cases = {c.backend: c for c in expand(load_suite(write_suite(tmp_path, BATCHING))[0])}
    assert cases["eager-batched"].batching == {"max_wait_ms": 4.0} and cases["eager-batched"].batch_size == 4
    assert cases["eager"].batching == {} and "-db4-" in cases["eager-batched"].case_id
    assert "-db" not in cases["eager"].case_id
    offline = BATCHING.replace("scenario: server", "scenario: offline")
    assert "dynamic_batching applies to scenario server only" in " ".join(dropped_combinations(load_suite(write_suite(tmp_path, offline))[0]))
    result = bench_cli("validate", write_suite(tmp_path, BATCHING.replace("max_wait_ms: 4", "max_wait_ms: -1")))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "backends[1].dynamic_batching.max_wait_ms" in result.stderr and "greater than or equal to 0" in result.stderr


@two_cpus
@pytest.mark.slow
def test_a_real_server_run_keeps_up_by_batching_where_one_query_per_call_falls_behind(tmp_path):
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, BATCHING), "--out", out, "--no-peak",
                       env={"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"})  # fmt: skip
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert result.returncode == (0 if all(map(row_is_good, rows.values())) else 1), result.stderr
    single, batched = rows["eager"]["server"], rows["eager-batched"]["server"]
    assert rows["eager-batched"]["status"] == "ok" and rows["eager-batched"]["accuracy"]["passed"]
    assert batched["batching"]["max_batch"] == 4 and batched["batching"]["padded"] is True
    assert 1.5 <= batched["batching"]["mean_batch"] <= 4, batched["batching"]
    assert batched["achieved_per_s"] >= 0.9 * 300 and batched["pooled_latency_ms"]["p99"] < 50, batched
    assert single["achieved_per_s"] < 0.7 * 300 and single["validity"]["result"] == "INVALID", single
    assert "≤4 dynamic (wait 4 ms, padded)" in result.stdout
