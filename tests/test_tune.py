"""bench tune: the candidates tried by their upper bound, pruned or challenged against the best so far (checked on
simulated queues whose answer is known, against the exhaustive grid), the suite it runs, and a real tuning run."""

import json
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from bench.run import server
from bench.results.tune import CLOSE, duel_verdict
from bench.run.tune import ExhaustiveRound, TuneRound, tuning_suite
from conftest import TINY_GPT2, TINY_MODEL, bench_cli, two_cpus, write_suite
from test_paired_stats import DRIFT, drift_trace


def simulated_serve(load, offsets, counter):
    """bench.run.server.serve with the load's streams simulated: first come first served, each call as long as the
    load's `service_ms` and a little noise (deterministic per query)."""
    free = [0] * load.case.streams
    queries = {}
    for index, offset in enumerate(offsets):
        stream = free.index(min(free))
        begin = max(offset, free[stream])
        wobble = 1 + 0.2 * math.sin(index * 2.3)  # calls vary, so the p99 is not flat up to saturation
        free[stream] = begin + round(load.service_ms * wobble * 1e6)
        queries[index] = (begin, free[stream])
    return {"start_ns": 0, "queries": queries, "answers": []}


def candidate(name: str, streams: int, service_ms: float, passes: bool = True):
    case = SimpleNamespace(
        case_id=name, streams=streams, threads=1, rate=0.0, arrivals="poisson", measure={"server_seconds": 1.0},
        search={"p99_ms": 50.0, "start": None, "precision": 0.1, "max_probes": 15}, batch_size=1, batching={},
        new_tokens=0, closed_loop=False,
    )  # fmt: skip
    return SimpleNamespace(case=case, call_ms=service_ms, fastest_ms=None, service_ms=service_ms, passes=passes,
                           failure=None, accuracy_passed=lambda: passes)  # fmt: skip


CANDIDATES = [("a", 1, 10.0), ("b", 2, 18.0), ("c", 1, 25.0), ("d", 2, 40.0), ("e", 1, 9.5), ("f", 2, 60.0),
              ("g", 1, 11.5)]


def tuned(round_class, loads, tmp_path, objective="rate", rate=None) -> dict[str, dict]:
    rounds = round_class.__new__(round_class)
    rounds.runner = SimpleNamespace(order_seed=7, job_dir=lambda case: tmp_path, duel_pairs=4, tune_objective=objective,
                                    tune_rate=rate)  # fmt: skip
    rounds.index = 0
    rows = {}

    def finish(load, figures):
        rows[load.case.case_id] = {"status": "ok", "accuracy": {"passed": load.passes}}
        if figures is not None:
            figures(rows[load.case.case_id])
        return rows[load.case.case_id]

    rounds.tune(loads, finish)
    return rows


def winner(rows: dict[str, dict]) -> tuple[str, float]:
    rated = {k: r["server"]["search"]["max_rate"] for k, r in rows.items()
             if r.get("server") and r["server"]["search"]["max_rate"] and r["accuracy"]["passed"]}  # fmt: skip
    best = max(rated, key=rated.get)
    return best, rated[best]


def test_tuning_finds_the_exhaustive_grids_winner_with_a_fraction_of_its_trials(monkeypatch, tmp_path):
    monkeypatch.setattr(server, "serve", simulated_serve)
    every = tuned(ExhaustiveRound, [candidate(*c) for c in CANDIDATES], tmp_path)
    quick = tuned(TuneRound, [candidate(*c) for c in CANDIDATES], tmp_path)
    best, rate = winner(every)
    found, found_rate = winner(quick)
    tied = {k for k, r in quick.items() if r["tune"]["decision"] == "tied"}
    assert found == best or best in tied, (best, rate, found, found_rate)
    assert abs(found_rate - rate) / rate <= 0.1  # within the search's precision
    trials = {name: sum(r["tune"]["trials"] for r in rows.values()) for name, rows in (("grid", every), ("tune", quick))}
    assert trials["tune"] <= 0.5 * trials["grid"], trials
    pruned = [k for k, r in quick.items() if r["tune"]["decision"].startswith("pruned")]
    assert set(pruned) >= {"c", "d", "f"} and all(quick[k]["tune"]["trials"] == 0 for k in pruned)
    assert [r["tune"]["order"] for r in sorted(quick.values(), key=lambda r: -r["tune"]["upper_bound_per_s"])] == list(
        range(len(CANDIDATES))
    )  # tried from the highest upper bound down
    close = [r for r in quick.values() if r["tune"]["decision"].startswith(CLOSE)]
    assert close
    for row in close:  # the challenge is probed only when the bound reaches it
        best_then = float(row["tune"]["decision"].split("best's ")[1].split("/s")[0])
        expected = 1 if row["tune"]["upper_bound_per_s"] >= round(best_then * 1.1, 3) else 0
        assert row["tune"]["trials"] == expected, row["tune"]


