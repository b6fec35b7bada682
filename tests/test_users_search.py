"""The closed-loop users search (`max_users_under`) and `bench tune --users`: checked on simulated closed loops whose
answer is known (every users count tried by brute force), under the drift these VMs show, and in real runs."""

import heapq
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from bench.plan.matrix import dropped_combinations, expand
from bench.plan.suite import load_suite
from bench.run import users_search
from bench.run.tune import Best, ExhaustiveRound, TuneRound, Tried
from conftest import TINY_MODEL, bench_cli, two_cpus, write_suite
from test_paired_stats import DRIFT, drift_trace
from test_tune import GENERATION_SPACE, named_rows, tuned


class SimulatedLoop:
    """bench.run.users.run_users with the streams simulated: `users` users each sending when answered, first come
    first served by the load's streams, each call the load's `service_ms` with a little deterministic wobble, times the
    machine's speed level at the call's start when a drift trace is given. Each run takes its length of one clock."""

    def __init__(self, rng=None, drift: dict | None = None, jitter=None):
        self.clock_s = 0.0
        self.trace = drift_trace(rng, 3600.0, drift["switch_s"], drift["level_sd"]) if drift else None
        self.jitter = jitter  # a numpy Generator: each call's wobble drawn at random (lognormal, sd 0.3) instead

    def level(self, at_s: float) -> float:
        if self.trace is None:
            return 1.0
        times, levels = self.trace
        return math.exp(levels[np.searchsorted(times, at_s % 3600.0, side="right") - 1])

    def __call__(self, load, users: int, seconds: float, state) -> dict:
        sends = [(0, user) for user in range(users)]
        free = [0] * load.case.streams
        queries, end_ns = [], round(seconds * 1e9)
        while sends:
            sent, user = heapq.heappop(sends)
            if sent >= end_ns:
                continue
            stream = free.index(min(free))
            begin = max(sent, free[stream])
            wobble = self.jitter.lognormal(0, 0.3) if self.jitter else 1 + 0.2 * math.sin(len(queries) * 2.3)
            free[stream] = begin + round(load.service_ms * wobble * self.level(self.clock_s + begin / 1e9) * 1e6)
            queries.append((user, sent, begin, free[stream]))
            heapq.heappush(sends, (free[stream], user))
        self.clock_s += max(seconds, max(free) / 1e9)
        return {"start_ns": 0, "queries": sorted(queries, key=lambda q: (q[1], q[0])), "tokens": [], "answers": []}


def candidate(name: str, streams: int, service_ms: float, budget_ms: float = 100.0, passes: bool = True):
    case = SimpleNamespace(
        case_id=name, streams=streams, threads=1, measure={"server_seconds": 1.0}, concurrency=0, closed_loop=True,
        server=False, search={"p99_ms": budget_ms, "precision": 0.1, "max_probes": 15}, batch_size=1, batching={},
        new_tokens=0, slo={},
    )  # fmt: skip
    return SimpleNamespace(case=case, call_ms=service_ms, fastest_ms=None, service_ms=service_ms, passes=passes,
                           failure=None, accuracy_passed=lambda: passes)  # fmt: skip


@pytest.mark.parametrize("streams, service_ms, budget_ms", [(2, 10.0, 100.0), (1, 4.0, 50.0), (2, 18.0, 300.0)])
def test_the_search_brackets_the_most_users_valid_as_every_count_tried_shows(monkeypatch, tmp_path, streams, service_ms,
                                                                              budget_ms):  # fmt: skip
    """The truth is every users count probed by brute force on the same simulated loop: the search's most users VALID
    and fewest not bracket the last count before the first that is not VALID, one user or 10% apart, and it starts
    where Little's law puts the answer, so it needs a few probes, not a doubling from 4."""
    monkeypatch.setattr(users_search, "run_users", SimulatedLoop())
    load = candidate("a", streams, service_ms, budget_ms)
    valid = [users_search.run_probe(load, n, tmp_path)["record"]["result"] == "VALID" for n in range(1, 200)]
    truth = valid.index(False)  # the most users VALID, every count below it VALID too
    found, shown = users_search.search_users(load, tmp_path)
    low, high = found["max_users"], found["lowest_failing_users"]
    assert low <= truth < high and high - low <= max(1, 0.1 * low), (low, truth, high, found["stopped"])
    assert valid[low - 1] and not valid[high - 1]
    assert found["probes"][0]["users"] == users_search.modelled_users(load.case, service_ms)
    assert abs(found["probes"][0]["users"] - truth) <= 0.25 * truth and len(found["probes"]) <= 6, found["probes"]
    assert shown["concurrency"] == low and found["goodput_per_s"] == next(
        p["goodput_per_s"] for p in found["probes"] if p["users"] == low
    )
    low_g, high_g = found["goodput_interval"]
    assert low_g < found["goodput_per_s"] < high_g <= 1.2 * found["goodput_per_s"]
    assert found["goodput_per_s"] <= streams * 1000 / (0.8 * service_ms)  # no more than the streams can serve


