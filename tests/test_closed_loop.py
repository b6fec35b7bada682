"""The closed-loop scenario: a case per number of users, the users' queue served first come first served by streams
(checked in-process, with calls of known length), and a real run whose figures obey Little's law."""

import json
import statistics
import struct
import threading
import time

import pytest

from bench.plan.matrix import dropped_combinations, expand
from bench.plan.suite import load_suite
from bench.results.folder import row_is_good
from bench.worker.resident import serve_users
from conftest import TINY_MODEL, bench_cli, two_cpus, write_suite

CLOSED = """\
name: closed
defaults:
  seq_lens: [16]
  threads: [1]
  streams: [2]
  scenario: closed-loop
  concurrency: [1, 4]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120, server_seconds: 2}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
"""
SPIN_MS = 5


def test_a_closed_loop_suite_makes_a_case_per_number_of_users(tmp_path):
    cases = expand(load_suite(write_suite(tmp_path, CLOSED))[0])
    assert sorted(c.concurrency for c in cases) == [1, 4]
    assert all(c.closed_loop and c.streams == 2 and "-x2-closed-loop-c" in c.case_id for c in cases)
    assert len({c.case_id for c in cases}) == 2


def test_a_closed_loop_suite_without_users_is_named_with_its_field(tmp_path):
    result = bench_cli("validate", write_suite(tmp_path, CLOSED.replace("  concurrency: [1, 4]\n", "")))
    assert result.returncode == 2
    assert ("defaults.concurrency: expected the users scenario closed-loop runs at once (or max_users_under), got"
            " nothing") in result.stderr


def test_users_on_another_scenario_are_said_to_be_ignored(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, CLOSED.replace("scenario: closed-loop", "scenario: offline")))
    assert all(not c.concurrency for c in expand(suite))
    assert any("concurrency [1, 4] applies to scenario closed-loop only" in n for n in dropped_combinations(suite))


def served_in_threads(tmp_path, streams: int, users: int, call_s: float, seconds: float) -> list[list[int]]:
    """serve_users run by `streams` threads at once (each its own open file, as each process has), calls sleeping."""
    state = tmp_path / "users.state"
    start = time.monotonic_ns() + 20_000_000
    state.write_bytes(struct.pack(f"<{users}q", *[start] * users))
    spec = {"users": users, "end_ns": start + round(seconds * 1e9), "state": str(state)}
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(serve_users(lambda: time.sleep(call_s), spec)))
               for _ in range(streams)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted((q for a in answers for q in a["queries"]), key=lambda q: q[2])


@pytest.mark.parametrize("streams, users", [(2, 5), (3, 1)])
def test_each_user_sends_when_answered_and_the_streams_serve_first_come_first_served(tmp_path, streams, users):
    queries = served_in_threads(tmp_path, streams, users, 0.004, 0.4)
    assert len(queries) > 20
    last_done = {}
    for user, sent, _, _ in sorted(queries, key=lambda q: q[1]):
        if user in last_done:
            assert sent == last_done[user]  # the next query goes the moment the last is answered
        last_done[user] = next(end for u, s, _, end in queries if u == user and s == sent)
    assert len(last_done) == users
    for earlier, later in zip(queries, queries[1:]):  # first sent, first served (streams taking turns 1 ms apart aside)
        assert later[1] >= earlier[1] or later[2] - earlier[2] < 1_000_000, (earlier, later)
    starts = [start for _, _, start, _ in queries]
    busy = max(sum(1 for _, _, s, e in queries if s <= t < e) for t in starts)
    assert busy <= min(streams, users)


@two_cpus
@pytest.mark.slow
def test_a_real_closed_loop_run_obeys_littles_law(tmp_path):
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, CLOSED), "--out", out, env={"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"})
    rows = {r["concurrency"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    clean_code = 0 if all(map(row_is_good, rows.values())) else 1
    assert result.returncode == clean_code, result.stdout + result.stderr
    assert set(rows) == {1, 4}
    for users, row in rows.items():
        assert row["status"] == "ok" and row["throughput"] is None and row["accuracy"]["passed"], row["reason"]
        entry = row["closed_loop"]
        [records] = entry["records"]
        assert entry["completed"] == len(records["done_ms"]) > 50 and set(records["user"]) == set(range(users))
        latency = [done - sent for sent, done in zip(records["sent_ms"], records["done_ms"])]
        assert min(latency) >= SPIN_MS and sorted(latency) == pytest.approx(sorted(row["samples_ms"]), abs=0.002)
        in_system = entry["completed_per_s"] * statistics.mean(latency) / 1000  # Little's law: users in the system
        assert in_system == pytest.approx(users, rel=0.15), (users, entry["completed_per_s"], statistics.mean(latency))
    one, four = rows[1]["closed_loop"], rows[4]["closed_loop"]
    assert four["completed_per_s"] > 1.5 * one["completed_per_s"]  # two streams serve four users at once
    assert max(w["p99"] for w in one["wait_ms"]) < SPIN_MS < max(w["p50"] for w in four["wait_ms"])  # 2 users a stream
    shown = bench_cli("show", out)
    assert shown.returncode == clean_code, shown.stdout + shown.stderr
    assert "closed loop: tiny  eager fp32 (main)  seq 16  batch 1" in shown.stdout and "fastest" not in shown.stdout
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Closed-loop latency" in markdown and "| 2 × 1 | 4 |" in markdown
    report = bench_cli("report", out, "--out", tmp_path / "report", "--format", "md")
    assert report.returncode == 0, report.stderr
    assert "## Closed-loop latency" in (tmp_path / "report" / "report.md").read_text()