def test_the_winner_duels_the_runner_up_on_the_same_schedules_and_a_copy_of_it_reads_tied(monkeypatch, tmp_path):
    """Simulated streams serve a schedule the same way each time (no drift): a runner-up 20% slower per call has the
    higher p99 in every segment at the winner's rate, and a copy of the winner has the same p99. Each side serves one
    probe's length of queries in all, cut in segments, and is judged over them: two trials."""
    from bench.results.tune import outcomes, summary_lines

    monkeypatch.setattr(server, "serve", simulated_serve)
    rows = tuned(TuneRound, [candidate(*c) for c in CANDIDATES], tmp_path)
    best, rate = winner(rows)
    duel = rows[best]["tune"]["duel"]
    tried = [k for k, r in rows.items() if k != best and not r["tune"]["decision"].startswith("pruned")]
    runner_up = max(tried, key=lambda k: ((rows[k].get("server") or {}).get("search", {}).get("max_rate") or 0,
                                          rows[k]["tune"]["upper_bound_per_s"]))  # fmt: skip
    assert duel["rate"] == rate and duel["against"] == runner_up and len(duel["pairs"]) == 4 and duel["trials"] == 2
    assert [p["first"] for p in duel["pairs"]] == ["winner", "runner-up"] * 2
    probe_s = server.probe_seconds(candidate("x", 1, 1.0).case, rate)
    probe = len(server.arrival_offsets(rate, "poisson", probe_s, random.Random(0)))
    for side in ("winner", "runner-up"):
        served = sum(p[side]["queries"] for p in duel["pairs"])
        assert served == duel["sides"][side]["queries"] and 0.8 * probe < served < 1.25 * probe, (served, probe)
        assert duel["sides"][side]["result"] in ("VALID", "INVALID"), duel["sides"]
    assert duel["segment_s"] == pytest.approx(probe_s / 4, abs=1e-3)
    assert [k for k, r in rows.items() if "duel" in r["tune"]] == [best]
    named = [{**r, "case_id": k, "model": "m", "search": {"p99_ms": 50.0}} for k, r in rows.items()]
    assert outcomes(named)[0].trials == sum(r["tune"]["trials"] for r in rows.values()) + 2
    assert f"at {rate:.4g}/s, 4 segments of {duel['segment_s']:.3g} s served by turns" in " ".join(summary_lines(named))

    clear = tuned(TuneRound, [candidate("fast", 1, 5.0), candidate("slower", 1, 6.0)], tmp_path)
    duel = clear["fast"]["tune"]["duel"]
    assert clear["slower"]["tune"]["decision"].startswith(CLOSE) and duel["against"] == "slower", clear
    assert all(p["runner-up"]["p99_ms"] > p["winner"]["p99_ms"] for p in duel["pairs"]), duel
    assert duel["verdict"] == "ahead" and 1 < duel["interval"][0] <= duel["ratio"] <= duel["interval"][1], duel
    named = [{**r, "case_id": k, "model": "m", "search": {"p99_ms": 50.0}} for k, r in clear.items()]
    assert "the winner is ahead" in " ".join(summary_lines(named))

    twins = tuned(TuneRound, [candidate("one", 1, 10.0), candidate("two", 1, 10.0)], tmp_path)
    (best, duel), = [(k, r["tune"]["duel"]) for k, r in twins.items() if "duel" in r["tune"]]
    assert {best, duel["against"]} == {"one", "two"} and duel["verdict"] == "tied" and duel["ratio"] == 1.0, duel