def test_a_probes_goodput_interval_holds_the_goodput_of_its_users_at_least_95_times_in_100_where_only_calls_vary(
    monkeypatch, tmp_path
):
    """The interval is the count's (Poisson): calls of random length (lognormal, sd 0.3), no drift, the truth the
    goodput of one run 500 times a probe's length. A closed loop counts more evenly than Poisson, so it holds more
    often than 95%. What it leaves out, the machine's drift between probes, docs/scenarios.md states with figures."""
    rng = np.random.default_rng(3)
    loop = SimulatedLoop(jitter=rng)
    monkeypatch.setattr(users_search, "run_users", loop)
    load = candidate("a", 2, 10.0, 100.0)
    seconds = users_search.probe_seconds(load.case, 8, load.service_ms)
    truth = users_search.run_probe(load, 8, tmp_path, seconds=500 * seconds)["record"]["goodput_per_s"]
    probes = [users_search.run_probe(load, 8, tmp_path)["record"] for _ in range(200)]
    held = sum(p["goodput_interval"][0] <= truth <= p["goodput_interval"][1] for p in probes)
    assert held >= 182, held  # a true 95% holds at least 182 of 200 with probability 0.99
    assert np.std(np.log([p["goodput_per_s"] for p in probes])) > 0.005  # the count does vary


def test_a_budget_no_users_count_meets_stops_at_one_user_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(users_search, "run_users", SimulatedLoop())
    found, _ = users_search.search_users(candidate("slow", 1, 30.0, budget_ms=20.0), tmp_path)
    assert found["max_users"] is None and found["lowest_failing_users"] == 1
    assert found["stopped"].startswith("not VALID with one user") and "why_none" in found


def test_a_probe_too_short_to_decide_ends_the_search_only_when_none_of_its_queries_was_over(monkeypatch, tmp_path):
    """Calls of 200 ms on one stream: a probe of the longest length allowed holds about 300 queries, too few to show a
    p99 under any bound (459 with none over). Fewer users send no more, so the search stops there and says how to
    decide it; and `bench tune`'s answer says the same of its searches."""
    from bench.results.tune import summary_lines

    monkeypatch.setattr(users_search, "run_users", SimulatedLoop())
    load = candidate("slow", 1, 200.0, budget_ms=60_000.0)
    load.case.search["start"] = 2  # far under the bound: no query over it
    found, _ = users_search.search_users(load, tmp_path)
    [probe] = found["probes"]
    assert probe["result"] == "unresolved" and probe["queries"] < 459 and found["max_users"] is None
    assert found["stopped"].startswith(f"unresolved at {probe['users']} users: {probe['queries']} queries")
    row = {"status": "ok", "accuracy": {"passed": True}, "closed_loop": {"search": found}, "case_id": "slow",
           "backend": "slow", "model": "m", "task": "t", "seq_len": 32, "batch_size": 1, "threads": 1, "streams": 1,
           "precision": "fp32", "search": {"p99_ms": 60_000.0}, "tune": {"order": 0, "decision": "searched"}}  # fmt: skip
    assert "1 of 1 users searches stopped unresolved" in " ".join(summary_lines([row]))


CANDIDATES = [("a", 1, 10.0), ("b", 2, 18.0), ("c", 1, 25.0), ("d", 2, 40.0), ("e", 1, 9.5), ("f", 2, 60.0),
              ("g", 1, 11.5)]  # fmt: skip


def goodput(row: dict) -> float | None:
    return ((row.get("closed_loop") or {}).get("search") or {}).get("goodput_per_s")


