"""Generation under load: TTFT, TPOT, tokens/s and goodput by vLLM's definitions, from each request's scheduled time
(server) or send (closed loop); a generation model's cases under both scenarios; and a real run of both, in which a
stalled call shows in the TTFT from the schedule and not in the TPOT."""

import json
import statistics

import pytest

from bench.plan.matrix import dropped_combinations, expand
from bench.plan.suite import load_suite
from bench.results.generation_load import entry, met_slo, query_figures
from conftest import SERVED_AND_USERS, bench_cli, write_suite

NEW_TOKENS = 8
LOADED = f"""\
name: genload
defaults:
  batch_sizes: [1]
  threads: [1]
  streams: [1]
  precisions: [fp32]
  generate: {{prompt_lens: [16], new_tokens: [{NEW_TOKENS}]}}
  slo: {{ttft_ms: 150, tpot_ms: 1000}}
  measure: {{warmup: 1, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 300, server_seconds: 3}}
models:
  - name: tiny
    config: gpt2
    task: text-generation
    config_overrides: {{n_layer: 2, n_embd: 64, n_head: 2, n_positions: 128, vocab_size: 2048}}
""" + SERVED_AND_USERS
STALL_MS, STALLED_QUERY = 600, 20
"""A request every 50 ms, each a generate call of some 10-20 ms: a 600 ms stall before one call queues a dozen
requests behind it, whose TTFT from the schedule then runs far over the slo's 150 ms while their TPOT is as before."""


def test_ttft_tpot_and_goodput_follow_vllms_definitions():
    # three requests from origins 0, 10, 20 ms; the second never served
    origin, first, done = [0.0, 10.0, 20.0], [5.0, None, 70.0], [12.0, None, 91.0]
    ttft, tpot, e2e = query_figures(origin, first, done, new_tokens=8)
    assert ttft == [5.0, 50.0] and e2e == [12.0, 71.0]
    assert tpot == pytest.approx([(12.0 - 5.0) / 7, (71.0 - 50.0) / 7])  # (e2e − ttft) / (tokens − 1)
    assert met_slo(ttft, tpot, e2e, {"ttft_ms": 10}) == 1
    assert met_slo(ttft, tpot, e2e, {"ttft_ms": 60, "tpot_ms": 2}) == 1
    assert met_slo(ttft, tpot, e2e, {"e2e_ms": 100}) == 2
    found = entry(origin, first, done, [1.0, 1.0, 3.0], 8, 2, span_s=0.5, slo={"ttft_ms": 10}, origin="send")
    assert found["output_tokens_per_s"] == [2 * 2 * 8 / 0.5]  # served requests × batch × tokens / span
    assert found["met_slo"] == [1] and found["offered"] == [3] and found["goodput_per_s"] == [2.0]
    assert found["ttft_ms"][0]["p50"] == 5.0 and found["itl_ms"][0]["p99"] == 3.0


def test_a_generation_model_runs_under_server_and_closed_loop_with_its_slo_and_not_offline(tmp_path):
    suite, _ = load_suite(write_suite(tmp_path, LOADED))
    cases = {c.backend: c for c in expand(suite)}
    assert set(cases) == {"served", "users"}
    assert cases["served"].server and cases["served"].rate == 20 and cases["served"].new_tokens == NEW_TOKENS
    assert cases["users"].closed_loop and cases["users"].concurrency == 2
    assert all(c.slo == {"ttft_ms": 150, "tpot_ms": 1000} for c in cases.values())
    tighter, _ = load_suite(write_suite(tmp_path, LOADED.replace("ttft_ms: 150", "ttft_ms: 50"), "other.yaml"))
    assert {c.case_id for c in expand(tighter)} == {c.case_id for c in cases.values()}  # a bound is not the case
    offline, _ = load_suite(write_suite(tmp_path, LOADED.replace("scenario: server", "scenario: offline"), "o.yaml"))
    assert {c.backend for c in expand(offline)} == {"users"}
    assert any("offline measures forward-pass cases only" in n for n in dropped_combinations(offline))


def test_an_slo_where_no_generation_runs_under_load_is_said_to_be_ignored(tmp_path):
    text = LOADED.replace("    scenario: closed-loop\n    concurrency: [2]\n", "")
    notes = dropped_combinations(load_suite(write_suite(tmp_path, text))[0])
    assert "tiny on users: slo applies to generation cases under scenario server or closed-loop only" in notes