def test_where_every_other_candidate_is_pruned_the_margin_is_the_highest_pruned_bound(monkeypatch, tmp_path):
    from bench.results.tune import summary_lines

    monkeypatch.setattr(server, "serve", simulated_serve)
    rows = tuned(TuneRound, [candidate("fast", 2, 5.0), candidate("slow", 1, 50.0)], tmp_path)
    assert rows["slow"]["tune"]["decision"].startswith("pruned") and "duel" not in rows["fast"]["tune"]
    rate = rows["fast"]["server"]["search"]["max_rate"]
    named = [{**r, "case_id": k, "model": "m", "search": {"p99_ms": 50.0}} for k, r in rows.items()]
    assert f"the highest bound of those pruned, 20/s, is {rate / 20:.2f}x under its VALID rate" in summary_lines(named)[0]


def test_where_every_search_stopped_unresolved_the_answer_says_how_long_a_probe_would_decide():
    """A slow generator serves a few requests a second: a probe of a minute holds too few to show p99 under a bound
    (459 with none over), and the answer says so, with the probe length that decides the fastest candidate."""
    from bench.results.tune import summary_lines

    def row(name, order, rate):
        search = {"max_rate": None, "lowest_failing_rate": rate, "probes": [{"rate": rate, "result": "unresolved"}],
                  "stopped": f"unresolved at {rate:g}/s: 120 queries in the longest probe allowed"}  # fmt: skip
        return {"case_id": name, "model": "gpt2", "task": "text-generation", "seq_len": 32, "batch_size": 1,
                "backend": name, "precision": "fp32", "threads": 1, "streams": 2, "status": "ok",
                "accuracy": {"passed": True}, "search": {"ttft_ms": 500.0}, "server": {"search": search},
                "tune": {"order": order, "decision": "searched", "trials": 1}}  # fmt: skip

    [line] = summary_lines([row("ort", 0, 2.0), row("openvino", 1, 1.5)])
    assert line.endswith("nothing to ship: no configuration had a VALID rate within the accuracy gate; 2 of 2 searches"
                         " stopped unresolved: at 1.5-2 queries/s a probe holds too few to show p99 under a bound (at"
                         " least 459 with none over it, more with some over); measure.server_seconds of 230 s or more"
                         " could decide the first of them"), line  # fmt: skip
    rows = [row("ort", 0, 2.0), row("openvino", 1, 1.5)]
    rows[0]["server"]["search"]["probes"][-1]["queries_needed"] = 1001  # 3 of them over the bound
    assert summary_lines(rows)[0].endswith("measure.server_seconds of 306 s or more could decide the first of them")


@pytest.mark.parametrize("better", ["lower", "higher"])
def test_a_duels_verdict_follows_which_way_its_figure_is_better(better):
    runner_up_higher = [math.log(r) for r in (1.10, 1.12, 1.09, 1.11)]
    entry = duel_verdict({}, runner_up_higher, better)
    assert entry["interval"][0] <= entry["ratio"] <= entry["interval"][1]
    assert entry["interval"][0] > 1
    assert entry["verdict"] == ("ahead" if better == "lower" else "behind")
    flipped = duel_verdict({}, [-x for x in runner_up_higher], better)["verdict"]
    assert flipped == ("behind" if better == "lower" else "ahead")
    assert duel_verdict({}, [0.05, -0.05, 0.04, -0.04], better)["verdict"] == "tied"


