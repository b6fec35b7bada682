"""Generation under load: the figures of vLLM's `bench serve` for the server and closed-loop rows of a generation case.

Each query is one whole greedy generate call (batch × new_tokens tokens). Its times: its *origin* (the scheduled
time in the server scenario, the send in a closed loop), the call's start, the first token, the other tokens, the
end. From them, as vLLM defines them:
- TTFT, time to first token: origin → first token, so the queue before the call is in it;
- TPOT, time per output token: (end to end − TTFT) / (new_tokens − 1), end to end being origin → end;
- ITL, inter-token latency: the gaps between a call's consecutive tokens;
- output tokens/s: the tokens of every query served, over the time from the start to the last query's end;
- goodput (with an `slo`): the queries that met every bound (ttft_ms, tpot_ms, e2e_ms) per second of that time; a
  query never served meets none.

transformers' generate serves one request (its batch of prompts) per call: there is no continuous batching, so a
request waits for the whole call before it, and these figures are not comparable with a vLLM or TGI server's.
"""

from __future__ import annotations

import math
import statistics

from bench.measure.stats import percentile_summary


SLO_BOUNDS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "e2e"}
"""An slo's bounds, in the order they are said."""


def slo_text(slo: dict) -> str:
    return ", ".join(f"{name} ≤ {slo[key]:g} ms" for key, name in SLO_BOUNDS.items() if key in slo)


def query_figures(origin_ms: list[float], first_ms: list[float | None], done_ms: list[float | None],
                  new_tokens: int) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    """TTFT, TPOT and end to end (ms) of each query served; times in ms from one start, None for one never served."""
    ttft, tpot, e2e = [], [], []
    for origin, first, done in zip(origin_ms, first_ms, done_ms):
        if first is None or done is None:
            continue
        ttft.append(first - origin)
        e2e.append(done - origin)
        tpot.append((done - first) / (new_tokens - 1) if new_tokens > 1 else 0.0)
    return ttft, tpot, e2e


def met_slo(ttft: list[float], tpot: list[float], e2e: list[float], slo: dict) -> int:
    """How many of these queries met every bound of `slo`."""
    bounds = [(slo.get("ttft_ms"), ttft), (slo.get("tpot_ms"), tpot), (slo.get("e2e_ms"), e2e)]
    return sum(all(bound is None or values[i] <= bound for bound, values in bounds) for i in range(len(ttft)))


def entry(origin_ms: list[float], first_ms: list[float | None], done_ms: list[float | None], gaps_ms: list[float],
          new_tokens: int, batch_size: int, span_s: float, slo: dict, origin: str) -> dict:  # fmt: skip
    """A round's `generation` entry of its scenario's entry (this module's docstring). `origin`: what latency runs
    from ("scheduled time" or "send")."""
    ttft, tpot, e2e = query_figures(origin_ms, first_ms, done_ms, new_tokens)
    found = {
        "from": origin,
        "new_tokens": new_tokens,
        "ttft_ms": [percentile_summary(ttft)],
        "tpot_ms": [percentile_summary(tpot)],
        "itl_ms": [percentile_summary(gaps_ms)],
        "output_tokens_per_s": [round(len(ttft) * batch_size * new_tokens / span_s, 3) if span_s > 0 else 0.0],
    }
    if slo:
        met = met_slo(ttft, tpot, e2e, slo)
        found.update(slo=slo, met_slo=[met], offered=[len(origin_ms)],
                     goodput_per_s=[round(met / span_s, 3) if span_s > 0 else 0.0])  # fmt: skip
    return found


def merged_entry(scenario_entries: list[dict], origin_key: str) -> dict:
    """A generation case's merged `generation` entry from its rounds' scenario entries (server or closed_loop), whose
    records' `origin_key` are the requests' origins; nothing for another case."""
    if not all(e.get("generation") for e in scenario_entries):
        return {}
    records = [r for e in scenario_entries for r in e.get("records") or []]
    return {"generation": merge([e["generation"] for e in scenario_entries], records, origin_key)}