def test_tuning_users_finds_the_exhaustive_grids_winner_with_a_fraction_of_its_trials(monkeypatch, tmp_path):
    """Seven closed-loop candidates, simulated without drift: tuning prunes by each one's bound against the best
    goodput's lower bound, searches where Little's law puts the answer, and ships what searching every one ships, for under half
    its trials; the winner duels the closest, and the answer speaks of users and goodput."""
    from bench.results.tune import outcomes, summary_lines

    monkeypatch.setattr(users_search, "run_users", SimulatedLoop())
    exhaustive = tuned(ExhaustiveRound, [candidate(*c) for c in CANDIDATES], tmp_path)
    monkeypatch.setattr(users_search, "run_users", SimulatedLoop())
    tuned_rows = tuned(TuneRound, [candidate(*c) for c in CANDIDATES], tmp_path)
    best = max(exhaustive, key=lambda k: goodput(exhaustive[k]) or 0.0)
    assert max(tuned_rows, key=lambda k: goodput(tuned_rows[k]) or 0.0) == best == "b"
    decisions = {k: r["tune"]["decision"] for k, r in tuned_rows.items()}
    assert all(decisions[k].startswith("pruned") for k in ("c", "d", "f")), decisions
    trials = sum(r["tune"]["trials"] for r in tuned_rows.values())
    assert trials <= 0.5 * sum(r["tune"]["trials"] for r in exhaustive.values()), decisions
    duel = tuned_rows[best]["tune"]["duel"]
    assert duel["users"] == tuned_rows[best]["closed_loop"]["search"]["max_users"] and duel["trials"] == 2
    named = named_rows(tuned_rows)
    [outcome] = outcomes(named)
    assert outcome.winner["case_id"] == best and outcome.trials == trials + 2
    line = " ".join(summary_lines(named))
    low = tuned_rows[best]["closed_loop"]["search"]["max_users"]
    assert f"ship b fp32 1 × 1: {low} users VALID" in line and "goodput" in line, line
    assert f"with {low} users, 4 segments of" in line and "its goodput is" in line, line


def duels(monkeypatch, tmp_path, slower: float, replicates: int, seed: int) -> list[dict]:
    """The users duel of a winner (10 ms calls, two streams, 20 users under a 100 ms budget) and a runner-up `slower`
    times its call, each replicate on its own drift trace (DRIFT: levels 1.6x apart switching every second)."""
    found = []
    for replicate in range(replicates):
        monkeypatch.setattr(users_search, "run_users", SimulatedLoop(np.random.default_rng([seed, replicate]), DRIFT))
        loads = [candidate("winner", 2, 10.0), candidate("runner-up", 2, 10.0 * slower)]
        tried = [Tried(load, order, "searched", {"max_users": 20}, None, 0.0, True) for order, load in enumerate(loads)]
        rounds = TuneRound.__new__(TuneRound)
        rounds.runner = SimpleNamespace(order_seed=replicate, job_dir=lambda case: tmp_path, duel_pairs=8)
        rounds.index = 0
        found.append(rounds.duel(tried, Best("winner", 150.0, 20)))
    return found


def test_a_copy_of_the_winner_reads_apart_in_the_users_duel_at_most_as_often_as_its_95_percent_level_allows(
    monkeypatch, tmp_path
):
    """200 duels of a closed loop against a copy of itself under level-switching drift: its goodput interval, a t
    interval of 8 segments' log ratios, reads "ahead" or "behind" in at most 8% (5% and the binomial slack of 200)."""
    found = duels(monkeypatch, tmp_path, 1.0, 200, seed=3)
    verdicts = [d["verdict"] for d in found]
    assert set(verdicts) <= {"ahead", "tied", "behind"} and all(d["figure"] == "goodput" for d in found)
    assert (len(verdicts) - verdicts.count("tied")) / len(verdicts) <= 0.08, verdicts.count("tied")


def test_a_runner_up_a_third_slower_per_call_mostly_reads_behind_in_the_users_duel_under_drift(monkeypatch, tmp_path):
    found = duels(monkeypatch, tmp_path, 1.33, 60, seed=4)
    verdicts = [d["verdict"] for d in found]
    assert verdicts.count("behind") == 0 and verdicts.count("ahead") >= 42, verdicts  # 81 of 100 in docs/scenarios.md
    assert all(d["ratio"] < 1 for d in found if "ratio" in d)


USERS = """\
name: users
defaults:
  seq_lens: [16]
  threads: [1]
  streams: [2]
  scenario: closed-loop
  max_users_under: {p99_ms: 40, precision: 0.2, max_probes: 4}
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120, server_seconds: 1}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
"""