def test_a_duel_that_puts_the_runner_up_ahead_makes_it_the_winner_and_its_suite():
    from bench.results.tune import outcomes, summary_lines, tuned_suites

    def row(name, order, rate, high, duel=None):
        tune = {"order": order, "decision": "searched", "trials": 6, "exhaustive": True, **({"duel": duel} if duel else {})}
        return {"case_id": name, "model": "m", "task": "t", "seq_len": 32, "batch_size": 1, "backend": name,
                "precision": "fp32", "threads": 1, "streams": 2, "status": "ok", "accuracy": {"passed": True},
                "search": {"p99_ms": 100.0}, "server": {"search": {"max_rate": rate, "lowest_failing_rate": high}},
                "tune": tune}  # fmt: skip

    duel = {"against": "ov", "rate": 276.9, "pairs": [{}] * 4, "ratio": 0.655, "interval": [0.467, 0.918],
            "verdict": "behind", "trials": 8, "seconds": 40.0}  # fmt: skip
    rows = [row("ort", 0, 276.9, 291.5, duel), row("ov", 1, 273.4, 288.6)]
    outcome = outcomes(rows)[0]
    assert outcome.winner is rows[1] and outcome.runner_up is rows[0] and outcome.rate_leader is rows[0]
    line = summary_lines(rows)[0]
    assert "ship ov fp32" in line and "so the paired test puts it ahead" in line, line
    manifest = {"suite": {"name": "s", "defaults": {}, "models": [{"name": "m"}], "backends": [{"name": "ov"}, {"name": "ort"}]}}
    assert [b["name"] for b in tuned_suites(manifest, rows)[0]["backends"]] == ["ov"]
    rows[0]["tune"]["duel"]["verdict"] = "tied"
    assert outcomes(rows)[0].winner is rows[0]
    assert "in the duel the winner itself" not in summary_lines(rows)[0]
    rows[0]["tune"]["duel"]["sides"] = {"winner": {"result": "INVALID", "reason": "112 of 929 queries over 100 ms"}}
    assert ("in the duel the winner itself was not VALID at 276.9/s (112 of 929 queries over 100 ms): the machine"
            " served less than in its own probes") in summary_lines(rows)[0], summary_lines(rows)[0]


def drifting_serve(rng, drift):
    """bench.run.server.serve on a machine whose speed switches between levels (test_paired_stats' drift, fitted to a
    2-vCPU VM's canary): one clock runs on over every schedule served, each call as long as the load's `service_ms`
    times the level at its start and its own lognormal noise (sd 0.1)."""
    times, levels = drift_trace(rng, 900.0, drift["switch_s"], drift["level_sd"])
    clock = [0.0]

    def serve(load, offsets, counter):
        free, queries, start = [0] * load.case.streams, {}, clock[0]
        for index, offset in enumerate(offsets):
            stream = free.index(min(free))
            begin = max(offset, free[stream])
            level = levels[np.searchsorted(times, start + begin / 1e9, side="right") - 1]
            free[stream] = begin + round(load.service_ms * math.exp(level + rng.normal(0, 0.1)) * 1e6)
            queries[index] = (begin, free[stream])
        clock[0] = start + max(free) / 1e9 + 0.2
        return {"start_ns": 0, "queries": queries, "answers": []}

    return serve


def duels(monkeypatch, tmp_path, slower: float, drift: dict, replicates: int, seed: int, pairs: int = 8) -> list[dict]:
    """The duel of a winner (10 ms calls, one stream) and a runner-up `slower` times its call, at 50 queries a second
    under the budget of 50 ms, each replicate on its own drift trace."""
    from bench.run.tune import Best, Tried

    found = []
    for replicate in range(replicates):
        monkeypatch.setattr(server, "serve", drifting_serve(np.random.default_rng([seed, replicate]), drift))
        loads = [candidate("winner", 1, 10.0), candidate("runner-up", 1, 10.0 * slower)]
        tried = [Tried(load, order, "searched", {"max_rate": 50.0}, None, 0.0, True) for order, load in enumerate(loads)]
        rounds = TuneRound.__new__(TuneRound)
        rounds.runner = SimpleNamespace(order_seed=replicate, job_dir=lambda case: tmp_path, duel_pairs=pairs)
        rounds.index = 0
        found.append(rounds.duel(tried, Best("winner", 50.0)))
    return found


@pytest.mark.parametrize("switch_s", [1.0, 5.0])
def test_a_copy_of_the_winner_reads_ahead_or_behind_at_most_as_often_as_the_duels_95_percent_level_allows(
    monkeypatch, tmp_path, switch_s
):
    """The duel's interval holds its level under level-switching drift: 300 duels of a configuration against a copy of
    itself (one-sided 2.5% false "ahead", 5% in all, with the binomial slack of 300). The same pairs judged with the
    normal quantile instead of Student's t (8 segments, 7 degrees of freedom) would not hold it where the levels
    switch every second."""
    from scipy import stats

    found = duels(monkeypatch, tmp_path, 1.0, {**DRIFT, "switch_s": switch_s}, 300, seed=int(switch_s))
    verdicts = [d["verdict"] for d in found]
    assert set(verdicts) <= {"ahead", "tied", "behind"}
    assert verdicts.count("ahead") / len(verdicts) <= 0.045, verdicts.count("ahead")
    assert (len(verdicts) - verdicts.count("tied")) / len(verdicts) <= 0.08, verdicts.count("tied")
    normal = 0
    for duel in found:
        logs = [math.log(p["runner-up"]["p99_ms"] / p["winner"]["p99_ms"]) for p in duel["pairs"]]
        normal += abs(np.mean(logs)) > stats.norm.ppf(0.975) * np.std(logs, ddof=1) / math.sqrt(len(logs))
    assert switch_s > 1 or normal / len(found) > 0.08, normal