def merge(entries: list[dict], records: list[dict], origin_key: str) -> dict:
    """The rounds' `generation` entries side by side, TTFT and TPOT pooled over every round's queries (`records`:
    each round's query records, `origin_key` the name of their origin times)."""
    last = entries[-1]

    def per_round(name: str) -> list:
        return [value for e in entries for value in e.get(name) or []]

    ttft, tpot, e2e = [], [], []
    for record in records:
        found = query_figures(record[origin_key], record["first_token_ms"], record["done_ms"], last["new_tokens"])
        ttft, tpot, e2e = ttft + found[0], tpot + found[1], e2e + found[2]
    merged = {
        **last,
        **{name: per_round(name) for name in ("ttft_ms", "tpot_ms", "itl_ms", "output_tokens_per_s")},
        "pooled_ttft_ms": percentile_summary(ttft),
        "pooled_tpot_ms": percentile_summary(tpot),
    }
    if last.get("slo"):
        merged.update(met_slo=per_round("met_slo"), offered=per_round("offered"),
                      goodput_per_s=per_round("goodput_per_s"))  # fmt: skip
    return merged


def token_gaps_ms(token_ns: list[list[int]]) -> list[float]:
    """The gaps between each call's consecutive tokens (ms), every call's together."""
    return [(b - a) / 1e6 for times in token_ns for a, b in zip(times, times[1:])]


def median_of(values: list | None) -> float | None:
    """A per-round figure's median over rounds (None without one)."""
    values = [v for v in values or [] if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def goodput_lines(rows: list[dict]) -> list[str]:
    """Per model, prompt and slo: the configuration and load with the most goodput, and the next, each with the
    share of its requests that met the slo and that share's 95% interval (Clopper-Pearson)."""
    from bench.backends.precision_mode import row_label
    from bench.results.offline import split_text

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        generation = (row.get("server") or row.get("closed_loop") or {}).get("generation") or {}
        if row.get("status") == "ok" and generation.get("slo") and median_of(generation.get("goodput_per_s")) is not None:
            slo = tuple((name, generation["slo"][name]) for name in SLO_BOUNDS if name in generation["slo"])
            groups.setdefault((row.get("model"), row.get("seq_len"), row.get("new_tokens"), slo), []).append(row)
    lines = []
    for (model, prompt, new_tokens, slo), members in groups.items():
        ranked = sorted(members, key=lambda r: -median_of(loaded_generation(r)["goodput_per_s"]))

        def text(row: dict) -> str:
            generation = loaded_generation(row)
            met, offered = sum(generation["met_slo"]), sum(generation["offered"])
            load = f"{row['concurrency']} {'user' if row['concurrency'] == 1 else 'users'}" if row.get("concurrency") \
                else f"{row.get('rate') or 0:g}/s offered"
            low, high = met_interval(met, offered)
            return (f"{row.get('backend')} {row_label(row)} {split_text(row)} at {load}:"
                    f" {median_of(generation['goodput_per_s']):.2f} requests/s met it ({met} of {offered},"
                    f" {met / offered:.0%} [{low:.0%}, {high:.0%}])")  # fmt: skip

        under = slo_text(dict(slo))
        line = f"{model} (prompt {prompt}, +{new_tokens} tokens), most goodput under {under}: {text(ranked[0])}"
        lines.append(line + (f"; next, {text(ranked[1])}." if len(ranked) > 1 else "."))
    return lines


def loaded_generation(row: dict) -> dict:
    return (row.get("server") or row.get("closed_loop") or {}).get("generation") or {}


def met_interval(met: int, offered: int) -> tuple[float, float]:
    """The 95% interval (Clopper-Pearson) of the share of requests that meet the slo."""
    from scipy.stats import binomtest

    found = binomtest(met, offered).proportion_ci(0.95, method="exact")
    return found.low, found.high