def test_a_closed_loop_suite_with_a_users_search_makes_one_case_and_names_its_misplaced_searches(tmp_path):
    [case] = expand(load_suite(write_suite(tmp_path, USERS))[0])
    assert case.closed_loop and case.search["p99_ms"] == 40 and case.concurrency == 0 and "-closed-loop-search-" in case.case_id
    server = USERS.replace("scenario: closed-loop", "scenario: server\n  rates: [10]")
    assert any("max_users_under applies to scenario closed-loop only" in n
               for n in dropped_combinations(load_suite(write_suite(tmp_path, server))[0]))  # fmt: skip
    rate_search = USERS.replace("max_users_under", "max_rate_under")
    result = bench_cli("validate", write_suite(tmp_path, rate_search))
    assert result.returncode == 2 and "concurrency: expected the users scenario closed-loop runs at once (or" \
        " max_users_under), got nothing" in result.stderr, result.stderr  # fmt: skip
    bad = USERS.replace("max_users_under: {p99_ms: 40,", "max_users_under: {ttft_ms: 40,")
    result = bench_cli("validate", write_suite(tmp_path, bad))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "defaults.max_users_under.ttft_ms: expected with text generation cases" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["--objective", "latency", "--rate", "10"], ["--objective", "memory", "--rate", "5"]])
def test_a_users_search_refuses_an_objective_at_a_rate_in_one_line(tmp_path, args):
    result = bench_cli("tune", write_suite(tmp_path, USERS), "--budget", "p99_ms=40", "--users", *args)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: tune: --users: expected --objective rate")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@two_cpus
@pytest.mark.slow
def test_a_real_users_search_finds_the_most_users_under_the_bound_from_the_send(tmp_path):
    """`bench run` of a closed loop with max_users_under: each probe judged on the latency from the send, the row
    showing the most users VALID, whose own latency keeps the bound."""
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, USERS), "--out", out, env={"BENCH_DELAY_MS": "tiny-eager:4"})
    [row] = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert result.returncode in (0, 1) and row["status"] == "ok", result.stdout + result.stderr
    search = row["closed_loop"]["search"]
    assert search["from"] == "send" and search["p99_ms"] == 40 and 1 <= len(search["probes"]) <= 4
    assert all(p["result"] in ("VALID", "INVALID", "unresolved") and p["reason"] for p in search["probes"])
    if search["max_users"]:
        assert row["concurrency"] == row["closed_loop"]["concurrency"] == search["max_users"]
        shown = next(p for p in search["probes"] if p["users"] == search["max_users"] and p["result"] == "VALID")
        assert shown["latency_ms"]["p99"] <= 40 and shown["queries"] == row["closed_loop"]["completed"]
    assert f"search: {search['max_users']} users VALID" in result.stderr or not search["max_users"], result.stderr


@two_cpus
@pytest.mark.slow
def test_a_real_tuning_run_over_users_searches_each_split_under_ttft_and_tpot_and_writes_a_users_suite(tmp_path):
    """bench tune --users: every candidate a closed loop whose users are searched under the TTFT and TPOT bounds from
    the send (the suite's own search settings kept, its rate search set aside), goodput counted against the budget,
    and the suite written for the winner searches its users again."""
    out = tmp_path / "out"
    result = bench_cli("tune", write_suite(tmp_path, GENERATION_SPACE), "--budget", "ttft_ms=150,tpot_ms=50", "--users",
                       "--out", out, "--duel-pairs", "2")  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    rows = sorted(map(json.loads, (out / "results.jsonl").read_text().splitlines()), key=lambda r: r["tune"]["order"])
    assert sorted(r["streams"] for r in rows) == [1, 2] and all(r["scenario"] == "closed-loop" for r in rows)
    search = rows[0]["closed_loop"]["search"]
    assert (search["ttft_ms"], search["tpot_ms"], "p99_ms" in search) == (150, 50, False)
    assert all(set(p["bounds"]) == {"TTFT", "TPOT"} for p in search["probes"]) and len(search["probes"]) <= 3
    if search["max_users"]:
        generation = rows[0]["closed_loop"]["generation"]
        assert generation["slo"] == {"ttft_ms": 150, "tpot_ms": 50} and generation["goodput_per_s"][0] > 0
        assert "users VALID" in result.stdout and "goodput" in result.stdout, result.stdout
    tuned = yaml.safe_load((out / "tuned-1.yaml").read_text()) if (out / "tuned-1.yaml").exists() else None
    if tuned is not None:
        assert tuned["defaults"]["scenario"] == "closed-loop" and tuned["defaults"]["max_users_under"]["ttft_ms"] == 150
        assert "max_rate_under" not in tuned["defaults"] and "concurrency" not in tuned["defaults"]
        assert bench_cli("validate", out / "tuned-1.yaml").returncode == 0