def test_a_runner_up_half_as_fast_again_per_call_mostly_reads_behind_the_winner_under_drift(monkeypatch, tmp_path):
    """The duel's power under the same drift (docs/scenarios.md gives it): a runner-up whose calls take 1.5x the
    winner's reads "ahead" (the winner ahead) in nearly every duel of 8 segments, and never the other way."""
    found = duels(monkeypatch, tmp_path, 1.5, DRIFT, 100, seed=9)
    verdicts = [d["verdict"] for d in found]
    assert verdicts.count("behind") == 0 and verdicts.count("ahead") >= 85, verdicts.count("ahead")


def named_rows(rows: dict[str, dict]) -> list[dict]:
    return [{**r, "case_id": k, "backend": k, "model": "m", "task": "t", "seq_len": 32, "batch_size": 1, "threads": 1,
             "streams": 1, "precision": "fp32", "search": {"p99_ms": 50.0}} for k, r in rows.items()]  # fmt: skip


def test_at_a_given_rate_the_lowest_p99_wins_each_candidate_serving_the_same_schedule_once(monkeypatch, tmp_path):
    """--objective latency --rate 40: the candidates whose bound is under 40/s are pruned, every other one serves the
    same seeded schedule at 40/s once, and the winner is the VALID one with the lowest p99; it duels the next."""
    from bench.results.tune import outcomes, p99_at_rate, summary_lines, tuned_suites

    monkeypatch.setattr(server, "serve", simulated_serve)
    rows = tuned(TuneRound, [candidate(*c) for c in CANDIDATES], tmp_path, "latency", 40.0)
    pruned = {k for k, r in rows.items() if r["tune"]["decision"].startswith("pruned")}
    assert pruned == {k for k, r in rows.items() if r["tune"]["upper_bound_per_s"] < 40} == {"f"}
    probed = {k: r for k, r in rows.items() if k not in pruned}
    assert all(r["tune"]["trials"] == 1 and r["tune"]["objective"] == "latency" for r in probed.values())
    assert len({r["server"]["queries"] for r in probed.values()}) == 1  # one schedule for all
    valid = {k: p99_at_rate(r) for k, r in probed.items() if r["server"]["search"]["max_rate"] == 40.0}
    assert len(valid) >= 3, {k: r["tune"]["decision"] for k, r in rows.items()}
    best = min(valid, key=valid.get)
    outcome = outcomes(named_rows(rows))[0]
    assert outcome.winner["case_id"] == best and outcome.objective == "latency" and outcome.rate == 40.0
    duel = rows[best]["tune"]["duel"]
    assert duel["rate"] == 40.0 and duel["against"] == sorted(valid, key=valid.get)[1] and len(duel["pairs"]) == 4
    line = summary_lines(named_rows(rows))[0]
    assert line.startswith("m seq 32 batch 1, 40 queries/s with p99 ≤ 50 ms, the lowest p99: ship") and best in line
    manifest = {"suite": {"name": "s", "defaults": {"max_rate_under": {"p99_ms": 50}}, "models": [{"name": "m"}],
                          "backends": [{"name": best, "precisions": ["fp32", "bf16"], "streams": [1, 2]}]}}  # fmt: skip
    suite = tuned_suites(manifest, named_rows(rows))[0]
    assert suite["defaults"]["rates"] == [40.0] and suite["defaults"]["p99_ms"] == 50 and "max_rate_under" not in suite["defaults"]
    assert suite["backends"] == [{"name": best}]  # the winner's precision and split only, from the defaults


