"""The results tables, as text cells (Markdown, HTML) and as raw values (CSV)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from bench.report import pipelines, roofline
from bench.results.compare import main_baseline_label
from bench.backends.precision_mode import row_label
from bench.results.compare import machine_of
from bench.report.data import Entry, accuracy_text, groups, sort_key
from bench.results.rows import count_text, preparation_ms
from bench.results.server import bounds_text
from bench.text import plural
from bench.measure.stats import STATISTICS, UNITLESS

FASTEST, TIED, FAILS = "★ fastest", "★ tied", "⚠ fails accuracy"


def number(value, digits: int = 2) -> str:
    """Fixed decimals below 100, whole numbers above: 3.14, 31.42, 314."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"


def mark(entry: Entry) -> str:
    if entry.fastest:
        return FASTEST
    if entry.tied:
        return TIED
    if entry.beats_fastest_but_fails:
        return FAILS
    return ""


def _latency(entry: Entry, key: str):
    return entry.row["latency_ms"].get(key) if entry.ok else None


def _timing(entry: Entry, key: str):
    return (entry.row.get("timings_ms") or {}).get(key)


def _peak_mb(entry: Entry, key: str = "peak_rss_mb"):
    return (entry.row.get("memory") or {}).get(key)


def interval(values, digits: int = 2) -> str:
    return f"{number(values[0], digits)}–{number(values[1], digits)}" if values else "-"


def speedup_text(entry: Entry) -> str:
    return entry.comparison.text() if entry.comparison else "-"


def versus_main_text(entry: Entry) -> str:
    return entry.versus_main.text() if entry.versus_main else "-"


VERSUS_MAIN = "vs main"
"""Placeholder name of the cross-environment column, headed by main_baseline_label in `columns`."""


def _cv(entry: Entry):
    cv = _latency(entry, "cv")
    return None if cv is None else 100 * cv


def sample_count(entry: Entry) -> int:
    return len(entry.row.get("samples_ms") or [])


def cv_text(entry: Entry) -> str:
    """CV with the sample count beside it (and the rounds, when several); no CV from fewer than 2 samples."""
    if not entry.ok:
        return "-"
    count = count_text(entry.row)
    return f"- ({count})" if sample_count(entry) < 2 else f"{number(_cv(entry), 1)} ({count})"


COLUMNS = (
    ("", mark),
    ("seq", lambda e: str(e.row.get("seq_len"))),
    ("batch", lambda e: str(e.row.get("batch_size"))),
    ("threads", lambda e: str(e.row.get("threads"))),
    ("padding", lambda e: f"{e.row.get('padding_ratio') or 0:g}"),
    ("backend", lambda e: str(e.row.get("backend"))),
    ("precision", lambda e: row_label(e.row)),
    ("env", lambda e: str(e.row.get("environment") or "main")),
    ("median ms", lambda e: number(_latency(e, "median"))),
    ("95% CI ms", lambda e: interval(e.median_ci) if e.ok else "-"),
    ("p90 ms", lambda e: number(_latency(e, "p90"))),
    ("CV % (n)", cv_text),
    ("samples/s", lambda e: number((e.row.get("throughput") or {}).get("samples_per_s"), 1)),
    ("speedup [95% CI]", speedup_text),
    (VERSUS_MAIN, versus_main_text),
    ("accuracy", accuracy_text),
    ("prepare ms", lambda e: number(preparation_ms(e.row))),
    ("1st call ms", lambda e: number(_timing(e, "first_call"))),
    ("peak MB", lambda e: number(_peak_mb(e), 0)),
    ("loop peak MB", lambda e: number(_peak_mb(e, "peak_rss_loop_mb"), 0)),
    ("GFLOP/s", lambda e: number(e.gflops, 1)),
    ("% peak", lambda e: number(e.pct_peak, 1) + (" mixed" if roofline.mixed(e.row) and e.pct_peak else "")
     + (" ⚠" if e.notes else "")),
)


