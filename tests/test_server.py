"""The server scenario: a case per offered rate, arrival schedules, latency from the scheduled time, LoadGen's
early-stopping rule (checked by simulation against a known truth, with the level drift these VMs show), and a real
run whose streams' capacity is known (a fixed spin per call dominates it)."""

import json
import math
import random

import pytest

from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from bench.results.folder import row_is_good
from bench.results.server import early_stopping_passes, queries_needed, validity
from bench.run.launch import group_running
from bench.run.server import arrival_offsets, latencies_ms, queue_depth
from conftest import TINY_MODEL, bench_cli, two_cpus, write_suite

SERVER = """\
name: server
defaults:
  seq_lens: [16]
  threads: [1]
  streams: [2]
  scenario: server
  rates: [40, 600]
  p99_ms: 50
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120, server_seconds: 3}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
"""
SPIN_MS = 5
"""Each call spins this long on top of bert-tiny's own 1-3 ms: two streams serve about 250 queries a second."""


def test_a_server_suite_makes_a_case_per_rate_with_its_arrivals_and_bound(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, SERVER))
    cases = expand(suite)
    assert sorted(c.rate for c in cases) == [40.0, 600.0]
    assert all(c.server and c.arrivals == "poisson" and c.p99_ms == 50 for c in cases)
    assert all(f"-x2-server-r{c.rate:g}-" in c.case_id for c in cases)
    looser = expand(load_suite(write_suite(tmp_path, SERVER.replace("p99_ms: 50", "p99_ms: 80")))[0])
    assert {c.case_id for c in looser} == {c.case_id for c in cases}  # the bound judges; it does not measure