def test_at_a_given_rate_the_least_memory_wins_among_those_valid_there(monkeypatch, tmp_path):
    """--objective memory: a candidate with the least resident memory but not VALID at the rate (its streams cannot
    keep up) is not the answer; the least memory among those VALID is."""
    from bench.results.tune import outcomes

    monkeypatch.setattr(server, "serve", simulated_serve)
    loads = [candidate("wide", 2, 18.0), candidate("lean", 1, 10.0), candidate("tiny-but-slow", 1, 24.0)]
    for load, rss in zip(loads, (900.0, 400.0, 100.0)):
        load.rss_mb = rss
    rows = tuned(TuneRound, loads, tmp_path, "memory", 40.0)
    assert rows["tiny-but-slow"]["server"]["search"]["max_rate"] is None  # 24 ms calls at 40/s: 96% busy
    assert rows["tiny-but-slow"]["tune"]["rss_mb"] == 100.0
    assert outcomes(named_rows(rows))[0].winner["case_id"] == "lean"
    assert not any("duel" in r["tune"] for r in rows.values())  # memory is not a paired figure


@pytest.mark.parametrize("args", [["--objective", "latency"], ["--rate", "50"]])
def test_an_objective_at_a_rate_needs_its_rate_and_only_it_does(tmp_path, args):
    result = bench_cli("tune", write_suite(tmp_path, SPACE), "--budget", "p99_ms=50", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: tune: --rate: expected a rate (queries a second) with --objective latency")


@pytest.mark.parametrize("count", ["1", "21", "-2", "four"])
def test_a_duel_of_one_segment_or_more_than_twenty_is_refused_in_one_line(tmp_path, count):
    result = bench_cli("tune", write_suite(tmp_path, SPACE), "--budget", "p99_ms=50", "--duel-pairs", count)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: bench tune: argument --duel-pairs: expected 0 (no duel) or a whole number"
                                    " from 2 to 20"), result.stderr
    assert not (tmp_path / "out").exists()


def test_a_candidate_that_fails_the_accuracy_gate_never_becomes_the_best(monkeypatch, tmp_path):
    monkeypatch.setattr(server, "serve", simulated_serve)
    loads = [candidate("fast-but-wrong", 2, 5.0, passes=False), candidate("right", 1, 10.0)]
    rows = tuned(TuneRound, loads, tmp_path)
    assert "fails the accuracy gate" in rows["fast-but-wrong"]["tune"]["decision"]
    assert rows["right"]["tune"]["decision"] == "searched"  # searched fully, not challenged against a wrong best
    assert winner(rows)[0] == "right"


SPACE = """\
name: space
defaults:
  seq_lens: [16]
  threads: [1]
  streams: [1, 2]
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 120, server_seconds: 1}
  max_rate_under: {p99_ms: 80, precision: 0.5, max_probes: 5}
""" + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
  - name: slow
    type: pytorch