def test_an_empty_slo_is_named_with_its_field(tmp_path):
    result = bench_cli("validate", write_suite(tmp_path, LOADED.replace("{ttft_ms: 150, tpot_ms: 1000}", "{}")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "defaults.slo: expected at least one of ttft_ms, tpot_ms and e2e_ms, got none" in result.stderr


@pytest.mark.slow
def test_a_real_run_serves_generation_and_a_stall_shows_in_the_ttft_from_the_schedule_not_in_the_tpot(tmp_path):
    from bench.measure.stats import percentiles

    out = tmp_path / "out"
    env = {"BENCH_STALL": f"tiny-served:{STALLED_QUERY}:{STALL_MS}"}
    result = bench_cli("run", write_suite(tmp_path, LOADED), "--out", out, env=env)
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert all(r["status"] == "ok" and r["accuracy"]["passed"] for r in rows.values()), result.stdout + result.stderr

    server = rows["served"]["server"]
    [records] = server["records"]
    generation = server["generation"]
    assert server["queries"] == len(records["first_token_ms"]) == 60 and None not in records["done_ms"]
    ttft = [first - due for due, first in zip(records["scheduled_ms"], records["first_token_ms"])]
    tpot = [(end - first) / (NEW_TOKENS - 1) for first, end in zip(records["first_token_ms"], records["done_ms"])]
    delay = [start - due for due, start in zip(records["scheduled_ms"], records["dispatch_ms"])]
    assert all(t >= d for t, d in zip(ttft, delay))  # the first token comes after the call starts
    assert ttft[STALLED_QUERY] >= STALL_MS and sum(t > 150 for t in ttft) >= 5  # the queue behind the stall
    assert generation["pooled_ttft_ms"]["p99"] == pytest.approx(percentiles(sorted(ttft))["p99"], abs=0.01)
    assert generation["pooled_tpot_ms"]["p99"] == pytest.approx(percentiles(sorted(tpot))["p99"], abs=0.01)
    assert generation["pooled_ttft_ms"]["p99"] > STALL_MS / 2
    assert generation["pooled_tpot_ms"]["p99"] < STALL_MS / 20  # the stall is before the call: no token is slower
    met = sum(t <= 150 and p <= 1000 for t, p in zip(ttft, tpot))
    assert generation["met_slo"] == [met] and 0 < met <= 60 - 5
    span_s = (max(records["done_ms"])) / 1000
    assert generation["goodput_per_s"][0] == pytest.approx(met / span_s, rel=0.01)
    assert generation["output_tokens_per_s"][0] == pytest.approx(60 * NEW_TOKENS / span_s, rel=0.01)

    closed = rows["users"]["closed_loop"]
    [records] = closed["records"]
    ttft = [first - sent for sent, first in zip(records["sent_ms"], records["first_token_ms"])]
    wait = [start - sent for sent, start in zip(records["sent_ms"], records["dispatch_ms"])]
    assert closed["generation"]["from"] == "send" and all(t >= w for t, w in zip(ttft, wait))
    calls = [end - start for start, end in zip(records["dispatch_ms"], records["done_ms"])]
    assert statistics.median(wait) > 0.5 * statistics.median(calls)  # two users, one stream: each waits for a call
    tokens_per_s = closed["generation"]["output_tokens_per_s"][0]
    assert tokens_per_s == pytest.approx(closed["completed_per_s"] * NEW_TOKENS, rel=0.01)

    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "### Generation under load" in markdown and "| 2 users |" in markdown and "| TTFT ≤ 150 ms, TPOT ≤ 1000 ms |" in markdown


SEARCHED = LOADED.replace("new_tokens: [8]", "new_tokens: [2]").replace(SERVED_AND_USERS, """\
backends:
  - name: searched
    type: pytorch
    scenario: server
    max_rate_under: {ttft_ms: 200, tpot_ms: 50, start: 50, precision: 0.5, max_probes: 2}
""")
"""Generate calls of two tokens (a few ms): a request every 20 ms keeps TTFT far under 200 ms even while a 2-vCPU VM
runs at half its speed; the second probe doubles the rate."""


@pytest.mark.slow
def test_a_real_search_under_ttft_and_tpot_bounds_judges_each_from_the_requests_it_records(tmp_path):
    from bench.measure.stats import percentiles
    from bench.results.server import bounded_figures, judge

    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, SEARCHED), "--out", out)
    [row] = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert row["status"] == "ok" and row["accuracy"]["passed"], result.stdout + result.stderr
    server = row["server"]
    search = server["search"]
    assert (search["ttft_ms"], search["tpot_ms"], search["p99_ms"]) == (200, 50, None)
    first = search["probes"][0]
    assert first["rate"] == 50 and first["queries"] > 500, first  # Poisson: about 600
    assert set(first["bounds"]) == {"TTFT", "TPOT"}
    valid = [p["rate"] for p in search["probes"] if p["result"] == "VALID"]
    assert search["max_rate"] == (max(valid) if valid else None)
    if valid:  # how fast the machine was decides which probe the row shows, never how it is judged
        assert server["rate"] == search["max_rate"]
    [records] = server["records"]
    bounds = {"ttft_ms": 200, "tpot_ms": 50}
    recomputed = judge(bounds, bounded_figures(bounds, [], [records], 2), len(records["scheduled_ms"]))
    assert (recomputed["result"], recomputed["bounds"]) == (server["validity"]["result"], server["validity"]["bounds"])
    ttft = [f - due for due, f in zip(records["scheduled_ms"], records["first_token_ms"]) if f is not None]
    tpot = [d - f for f, d in zip(records["first_token_ms"], records["done_ms"]) if f is not None]  # 2 tokens
    validity = server["validity"]
    assert validity["queries"] == len(records["scheduled_ms"])
    unserved = validity["queries"] - len(ttft)
    assert validity["bounds"]["TTFT"]["over_bound"] == sum(t > 200 for t in ttft) + unserved
    assert validity["bounds"]["TPOT"]["over_bound"] == sum(t > 50 for t in tpot) + unserved
    assert server["generation"]["pooled_ttft_ms"]["p99"] == pytest.approx(percentiles(sorted(ttft))["p99"], abs=0.01)
    shown = bench_cli("show", out, "--format", "md").stdout
    assert "| search, TTFT ≤ 200 ms, TPOT ≤ 50 ms at p99 |" in shown, shown