def test_a_server_suite_without_rates_is_named_with_its_field(tmp_path):
    result = bench_cli("validate", write_suite(tmp_path, SERVER.replace("  rates: [40, 600]\n", "")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "defaults.rates: expected the queries per second scenario server offers" in result.stderr
    bad = bench_cli("validate", write_suite(tmp_path, SERVER.replace("rates: [40, 600]", "rates: [0]")))
    assert bad.returncode == 2 and "defaults.rates: expected queries per second above 0" in bad.stderr


def test_arrivals_are_seeded_poisson_or_constant():
    offsets = arrival_offsets(200.0, "poisson", 20.0, random.Random("a"))
    gaps = [(b - a) / 1e9 for a, b in zip([0, *offsets], offsets)]
    assert abs(len(offsets) / 20.0 - 200) < 200 * 0.05  # about rate × seconds
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    assert abs(cv - 1) < 0.05  # exponential gaps: their CV is 1
    assert offsets == arrival_offsets(200.0, "poisson", 20.0, random.Random("a"))
    assert offsets != arrival_offsets(200.0, "poisson", 20.0, random.Random("b"))
    constant = arrival_offsets(100.0, "constant", 1.0, random.Random("a"))
    assert constant[:3] == [10_000_000, 20_000_000, 30_000_000] and len(constant) == 100


def test_latency_runs_from_the_scheduled_time_and_the_queue_is_counted():
    ms = 1_000_000
    offsets = [0, 10 * ms, 20 * ms, 30 * ms]
    # one stream, 25 ms a call: each query waits for the one before it
    served = {"start_ns": 1000 * ms, "queries": {0: (1000 * ms, 1025 * ms), 1: (1025 * ms, 1050 * ms),
                                                 2: (1050 * ms, 1075 * ms)}}  # fmt: skip
    latencies = latencies_ms(offsets, served)
    assert latencies[:3] == [25.0, 40.0, 55.0] and latencies[3] == math.inf  # the last never served
    depth = queue_depth(offsets, served["queries"], served["start_ns"])
    assert depth[0] == 0 and max(depth) >= 1 and depth[-1] == 1  # the unserved query stays queued


def test_early_stopping_matches_loadgen_at_zero_and_grows_with_the_queries_over_the_bound():
    assert queries_needed(0) == 459  # 0.99 ** 459 < 1% < 0.99 ** 458
    assert queries_needed(1) > 459 and queries_needed(10) > queries_needed(1)
    assert early_stopping_passes(0, 459) and not early_stopping_passes(0, 458)
    assert not early_stopping_passes(30, 1000)  # 3% over: the p99 is over the bound
    assert validity([1.0] * 100, 100, 50)["result"] == "INVALID"  # none over, but too few to know
    assert "too few queries" in validity([1.0] * 100, 100, 50)["reason"]
    assert validity([1.0] * 500, 500, 50)["result"] == "VALID"
    assert validity([1.0] * 500, 510, 50)["result"] == "INVALID"  # 10 unserved are over any bound
    assert validity([1.0] * 500, 500, None)["result"] == "not judged"


def drifting_latencies(count: int, over_share: float, rng: random.Random, bound: float = 50.0) -> list[float]:
    """Latencies whose long-run share over `bound` is `over_share`, on a machine that switches between two speed
    levels 1.6x apart every 300 queries or so (as these VMs do): the slow level has three times the fast one's share
    over the bound, so the queries over it come in clusters, not independently as the binomial rule assumes."""
    latencies, level = [], 1.0
    for _ in range(count):
        if rng.random() < 1 / 300:
            level = 1.6 if level == 1.0 else 1.0
        share = over_share * (1.5 if level > 1 else 0.5)
        if rng.random() < share:
            latencies.append(bound * (1.05 + rng.random()))
        else:
            latencies.append(min(bound * 0.95, 10.0 * level * math.exp(rng.gauss(0, 0.3))))
    return latencies


def test_early_stopping_calls_a_violated_p99_valid_at_most_about_one_time_in_a_hundred():
    rng = random.Random(7)
    trials = 400
    false_valid = sum(
        validity(drifting_latencies(1500, 0.012, rng), 1500, 50.0)["result"] == "VALID" for _ in range(trials)
    )
    assert false_valid / trials <= 0.02, false_valid  # truth: 1.2% over the bound, so p99 is over it


def test_early_stopping_calls_a_p99_well_under_the_bound_valid_when_there_are_enough_queries():
    rng = random.Random(8)
    trials = 200
    valid = sum(
        validity(drifting_latencies(3000, 0.002, rng), 3000, 50.0)["result"] == "VALID" for _ in range(trials)
    )
    assert valid / trials >= 0.9, valid  # truth: 0.2% over the bound


@two_cpus
@pytest.mark.slow
def test_a_real_server_run_keeps_up_below_capacity_and_shows_its_queue_above_it(tmp_path):
    out = tmp_path / "out"
    spin = {"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"}
    result = bench_cli("run", write_suite(tmp_path, SERVER), "--out", out, env=spin)
    rows = {r["rate"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    clean_code = 0 if all(map(row_is_good, rows.values())) else 1  # INVALID is a finding; another process's load is not
    assert result.returncode == clean_code, result.stdout + result.stderr
    assert set(rows) == {40.0, 600.0}
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert row["scenario"] == "server" and row["throughput"] is None and row["accuracy"]["passed"]
        server = row["server"]
        assert server["queries"] == len(arrival_offsets_of(row)) and server["arrivals"] == "poisson"
        assert min(row["samples_ms"]) >= SPIN_MS  # from the scheduled time: at least the call itself
    easy, hard = rows[40.0]["server"], rows[600.0]["server"]
    drawn = easy["queries"] / easy["schedule_s"]  # the seeded Poisson draw's own rate (40/s on average)
    assert easy["served"] == easy["queries"] and 0.8 * drawn < easy["achieved_per_s"] <= 1.05 * drawn, (drawn, easy)
    assert easy["pooled_latency_ms"]["p50"] < 3 * SPIN_MS and easy["max_queue_depth"] <= 5
    assert easy["validity"]["result"] == "INVALID" and easy["queries"] < 459  # too few queries to know, whatever p99
    assert hard["achieved_per_s"] < 0.8 * 600  # two streams of ~7 ms calls cannot serve 600 a second
    assert hard["max_queue_depth"] > 100 and hard["pooled_latency_ms"]["p50"] > 10 * SPIN_MS  # the queue shows
    assert hard["validity"]["result"] == "INVALID" and "over 50 ms" in hard["validity"]["reason"]
    shown = bench_cli("show", out)
    assert shown.returncode == clean_code, shown.stdout + shown.stderr
    assert "server: tiny  eager fp32 (main)  seq 16  batch 1" in shown.stdout and "INVALID" in shown.stdout
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Server latency" in markdown and "| 600 |" in markdown


STALL = SERVER.replace("streams: [2]", "streams: [1]").replace("rates: [40, 600]", "rates: [50]\n  arrivals: constant").replace(
    "server_seconds: 3", "server_seconds: 6"
)
"""One stream at 50 queries a second, a query every 20 ms, each a ~7 ms call: 300 queries, and no queue unless a call
stalls. A 1 s stall lets 50 queries arrive behind it, and the stream then gains 13 ms a query: about 65 queries
(over 20%) wait more than 100 ms, while only the stalled query's own call is long."""
STALL_MS, STALLED_QUERY = 1000, 30


@pytest.mark.slow
def test_a_stalled_call_shows_in_the_latency_from_the_scheduled_time_and_not_in_the_latency_from_dispatch(tmp_path):
    from bench.measure.stats import percentiles

    out = tmp_path / "out"
    env = {"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}", "BENCH_STALL": f"tiny-eager:{STALLED_QUERY}:{STALL_MS}"}
    result = bench_cli("run", write_suite(tmp_path, STALL), "--out", out, env=env)
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "ok" and row["server"]["arrivals"] == "constant", (row["reason"], result.stderr)
    [records] = row["server"]["records"]
    scheduled, dispatched, done = records["scheduled_ms"], records["dispatch_ms"], records["done_ms"]
    assert len(scheduled) == row["server"]["queries"] == 300 and None not in done
    from_schedule = [end - due for due, end in zip(scheduled, done)]
    from_dispatch = [end - start for start, end in zip(dispatched, done)]
    assert from_dispatch[STALLED_QUERY] >= STALL_MS
    delayed = sum(latency > 100 for latency in from_schedule)
    assert delayed >= 0.03 * len(done), delayed  # the stall delays enough queries to move the p99
    p99_schedule, p99_dispatch = percentiles(sorted(from_schedule))["p99"], percentiles(sorted(from_dispatch))["p99"]
    assert p99_schedule > STALL_MS / 2, p99_schedule
    assert p99_dispatch < STALL_MS / 10, p99_dispatch  # one long call in 300 is under the 1% tail
    assert row["server"]["pooled_latency_ms"]["p99"] == pytest.approx(p99_schedule, abs=0.01)
    assert row["server"]["service_ms"][0]["p99"] == pytest.approx(p99_dispatch, abs=0.01)
    assert row["server"]["validity"]["result"] == "INVALID" and row["server"]["max_queue_depth"] >= 40


INTERRUPTED = STALL.replace("server_seconds: 6", "server_seconds: 5")
"""One stream at 50 queries a second for 5 s: 250 queries, about 7 ms each, interrupted after the 50th is taken."""


@pytest.mark.slow
def test_ctrl_c_in_the_middle_of_a_server_schedule_keeps_no_half_row_leaves_no_stream_and_resume_serves_it_whole(
    tmp_path,
):
    import signal

    from test_concurrent_runs import start, wait_for, worker_pids

    run = tmp_path / "run"
    suite = write_suite(tmp_path, INTERRUPTED)
    first = start(tmp_path, "run", suite, "--out", run, "--no-peak", "--no-report",
                  env={"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"})  # fmt: skip

    def taken() -> int:
        counters = list((run / "jobs").glob("*/queries.counter"))
        return int.from_bytes(counters[0].read_bytes()[:8], "little") if counters else 0

    try:
        wait_for(lambda: taken() >= 50, first)
        streams = worker_pids(run, first.pid)
    finally:
        first.send_signal(signal.SIGINT)
        returncode = first.wait(timeout=300)
    stderr = (tmp_path / "first.err").read_text()
    assert returncode == 130, stderr
    assert stderr.rstrip().endswith(f"interrupted: finished cases are kept; continue with: bench run --resume {run}")
    assert streams and not any(group_running(pid) for pid in streams), "a stream outlived the interrupted run"
    assert json.loads((run / "manifest.json").read_text())["runs"][-1]["interrupted"] is True
    results = run / "results.jsonl"
    assert not results.exists() or not results.read_text().strip(), "a half-served schedule was kept as a row"

    resumed = bench_cli("run", "--resume", run, "--no-peak", "--no-report", env={"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"})
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok", (resumed.stderr, rows)
    assert resumed.returncode == (0 if row_is_good(rows[0]) else 1), resumed.stderr
    assert rows[0]["server"]["queries"] == 250 and None not in rows[0]["server"]["records"][0]["done_ms"]


def arrival_offsets_of(row: dict) -> list[int]:
    seed = row["server"]["seed"][0]
    return arrival_offsets(row["rate"], row["arrivals"], row["measure"]["server_seconds"], random.Random(seed))


SEARCH = SERVER.replace("  rates: [40, 600]\n  p99_ms: 50\n", "  max_rate_under: {p99_ms: 50, start: 100, precision: 0.25, max_probes: 8}\n").replace(
    "server_seconds: 3", "server_seconds: 1"
)


def test_a_search_suite_makes_one_case_per_split_and_needs_a_bound(tmp_path):
    cases = expand(load_suite(write_suite(tmp_path, SEARCH))[0])
    assert len(cases) == 1 and "-x2-server-search-" in cases[0].case_id
    assert cases[0].search["p99_ms"] == 50 and cases[0].p99_ms == 50 and cases[0].search["max_probes"] == 8
    bad = bench_cli("validate", write_suite(tmp_path, SEARCH.replace("p99_ms: 50, ", "")))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "defaults.max_rate_under: expected at least one of p99_ms, ttft_ms and tpot_ms, got none" in bad.stderr
    tokens = bench_cli("validate", write_suite(tmp_path, SEARCH.replace("p99_ms: 50", "ttft_ms: 50")))
    assert tokens.returncode == 2 and "Traceback" not in tokens.stderr
    assert ("defaults.max_rate_under.ttft_ms: expected with text generation cases (generate), got model 'tiny',"
            " which generates nothing: bound p99_ms instead") in tokens.stderr  # fmt: skip


@two_cpus
@pytest.mark.slow
def test_a_rate_search_doubles_then_bisects_to_the_highest_valid_rate_the_streams_can_serve(tmp_path):
    out = tmp_path / "out"
    spin = {"BENCH_DELAY_MS": f"tiny-eager:{SPIN_MS}"}
    result = bench_cli("run", write_suite(tmp_path, SEARCH), "--out", out, env=spin)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "ok", row["reason"]
    search = row["server"]["search"]
    probes = search["probes"]
    assert probes[0]["rate"] == 100 and 2 <= len(probes) <= 8
    assert all(p["queries"] > 500 for p in probes)  # long enough to decide: about 600 queries each
    low, high = None, None
    for probe in probes:  # doubling until a probe fails, then each rate between the best VALID and the worst failing
        if low is not None and high is not None:
            assert low < probe["rate"] < high, probes
        elif high is None and low is not None:
            assert probe["rate"] == 2 * low, probes
        if probe["result"] == "VALID":
            low = probe["rate"] if low is None else max(low, probe["rate"])
        else:
            high = probe["rate"] if high is None else min(high, probe["rate"])
    assert search["max_rate"] == low and search["lowest_failing_rate"] == high
    assert low is not None and low < 2 * 1000 / SPIN_MS  # two streams of 5 ms spins serve under 400 a second
    assert high is None or high > low
    assert search["stopped"] and ("within 25%" in search["stopped"] or "max_probes" in search["stopped"])
    assert row["server"]["rate"] == low and row["server"]["validity"]["result"] == "VALID"  # the row shows its probe
    shown = bench_cli("show", out, "--format", "md")
    assert f"| max VALID {low:g}/s ({len(probes)} probes) |" in shown.stdout, shown.stdout


def simulated_serve(service_ms: float, streams: int):
    """bench.run.server.serve with the streams simulated: first come first served, each call `service_ms` long."""

    def serve(load, offsets, counter):
        free = [0] * streams
        queries = {}
        for index, offset in enumerate(offsets):
            stream = free.index(min(free))
            begin = max(offset, free[stream])
            free[stream] = begin + round(service_ms * 1e6)
            queries[index] = (begin, free[stream])
        return {"start_ns": 0, "queries": queries, "answers": []}

    return serve


def simulated_generation(first_token_ms: float, per_token_ms: float, new_tokens: int):
    """bench.run.server.serve with one stream simulated serving generate calls: first come first served, the first
    token `first_token_ms` after the call's start, each next one `per_token_ms` later."""

    def serve(load, offsets, counter):
        free, queries, tokens = 0, {}, {}
        for index, offset in enumerate(offsets):
            begin = max(offset, free)
            tokens[index] = [begin + round((first_token_ms + k * per_token_ms) * 1e6) for k in range(new_tokens)]
            free = tokens[index][-1]
            queries[index] = (begin, free)
        return {"start_ns": 0, "queries": queries, "tokens": tokens, "answers": []}

    return serve


def search_case(new_tokens=0, **search):
    from types import SimpleNamespace

    return SimpleNamespace(
        streams=1, rate=0.0, arrivals="poisson", measure={"server_seconds": 1.0}, batch_size=1, batching={},
        new_tokens=new_tokens, search={"p99_ms": 50.0, "start": None, "precision": 0.1, "max_probes": 15, **search},
    )  # fmt: skip


def test_a_generation_search_brackets_the_highest_rate_whose_ttft_p99_holds_and_names_the_bound_that_failed(
    monkeypatch,
):
    from types import SimpleNamespace

    import bench.run.server as server

    # 3 ms to the first token, then 7 more 2 ms apart: a 17 ms call whose TPOT is 2 ms at any rate; only the queue
    # before the call, in TTFT, grows with the rate
    monkeypatch.setattr(server, "serve", simulated_generation(3.0, 2.0, 8))
    case = search_case(new_tokens=8, p99_ms=None, ttft_ms=60.0, tpot_ms=5.0)
    found, shown = server.search_rate(SimpleNamespace(call_ms=17.0), case, "seed", None)
    low, high = found["max_rate"], found["lowest_failing_rate"]
    assert low is not None and high is not None and (high - low) / low <= 0.1, found
    assert (found["p99_ms"], found["ttft_ms"], found["tpot_ms"]) == (None, 60.0, 5.0)
    assert 0.3 < low * 17.0 / 1000 < 0.95, found  # a p99 of 60 ms (3.5 calls) holds below full load only
    for probe in found["probes"]:
        assert probe["tpot_ms"]["p99"] == pytest.approx(2.0) and probe["bounds"]["TPOT"] == "VALID", probe
        assert probe["bounds"]["TTFT"] == probe["result"] or probe["result"] == "unresolved", probe
        assert probe["result"] != "VALID" or probe["ttft_ms"]["p99"] <= 60.0
    failed = next(p for p in found["probes"] if p["rate"] == high)
    assert failed["reason"].startswith("TTFT: ") and "TPOT" not in failed["reason"], failed

    monkeypatch.setattr(server, "serve", simulated_generation(3.0, 6.0, 8))  # every token slower than the bound
    found, _ = server.search_rate(SimpleNamespace(call_ms=45.0), case, "seed", None)
    assert found["max_rate"] is None and len(found["probes"]) == 1, found  # no lower rate makes a token faster
    assert found["stopped"] == ("the calls' own time per output token is 6.0 ms at p99, over the 5 ms bound, and a"
                                " lower rate does not change it: no rate is VALID"), found  # fmt: skip
    assert all(p["bounds"]["TPOT"] == "INVALID" and "TPOT: " in p["reason"] for p in found["probes"])


@pytest.mark.parametrize("service_ms", [5.0, 10.0])
def test_the_search_brackets_the_highest_rate_a_simulated_queue_serves_under_the_bound(monkeypatch, service_ms):
    from types import SimpleNamespace

    import bench.run.server as server

    monkeypatch.setattr(server, "serve", simulated_serve(service_ms, 1))
    found, shown = server.search_rate(SimpleNamespace(call_ms=service_ms), search_case(), "seed", None)
    low, high = found["max_rate"], found["lowest_failing_rate"]
    assert low is not None and high is not None and (high - low) / low <= 0.1, found
    assert "within 10%" in found["stopped"] and shown is not None
    # one queue at a fixed service time: a p99 of 50 ms (5 to 10 calls long) holds below full load only
    assert 0.3 < low * service_ms / 1000 < 0.95, found


def test_the_search_stops_when_the_calls_alone_are_over_the_bound(monkeypatch):
    from types import SimpleNamespace

    import bench.run.server as server

    monkeypatch.setattr(server, "serve", simulated_serve(60.0, 1))
    found, _ = server.search_rate(SimpleNamespace(call_ms=60.0), search_case(), "seed", None)
    assert found["max_rate"] is None and len(found["probes"]) == 1
    assert "the calls alone take 60.0 ms at p99, over the 50 ms bound" in found["stopped"]


def test_an_unresolved_probe_records_how_many_queries_would_decide_it(monkeypatch):
    """3 queries over the bound among about 100: too few to know, and the probe says early stopping needs 1001 (the
    figure the tuning answer turns into a probe length)."""
    from types import SimpleNamespace

    import bench.run.server as server
    from bench.results.server import queries_needed

    def serve(load, offsets, counter):
        queries = {i: (o, o + round((80.0 if i in (10, 20, 30) else 1.0) * 1e6)) for i, o in enumerate(offsets)}
        return {"start_ns": 0, "queries": queries, "answers": []}

    monkeypatch.setattr(server, "serve", serve)
    record, _ = server.run_probe(SimpleNamespace(), search_case(), 100.0, "seed", None)
    assert record["result"] == "unresolved" and record["queries"] < 1001, record
    assert record["queries_needed"] == queries_needed(3) == 1001