"""


def test_the_tuning_suite_makes_every_case_a_rate_search_under_the_budget(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, SPACE.replace("  max_rate_under", "  scenario: offline\n  max_rate_under")))
    cases = expand(tuning_suite(suite, {"p99_ms": 50.0}))
    assert len(cases) == 4 and all(c.server and c.search["p99_ms"] == 50.0 for c in cases)
    assert all(c.search["precision"] == 0.5 and c.measure["rounds"] == 1 for c in cases)


@pytest.mark.parametrize("budget", ["p95_ms=20", "p99_ms=100,ttft_ms=500", "ttft_ms=-1", "ttft_ms=5,ttft_ms=6",
                                    "tpot_ms=50,"])  # fmt: skip
def test_a_budget_that_is_not_a_p99_or_generation_bounds_is_refused_in_one_line(tmp_path, budget):
    from bench.cli.tune import EXPECTED

    result = bench_cli("tune", write_suite(tmp_path, SPACE), "--budget", budget)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: tune: --budget: expected {EXPECTED}") and repr(budget) in result.stderr
    assert not list(tmp_path.glob("results*")) and not (tmp_path / "out").exists()


def test_generation_budgets_need_a_generating_model_and_the_rate_objective(tmp_path):
    from bench.cli.tune import parse_budget

    from bench.errors import BenchError

    assert parse_budget("ttft_ms=500, tpot_ms=50") == {"ttft_ms": 500.0, "tpot_ms": 50.0}
    suite, _ = load_suite(write_suite(tmp_path, GENERATION_SPACE))
    assert tuning_suite(suite, {"ttft_ms": 500.0}).defaults.max_rate_under.model_dump(exclude_none=True) == {
        "ttft_ms": 500.0, "precision": 0.5, "max_probes": 3
    }
    with pytest.raises(BenchError, match="model 'tiny' generates nothing"):
        tuning_suite(load_suite(write_suite(tmp_path, SPACE))[0], {"tpot_ms": 50.0})
    result = bench_cli("tune", write_suite(tmp_path, SPACE), "--budget", "ttft_ms=500")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ttft_ms bounds the tokens of text generation cases" in result.stderr and "'tiny'" in result.stderr
    result = bench_cli("tune", write_suite(tmp_path, SPACE), "--budget", "ttft_ms=500", "--objective", "latency",
                       "--rate", "10")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: tune: --budget: expected p99_ms=MS with --objective latency (it ranks the"
                                     " p99 at the rate), got 'ttft_ms=500'")  # fmt: skip


@two_cpus
@pytest.mark.slow
def test_a_real_tuning_run_prunes_what_cannot_win_and_writes_a_suite_for_the_winner(tmp_path):
    out = tmp_path / "out"
    delays = {"BENCH_DELAY_MS": "tiny-eager:2,tiny-slow:40"}
    suite = write_suite(tmp_path, SPACE)
    result = bench_cli("tune", suite, "--budget", "p99_ms=80", "--out", out, "--duel-pairs", "2", env=delays)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    rows = {(r["backend"], r["streams"]): r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {("eager", 1), ("eager", 2), ("slow", 1), ("slow", 2)}
    first = min(rows.values(), key=lambda r: r["tune"]["order"])
    assert (first["backend"], first["streams"]) == ("eager", 2)  # the highest upper bound: two streams of short calls
    assert first["tune"]["decision"] == "searched" and first["server"]["search"]["max_rate"]
    for slow in (rows["slow", 1], rows["slow", 2]):  # 40 ms calls: at most 50/s on two streams
        assert slow["tune"]["decision"].startswith("pruned") and slow["tune"]["trials"] == 0
    assert "ship eager fp32 2 × 1" in result.stdout, result.stdout
    duel = first["tune"].get("duel")
    contenders = [r["case_id"] for r in rows.values() if r is not first and not r["tune"]["decision"].startswith("pruned")]
    assert (duel is not None) == bool(contenders), (duel, contenders)
    if duel:  # the runner-up's streams were still running: both served the same schedules by turns
        assert duel["against"] in contenders and (len(duel["pairs"]) == 2 or "stopped" in duel), duel
        assert all(duel["sides"][side]["result"] in ("VALID", "INVALID") for side in ("winner", "runner-up")), duel
    tuned = yaml.safe_load((out / "tuned-1.yaml").read_text())
    assert tuned["defaults"]["streams"] == [2] and [b["name"] for b in tuned["backends"]] == ["eager"]
    again = bench_cli("validate", out / "tuned-1.yaml")
    assert again.returncode == 0 and "ok, 1 cases" in again.stdout, again.stderr
    (out / "tuned-1.yaml").unlink()
    resumed = bench_cli("run", "--resume", out)  # a tuning run's resume ends as the tuning run does
    assert resumed.returncode in (0, 1) and (out / "tuned-1.yaml").exists(), resumed.stderr
    assert resumed.stdout.count("ship eager fp32 2 × 1") == 1, resumed.stdout
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Tuning for a latency budget" in markdown and "ship eager fp32 2 × 1" in markdown


GENERATION_SPACE = """\
name: generation-space
defaults:
  threads: [1]
  streams: [1, 2]
  precisions: [fp32]
  generate: {prompt_lens: [16], new_tokens: [2]}
  measure: {warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 300, server_seconds: 1}
  max_rate_under: {p99_ms: 1000, precision: 0.5, max_probes: 3}
""" + TINY_GPT2 + """\
backends:
  - name: eager
    type: pytorch
"""


def test_a_generator_that_batches_its_requests_is_a_candidate_beside_one_request_per_call(tmp_path):
    from bench.run.tune import shape_of

    text = GENERATION_SPACE + """\
  - name: batched
    type: pytorch
    batch_sizes: [4]
    dynamic_batching: {max_wait_ms: 20}