def columns(entries: list[Entry]) -> list[tuple]:
    """The table's columns; padding only when some case is padded; the speedup against main's eager fp32 only when
    some case ran in another environment (its own speedup is against its own environment's eager fp32)."""
    padded = any(e.row.get("padding_ratio") for e in entries)
    across = any(e.versus_main is not None for e in entries)
    chosen = [c for c in COLUMNS if (c[0] != "padding" or padded) and (c[0] != VERSUS_MAIN or across)]
    label = main_baseline_label([e.row for e in entries])
    return [(label, c[1]) if c[0] == VERSUS_MAIN else c for c in chosen]


def by_model(entries: list[Entry]) -> dict[tuple[str, str], list[Entry]]:
    """(model, task) → its cases in table order: shape, threads, then fastest first."""
    tables: dict[tuple[str, str], list[Entry]] = {}
    for entry in sorted(entries, key=sort_key):
        tables.setdefault((str(entry.row.get("model")), str(entry.row.get("task"))), []).append(entry)
    return tables


def result_tables(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Heading → its cases: a table per model and task (the caller groups a run of several machines by machine)."""
    return {f"{model} ({task})": members for (model, task), members in by_model(entries).items()}


def table_cells(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    cols = columns(entries)
    return [c[0] for c in cols], [[c[1](e) for c in cols] for e in entries]


SUMMARY_HEADER = [
    "model", "task", "seq", "batch", "threads", "fastest passing", "median ms", "95% CI ms", "speedup [95% CI]",
    "tied with it", "note",
]  # fmt: skip


def summary_cells(entries: list[Entry]) -> list[list[str]]:
    """One line per shape and thread count: the fastest trusted configuration, and those tied with it."""
    lines = []
    for members in sorted(groups(entries).values(), key=lambda m: sort_key(m[0])):
        first = members[0].row
        best = next((e for e in members if e.fastest), None)
        shape = [str(first.get(k)) for k in ("model", "task", "seq_len", "batch_size", "threads")]
        note = summary_note(members)
        if best is None:
            lines.append([*shape, "none passes and is trusted", "-", "-", "-", "-", note])
        else:
            tied = ", ".join(e.label for e in members if e.tied) or "-"
            cells = [best.label, number(best.median), interval(best.median_ci), speedup_text(best), tied]
            lines.append([*shape, *cells, note])
    return lines


def summary_note(members: list[Entry]) -> str:
    flagged = [e.label for e in members if e.beats_fastest_but_fails]
    untrusted = [f"{e.label} ({', '.join(e.distrust)})" for e in members if e.accuracy_passed and e.distrust]
    notes = ["faster but failing accuracy: " + ", ".join(flagged)] if flagged else []
    notes += ["not compared: " + ", ".join(untrusted)] if untrusted else []
    return "; ".join(notes)


CSV_FIELDS = (
    "case_id", "model", "task", "backend", "backend_type", "environment", "precision", "seq_len", "batch_size",
    "threads", "padding_ratio", "baseline", "status", "reason",
)  # fmt: skip


def csv_record(entry: Entry) -> dict:
    row = entry.row
    record = {k: row.get(k) for k in CSV_FIELDS}
    record["machine"] = machine_of(row)
    record.update({f"latency_{k}" if k in UNITLESS else f"latency_{k}_ms": _latency(entry, k) for k in STATISTICS})
    record["samples"] = sample_count(entry) if entry.ok else None
    low, high = entry.median_ci or (None, None)
    record.update(latency_median_ci_low_ms=low, latency_median_ci_high_ms=high)
    throughput = row.get("throughput") or {}
    accuracy = row.get("accuracy") or {}
    record.update(
        samples_per_s=throughput.get("samples_per_s"),
        tokens_per_s=throughput.get("tokens_per_s"),
        speedup=entry.speedup,
        **speedup_record(entry),
        environment=row.get("environment"),
        **precision_record(row),
        speedup_vs_main=entry.versus_main.shown if entry.versus_main else None,
        accuracy_passed=accuracy.get("passed") if entry.ok else None,
        relative_error=accuracy.get("relative_error"),
        max_abs_diff=accuracy.get("max_abs_diff"),
        cosine=accuracy.get("cosine"),
        argmax_agreement=accuracy.get("argmax_agreement"),
        **generation_record(entry),
        **pipelines.record(entry),
        load_ms=_timing(entry, "load"),
        prepare_ms=preparation_ms(entry.row),
        first_call_ms=_timing(entry, "first_call"),
        peak_rss_mb=_peak_mb(entry),
        rss_after_prepare_mb=_peak_mb(entry, "rss_after_prepare_mb"),
        peak_rss_loop_mb=_peak_mb(entry, "peak_rss_loop_mb"),
        flops=entry.flops,
        gflops_per_s=entry.gflops,
        peak_gflops_per_s=entry.peak_gflops,
        percent_of_peak=entry.pct_peak,
        fastest=entry.fastest,
        tied_with_fastest=entry.tied,
        not_compared_because="; ".join(entry.distrust) if entry.ok else None,
        faster_but_fails_accuracy=entry.beats_fastest_but_fails,
        warnings="; ".join(map(str, row.get("warnings") or [])),
    )
    return record


def generation_record(entry: Entry) -> dict:
    """A generation case's figures (docs/results.md#text-generation); empty cells for a forward-pass case."""
    row, accuracy = entry.row, entry.row.get("accuracy") or {}
    return {
        "new_tokens": row.get("new_tokens"),
        "ttft_median_ms": _generation(entry, "ttft_ms", "median"),
        "decode_ms_per_token_median": _generation(entry, "decode_ms_per_token", "median"),
        "decode_ms_per_token_p90": _generation(entry, "decode_ms_per_token", "p90"),
        "decode_tokens_per_s": _generation(entry, "decode_tokens_per_s"),
        "generated_tokens_per_s": _generation(entry, "tokens_per_s"),
        "token_agreement": accuracy.get("token_agreement"),
        "first_divergence": accuracy.get("first_divergence"),
    }


def speedup_record(entry: Entry) -> dict:
    comparison = entry.comparison
    low, high = comparison.interval if comparison and comparison.interval else (None, None)
    return {"speedup_ci_low": low, "speedup_ci_high": high, "speedup_verdict": comparison and comparison.verdict}


def precision_record(row: dict) -> dict:
    recorded = row.get("precision_mode") if isinstance(row.get("precision_mode"), dict) else {}
    return {f"precision_{k}": recorded.get(k) for k in ("weights", "compute", "how", "label")}


def to_csv(entries: list[Entry]) -> str:
    records = [csv_record(e) for e in sorted(entries, key=sort_key)]
    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return out.getvalue()


GENERATION_HEADER = [
    "model", "prompt", "new", "batch", "threads", "backend", "precision", "TTFT ms", "decode ms/token",
    "decode p90 ms", "decode tok/s", "tok/s (e2e)", "speedup [95% CI]", "token agreement",
]  # fmt: skip


def _generation(entry: Entry, key: str, statistic: str | None = None):
    value = (entry.row.get("generation") or {}).get(key) if entry.ok else None
    return (value or {}).get(statistic) if statistic else value


def token_agreement_text(entry: Entry) -> str:
    """The share of generated tokens equal to eager fp32's, and where they first diverged."""
    accuracy = entry.row.get("accuracy") or {}
    agreement = accuracy.get("token_agreement")
    if not entry.ok or agreement is None:
        return accuracy_text(entry)
    first = accuracy.get("first_divergence")
    verdict = "" if accuracy.get("passed") else "FAIL "
    return f"{verdict}{agreement:.0%}" + (f" (first divergence at {first})" if first is not None else "")


def generation_cells(entries: list[Entry]) -> list[list[str]]:
    """One line per generation case (rows with `new_tokens`), in table order: the per-token figures
    (docs/results.md#text-generation); the speedup is over eager fp32's whole generate call at the same shape."""
    cells = []
    for e in sorted((e for e in entries if e.row.get("new_tokens")), key=sort_key):
        row = e.row
        cells.append([
            str(row.get("model")), str(row.get("seq_len")), str(row.get("new_tokens")), str(row.get("batch_size")),
            str(row.get("threads")), str(row.get("backend")), row_label(row),
            number(_generation(e, "ttft_ms", "median")), number(_generation(e, "decode_ms_per_token", "median")),
            number(_generation(e, "decode_ms_per_token", "p90")), number(_generation(e, "decode_tokens_per_s"), 1),
            number(_generation(e, "tokens_per_s"), 1), speedup_text(e), token_agreement_text(e),
        ])  # fmt: skip
    return cells


RESOLUTION_TARGET = 0.05
"""What a paired speedup should resolve: the shapes whose median 95% half-width is within it are marked."""


def resolution(rows: list[dict]) -> tuple[str, list[str], list[list[str]]] | None:
    """Per shape, how narrow the paired speedups' 95% intervals came out, and whether they reach ±5%: calls of a
    second or more take a block each, a pair then spans seconds of the machine's drift, and resolves less.
    (intro, header, rows), or None when no speedup was paired."""
    from bench.results.compare import resolution_by_shape

    shapes = resolution_by_shape(rows)
    if not shapes:
        return None
    cells = []
    for (model, seq, batch, threads, padding), count, width in shapes:
        shape = f"{model} seq {seq} batch {batch} {threads} thread(s)" + (f" padding {padding:g}" if padding else "")
        cells.append([shape, str(count), f"±{width:.1%}", "yes" if width <= RESOLUTION_TARGET else "no"])
    intro = (
        f"The median 95% half-width of the paired speedups of each shape, and whether it is within"
        f" ±{RESOLUTION_TARGET:.0%} (docs/paired.md)."
    )
    return intro, ["shape", "paired speedups", "median half-width", f"within ±{RESOLUTION_TARGET:.0%}"], cells


def load_order(row: dict) -> tuple:
    """A row under load's place in its table: model, backend, precision, sequence, then streams and threads."""
    return (str(row.get("model")), str(row.get("backend")), str(row.get("precision")), row.get("seq_len") or 0,
            row.get("streams") or 1, -(row.get("threads") or 1))  # fmt: skip


def load_cells(row: dict) -> list[str]:
    """The cells every table under load opens with: model to batch, and the split of the CPUs."""
    from bench.results.offline import split_text

    seq = f"{row['texts']} texts" if row.get("texts") else str(row.get("seq_len"))
    return [str(row.get("model")), str(row.get("backend")), row_label(row), str(row.get("environment") or "main"),
            seq, batch_text(row), split_text(row)]


def batch_text(row: dict) -> str:
    """The batch size, or for a server row that batches dynamically its largest batch, its wait and what a call was
    padded to, as its server record says (bench.run.server.padding_of)."""
    batching = row.get("batching")
    if not batching:
        return str(row.get("batch_size"))
    served = (row.get("server") or {}).get("batching") or {}
    carried = PADDING_TEXT.get(served.get("padded_to"), "padded") if served.get("padded") else "a sequence each"
    how = f", {carried}" if served else ""  # a row that served nothing says nothing of padding
    return f"≤{row.get('batch_size')} dynamic (wait {batching['max_wait_ms']:g} ms{how})"


PADDING_TEXT = {"each call's longest text": "padded to its longest text", "the batch size": "padded"}


def ms(value) -> str:
    return f"{value:.2f}" if value is not None else "-"


OFFLINE_HEADER = ["model", "backend", "precision", "env", "seq", "batch", "streams × threads", "samples/s [95% CI]",
                  "vs 1 stream [95% CI]", "p50 ms", "p99 ms", "accuracy"]  # fmt: skip
OFFLINE_LEGEND = (
    "Offline: every stream of a case calls back to back at once, each a worker process pinned to threads CPUs of its"
    " own. samples/s is what they completed together inside the measured windows (the ramp left out), measured"
    " under load, not batch ÷ median; its interval comes from the spread between process rounds. vs 1 stream: the"
    " split's samples/s over the single-stream split's, paired window by window. p50 and p99: each call's latency"
    " under that load (docs/scenarios.md)."
)


def offline_cells(rows: list[dict]) -> list[list[str]]:
    from bench.report.data import accuracy_text as entry_accuracy
    from bench.results import offline

    rates, ratios = offline.throughputs(rows), offline.split_ratios(rows)
    found = []
    for row in sorted(rows, key=load_order):
        common = load_cells(row)
        if row.get("status") != "ok":
            found.append(common + [str(row.get("status")), "-", "-", "-", str(row.get("reason") or "-")])
            continue
        ratio = ratios.get(row["case_id"])
        role = (row.get("paired") or {}).get("role")
        p50, p99 = (offline.latency_percentile(row, name) for name in ("p50", "p99"))
        found.append(common + [
            rates[row["case_id"]].text(1), ratio.text(3, "x") if ratio else ("baseline" if role == "baseline" else "-"),
            ms(p50), ms(p99), entry_accuracy(Entry(row)),
        ])  # fmt: skip
    return found


SERVER_HEADER = ["model", "backend", "precision", "env", "seq", "batch", "streams × threads", "offered /s",
                 "achieved /s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "dispatch p99 ms", "max queue", "result",
                 "accuracy"]  # fmt: skip
SERVER_LEGEND = (
    "Server: queries arrive on a seeded schedule at the offered rate and streams serve them first come first served;"
    " latency runs from each query's scheduled time (queueing included), over every round's queries, '-' where a"
    " percentile falls on a query never served. dispatch: scheduled time to the call's start (for a batch dynamic"
    " batching gathers, its wait included). result: VALID when p99"
    " is under the suite's p99_ms with 99% confidence (LoadGen's early stopping; its 600 s minimum waived), with"
    " the reason otherwise; a generation case's search may bound TTFT's and TPOT's p99 instead, each judged so"
    " (docs/scenarios.md)."
)


def server_cells(rows: list[dict]) -> list[list[str]]:
    from bench.report.data import accuracy_text as entry_accuracy

    found = []
    for row in sorted(rows, key=lambda r: (*load_order(r), r.get("rate") or 0)):
        server = row.get("server") or {}
        search = server.get("search")
        offered = f"search, {bounds_text(search)}" if search else f"{row.get('rate') or 0:g}"
        common = load_cells(row) + [offered]
        if row.get("status") != "ok" or not server:
            why = row.get("reason") or (row.get("tune") or {}).get("decision") or "-"
            found.append(common + [str(row.get("status"))] + ["-"] * 6 + [str(why), "-"])
            continue
        latency = server.get("pooled_latency_ms") or {}
        delay = max((d.get("p99") or 0.0 for d in server.get("dispatch_delay_ms") or [] if d), default=None)
        validity = server.get("validity") or {}
        result = validity.get("short") or validity.get("result", "-")
        if search:
            best = search.get("max_rate")
            probes = len(search.get("probes") or [])
            result = f"max VALID {best:g}/s ({probes} probes)" if best else f"none VALID ({probes} probes)"
        found.append(common + [
            f"{server.get('achieved_per_s', 0):.1f}", ms(latency.get("p50")), ms(latency.get("p90")),
            ms(latency.get("p99")), ms(latency.get("p99_9")), ms(delay), str(server.get("max_queue_depth", "-")),
            result, entry_accuracy(Entry(row)),
        ])  # fmt: skip
    return found


CLOSED_LOOP_HEADER = ["model", "backend", "precision", "env", "seq", "batch", "streams × threads", "users",
                      "completed /s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "queue wait p99 ms", "call p50 ms",
                      "accuracy"]  # fmt: skip
CLOSED_LOOP_LEGEND = (
    "Closed loop: each user sends its next query as soon as its last is answered, and the streams serve them first"
    " come first served. Latency runs from each query's send, over every round's queries; queue wait: send to the"
    " call's start; call: the call alone. The load follows the system (a slower one is offered less), so these"
    " figures are not comparable with the server table's, whose latency runs from a fixed schedule"
    " (docs/scenarios.md)."
)


def closed_loop_cells(rows: list[dict]) -> list[list[str]]:
    from bench.report.data import accuracy_text as entry_accuracy
    from bench.results.closed_loop import pooled_latency

    found = []
    for row in sorted(rows, key=lambda r: (*load_order(r), r.get("concurrency") or 0)):
        entry = row.get("closed_loop") or {}
        common = load_cells(row) + [str(row.get("concurrency") or "-")]
        if row.get("status") != "ok" or not entry:
            found.append(common + [str(row.get("status"))] + ["-"] * 6 + [str(row.get("reason") or "-")])
            continue
        latency = pooled_latency(row)
        wait = max((w.get("p99") or 0.0 for w in entry.get("wait_ms") or [] if w), default=None)
        call = [s["p50"] for s in entry.get("service_ms") or [] if s]
        found.append(common + [
            f"{entry.get('completed_per_s', 0):.1f}", ms(latency.get("p50")), ms(latency.get("p90")),
            ms(latency.get("p99")), ms(latency.get("p99_9")), ms(wait), ms(max(call) if call else None),
            entry_accuracy(Entry(row)),
        ])  # fmt: skip
    return found


GENERATION_LOAD_HEADER = ["model", "backend", "precision", "env", "prompt", "new tokens", "batch", "streams × threads",
                          "load", "requests /s", "output tokens /s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms",
                          "TPOT p99 ms", "ITL p99 ms", "goodput /s", "slo", "accuracy"]  # fmt: skip
GENERATION_LOAD_LEGEND = (
    "Generation under load, as vLLM's bench serve defines it: each request is one whole greedy generate call. TTFT:"
    " from the request's scheduled time (server) or send (closed loop) to its first token, so its wait in the queue"
    " is in it; TPOT: (end to end − TTFT) / (new tokens − 1); ITL: the gaps between tokens; percentiles over every"
    " round's requests. goodput: the requests that met every bound of the suite's slo, per second (a request never"
    " served meets none). transformers' generate has no continuous batching: a request waits for whole calls"
    " before it, so these figures are not comparable with a vLLM or TGI server's (docs/scenarios.md)."
)


def generation_load_cells(rows: list[dict]) -> list[list[str]]:
    from bench.report.data import accuracy_text as entry_accuracy
    from bench.results.generation_load import median_of, slo_text

    found = []
    for row in sorted(rows, key=lambda r: (*load_order(r), r.get("rate") or 0, r.get("concurrency") or 0)):
        entry = row.get("server") or row.get("closed_loop") or {}
        generation = entry.get("generation") or {}
        search = entry.get("search")
        if row.get("scenario") == "closed-loop":
            users = row.get("concurrency")
            load = f"{users} {plural('user', users)}" if users else f"users search, {bounds_text(search or {})}"
        else:
            load = f"search, {bounds_text(search)}" if search else f"{row.get('rate') or 0:g}/s"
        shape = load_cells(row)  # model to split, with the new tokens after the prompt
        common = [*shape[:5], str(row.get("new_tokens")), *shape[5:], load]
        if row.get("status") != "ok" or not generation:
            found.append(common + [str(row.get("status"))] + ["-"] * 8 + [str(row.get("reason") or "-")])
            continue
        ttft = generation.get("pooled_ttft_ms") or next(iter(generation.get("ttft_ms") or []), None) or {}
        tpot = generation.get("pooled_tpot_ms") or next(iter(generation.get("tpot_ms") or []), None) or {}
        itl = max((i.get("p99") or 0.0 for i in generation.get("itl_ms") or [] if i), default=None)
        rate = entry.get("achieved_per_s", entry.get("completed_per_s"))
        goodput = median_of(generation.get("goodput_per_s"))
        slo = generation.get("slo")
        found.append(common + [
            f"{rate or 0:.2f}", f"{median_of(generation.get('output_tokens_per_s')) or 0:.1f}",
            ms(ttft.get("p50")), ms(ttft.get("p99")), ms(tpot.get("p50")), ms(tpot.get("p99")), ms(itl),
            f"{goodput:.2f}" if slo and goodput is not None else "-", slo_text(slo) if slo else "-",
            entry_accuracy(Entry(row)),
        ])  # fmt: skip
    return found


TUNE_HEADER = ["model", "seq", "batch", "configuration", "order", "upper bound /s", "decision", "max VALID /s (users)",
               "lowest failing /s (users)", "trials", "seconds", "accuracy"]  # fmt: skip


def tune_cells(rows: list[dict]) -> list[list[str]]:
    """A line per candidate, in the order tried, its decision and what its probes found."""
    from bench.report.data import accuracy_text as entry_accuracy
    from bench.results.tune import bracket, bracket_cells, configuration, outcomes

    found = []
    for outcome in outcomes(rows):
        for row in outcome.rows:
            tune = row["tune"]
            low, high = bracket(row)
            mark = " ★" if row is outcome.winner else ""
            found.append([
                str(row.get("model")), str(row.get("seq_len")), str(row.get("batch_size")), configuration(row) + mark,
                str(tune.get("order", 0) + 1), f"{tune.get('upper_bound_per_s', 0):.3g}", str(tune.get("decision")),
                *bracket_cells(row, low, high),
                str(tune.get("trials", 0)), f"{tune.get('prepare_s', 0) + tune.get('probe_s', 0):.0f}",
                entry_accuracy(Entry(row)),
            ])  # fmt: skip
    return found


TUNE_LEGEND = (
    "bench tune: each candidate's streams are prepared, then tried in the order of their upper bound (streams ×"
    " 1000 / the ms of the fastest call of one stream timed alone): the first gets a full rate search; each next one is pruned when its bound is"
    " under the best rate so far, else challenged with one probe at the best rate × (1 + precision) when its bound"
    " reaches that (not VALID there, or a bound under it: not ahead by more than the precision). The first searches"
    " from the rate a queueing model gives its streams and fastest call, in steps of (1 + precision). Then the winner and"
    " the runner-up serve short segments of the same schedules at the winner's rate by turns, one probe's length of"
    " queries each (the duel): the ratio of their p99s, segment by segment, with its interval. With --objective"
    " latency or memory, each candidate whose bound reaches the asked rate serves it once, and the winner is the one"
    " VALID there with the lowest p99 or resident memory. With --users, each candidate's closed-loop users are"
    " searched instead (p99 from the send), ranked by goodput at the most users VALID, pruned when the bound is under"
    " the best goodput's lower 95% bound; the duel compares goodputs with the winner's users. A trial is one probe;"
    " the duel's are two, a side each (docs/scenarios.md)."
)


@dataclass(frozen=True)
class LoadSection:
    """A scenario under load's own table in every report: never mixed with the latency tables or each other."""

    anchor: str
    title: str
    legend: str
    header: list[str]
    cells: list[list[str]]


def load_sections(rows: list[dict]) -> list[LoadSection]:
    """The offline, server, closed-loop, generation-under-load and tuning tables of these rows, those that have rows,
    in that order."""
    from bench.results import tune
    from bench.results.closed_loop import closed_loop_rows
    from bench.results.offline import offline_rows
    from bench.results.generation_load import goodput_lines
    from bench.results.server import server_rows

    generating = [r for r in server_rows(rows) + closed_loop_rows(rows) if r.get("new_tokens")]
    sections = (
        ("offline", "Offline throughput", OFFLINE_LEGEND, OFFLINE_HEADER, offline_cells(offline_rows(rows))),
        ("server", "Server latency", SERVER_LEGEND, SERVER_HEADER, server_cells(server_rows(rows))),
        ("closed-loop", "Closed-loop latency", CLOSED_LOOP_LEGEND, CLOSED_LOOP_HEADER,
         closed_loop_cells(closed_loop_rows(rows))),
        ("generation-load", "Generation under load", " ".join(goodput_lines(generating) + [GENERATION_LOAD_LEGEND]),
         GENERATION_LOAD_HEADER, generation_load_cells(generating)),
        ("tuning", "Tuning for a latency budget", " ".join(tune.summary_lines(rows) + [TUNE_LEGEND]), TUNE_HEADER,
         tune_cells(rows)),
    )  # fmt: skip
    return [LoadSection(*fields) for fields in sections if fields[-1]]