def loaded_row(backend: str, users: int, met: int, offered: int, goodput: float) -> dict:
    generation = {"slo": {"tpot_ms": 50, "ttft_ms": 500}, "met_slo": [met], "offered": [offered],
                  "goodput_per_s": [goodput]}  # fmt: skip
    return {"status": "ok", "model": "gpt2", "seq_len": 32, "new_tokens": 16, "backend": backend, "precision": "fp32",
            "streams": 2, "threads": 1, "concurrency": users, "scenario": "closed-loop",
            "closed_loop": {"generation": generation}}  # fmt: skip


def test_the_goodput_answer_names_the_most_goodput_first_with_the_share_met_and_its_exact_interval():
    from bench.results.generation_load import goodput_lines

    [line] = goodput_lines([loaded_row("ort", 2, 24, 25, 2.38), loaded_row("openvino", 2, 26, 26, 2.53)])
    assert line.startswith("gpt2 (prompt 32, +16 tokens), most goodput under TTFT ≤ 500 ms, TPOT ≤ 50 ms: openvino")
    low = 0.025 ** (1 / 26)  # Clopper-Pearson's lower end when every request met it
    assert f"(26 of 26, 100% [{low:.0%}, 100%]); next, ort fp32 2 × 1 at 2 users: 2.38 requests/s" in line


BATCHED = LOADED.replace(SERVED_AND_USERS, """\
backends:
  - name: batched
    type: pytorch
    scenario: server
    rates: [100]
    arrivals: constant
    batch_sizes: [4]
    dynamic_batching: {max_wait_ms: 40}
""")
"""A request every 10 ms, gathered for up to 40 ms into calls of up to 4 sequences: a call's first request waits for
the fourth (30 ms) unless the stream is still busy, and then the queue fills the batch."""


@pytest.mark.slow
@pytest.mark.parametrize("backend_type", ["pytorch", "onnxruntime", "openvino"])
def test_a_generator_batches_its_requests_a_sequence_each_and_the_wait_is_in_the_ttft(tmp_path, backend_type):
    """Each backend's generate takes the prompts gathered as one batch; its answers pass the gate against eager."""
    out = tmp_path / "out"
    suite = BATCHED.replace("    type: pytorch\n", f"    type: {backend_type}\n")
    result = bench_cli("run", write_suite(tmp_path, suite), "--out", out)
    [row] = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert row["status"] == "ok" and row["accuracy"]["passed"], result.stdout + result.stderr
    server = row["server"]
    batching = server["batching"]
    assert batching["max_batch"] == 4 and batching["padded"] is False and batching["mean_batch"] >= 2, batching
    [records] = server["records"]
    assert None not in records["done_ms"] and None not in records["first_token_ms"]
    calls = {}
    for index, call in enumerate(zip(records["dispatch_ms"], records["first_token_ms"], records["done_ms"])):
        calls.setdefault(call, []).append(index)
    sizes = sorted(len(queries) for queries in calls.values())
    assert sum(sizes) == server["queries"] and max(sizes) == 4  # the queries of a call share its start, first token, end
    assert len(calls) == batching["calls"] and statistics.fmean(sizes) == pytest.approx(batching["mean_batch"], abs=1e-3)
    for (start, first, _), queries in calls.items():
        assert queries == list(range(queries[0], queries[0] + len(queries)))  # in arrival order
        waited = start - records["scheduled_ms"][queries[0]]
        assert len(queries) == 4 or waited >= 39  # a short batch only once the wait was over
        ttft = first - records["scheduled_ms"][queries[0]]
        assert ttft >= waited >= 0  # the first token after the gathering wait
    own = row["generation"]  # the calls' own figures: a call's tokens/s counts the sequences it carried
    if len(set(sizes)) > 1:
        assert own["tokens_per_s"] is None and own["decode_tokens_per_s"] is None, own
    else:
        assert own["tokens_per_s"] == pytest.approx(sizes[0] * NEW_TOKENS / (own["e2e_ms"]["median"] / 1000))
    span_s = max(records["done_ms"]) / 1000
    tokens_per_s = server["generation"]["output_tokens_per_s"][0]
    assert tokens_per_s == pytest.approx(server["queries"] * NEW_TOKENS / span_s, rel=0.01)  # a sequence a request
    shown = bench_cli("show", out, "--format", "md").stdout
    assert "≤4 dynamic (wait 40 ms, a sequence each)" in shown, shown