"""
    suite, _ = load_suite(write_suite(tmp_path, text))
    cases = expand(tuning_suite(suite, {"ttft_ms": 200.0, "tpot_ms": 50.0}))
    assert sorted((c.backend, c.streams, c.batch_size, bool(c.batching)) for c in cases) == [
        ("batched", 1, 4, True), ("batched", 2, 4, True), ("eager", 1, 1, False), ("eager", 2, 1, False)]
    assert len({shape_of(c) for c in cases}) == 1  # one shape: batching is weighed against one request per call
    assert all(c.search["ttft_ms"] == 200.0 for c in cases)

@two_cpus
@pytest.mark.slow
def test_a_real_tuning_run_of_a_generator_searches_under_ttft_and_tpot_and_duels_on_the_ttft(tmp_path):
    """bench tune --budget ttft_ms=...,tpot_ms=...: the generation cases' searches hold both bounds at p99 (the
    suite's own p99_ms replaced), the duel compares the TTFT's p99, and the suite written for the winner searches
    under the same bounds."""
    out = tmp_path / "out"
    result = bench_cli("tune", write_suite(tmp_path, GENERATION_SPACE), "--budget", "ttft_ms=200,tpot_ms=50", "--out",
                       out, "--duel-pairs", "2")  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    rows = sorted(map(json.loads, (out / "results.jsonl").read_text().splitlines()), key=lambda r: r["tune"]["order"])
    assert [r["streams"] for r in rows] == [2, 1] and all(r["status"] == "ok" for r in rows)
    search = rows[0]["server"]["search"]
    assert (search["ttft_ms"], search["tpot_ms"], search["p99_ms"]) == (200, 50, None) and search["max_rate"]
    assert all(set(p["bounds"]) == {"TTFT", "TPOT"} for p in search["probes"])
    assert "TTFT ≤ 200 ms, TPOT ≤ 50 ms at p99 (tuned): ship eager fp32" in result.stdout, result.stdout
    duel = rows[0]["tune"].get("duel")
    if duel and "interval" in duel:  # the other split was not pruned: its TTFT p99 against the winner's
        assert duel["figure"] == "TTFT" and "its TTFT p99 is" in result.stdout
    tuned = yaml.safe_load((out / "tuned-1.yaml").read_text())
    assert tuned["defaults"]["max_rate_under"]["ttft_ms"] == 200 and "p99_ms" not in tuned["defaults"]["max_rate_under"]
    assert bench_cli("validate", out / "tuned-1.yaml").returncode == 0


def md_c_p99_ms(servers: int, service_ms: float, rate: float, queries: int = 200_000) -> float:
    """The p99 latency of an M/D/c queue, simulated: Poisson arrivals, `servers` first come first served, every call
    `service_ms` long."""
    import heapq

    arrivals = np.cumsum(np.random.default_rng(1).exponential(1000.0 / rate, queries))
    free, latencies = [0.0] * servers, np.empty(queries)
    for index, arrival in enumerate(arrivals):
        done = max(arrival, heapq.heappop(free)) + service_ms
        heapq.heappush(free, done)
        latencies[index] = done - arrival
    return float(np.percentile(latencies, 99))


@pytest.mark.parametrize("servers, service_ms, budget_ms", [(1, 4.0, 100.0), (2, 8.0, 100.0), (1, 10.0, 50.0),
                                                             (2, 18.0, 50.0), (4, 10.0, 40.0)])  # fmt: skip
def test_the_first_guess_of_a_search_is_a_rate_whose_p99_sits_just_under_the_budget(servers, service_ms, budget_ms):
    """The queueing model the first search starts from (M/M/c's wait halved for calls of a fixed length), against a
    simulated M/D/c queue: at the modelled rate the p99 is under the budget, and within 15% of it, so two or three
    probes in steps of 10% bracket the answer."""
    from bench.run.queueing import erlang_c, modelled_rate

    assert erlang_c(1, 0.7) == pytest.approx(0.7) and erlang_c(2, 1.2) == pytest.approx(1.2**2 / 3.2)
    rate = modelled_rate(servers, service_ms, budget_ms)
    assert 0.85 * budget_ms <= md_c_p99_ms(servers, service_ms, rate) <= budget_ms, rate
    assert modelled_rate(1, 120.0, 100.0) is None  # the call alone is over the budget
