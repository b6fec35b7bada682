"""The charts themselves: each takes the cases and the colours and returns (figure, caption) or (None, reason)."""

from __future__ import annotations

from bench.report.data import Entry
from bench.report.pipelines import stage_bars
from bench.report.panels import WIDE, capped, facet_title, facets, grid, legend_below, safe, series, series_order

SEQ_FACET = ("model", "task", "batch_size", "threads", "padding_ratio")
THREAD_FACET = ("model", "task", "seq_len", "batch_size", "padding_ratio")
MAX_LABELLED_BARS = 32


def measured(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.ok]


def numeric_shape(entry: Entry) -> tuple:
    return tuple(entry.row.get(k) or 0 for k in ("seq_len", "batch_size", "threads", "padding_ratio"))


def shape_label(entry: Entry, with_threads: bool = True) -> str:
    row = entry.row
    text = f"s{row.get('seq_len')}" + (f" +{row['new_tokens']}" if row.get("new_tokens") else "")
    text += f" b{row.get('batch_size')}" + (f" t{row.get('threads')}" if with_threads else "")
    return text + (f" p{row.get('padding_ratio'):g}" if row.get("padding_ratio") else "")


def grouped_bars(entries: list[Entry], palette: dict, value, ylabel: str, style=lambda entry: {}, bar_format="{:.3g}",
                 bounds=lambda entry: None):  # fmt: skip
    """One panel per model: a group of bars per shape, one bar per backend and precision; whiskers at `bounds`."""
    by_model = facets(entries, ("model", "task"))
    figure, axes = grid(len(by_model), columns=1, size=(WIDE, 3.6))
    for ax, (key, members) in zip(axes, by_model.items()):
        shapes = list(dict.fromkeys(shape_label(e) for e in members))
        groups = series(members)
        width = 0.8 / len(groups)
        for index, (label, points) in enumerate(groups.items()):
            for entry in points:
                x = shapes.index(shape_label(entry)) - 0.4 + width * (index + 0.5)
                bars = ax.bar(x, value(entry), width, color=palette[label], label=safe(label), **style(entry))
                if bounds(entry):
                    low, high = bounds(entry)
                    yerr = [[value(entry) - low], [high - value(entry)]]
                    ax.errorbar(x, value(entry), yerr=yerr, color="black", capsize=2, linewidth=0.8)
                if len(members) <= MAX_LABELLED_BARS:
                    ax.bar_label(bars, fmt=bar_format, fontsize=7, padding=1)
        ax.set_xticks(range(len(shapes)), [safe(s) for s in shapes])
        ax.set(title=facet_title(key, ("model", "task")), ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
    return figure, axes


def varying(entries: list[Entry], keys: tuple[str, ...], axis: str) -> dict[tuple, list[Entry]]:
    """The panels of the measured cases in which some series was measured at more than one value of `axis`."""
    return {
        key: members
        for key, members in facets(measured(entries), keys).items()
        if any(len({e.row[axis] for e in s}) > 1 for s in series(members).values())
    }


def latency_vs_seq(entries: list[Entry], palette: dict):
    by_facet = varying(entries, SEQ_FACET, "seq_len")
    if not by_facet:
        return None, "every model, batch and thread count was measured at a single sequence length"
    by_facet, note = capped(by_facet)
    figure, axes = grid(len(by_facet))
    for ax, (key, members) in zip(axes, by_facet.items()):
        for label, points in series(members).items():
            points = sorted(points, key=lambda e: e.row["seq_len"])
            xs = [e.row["seq_len"] for e in points]
            medians = [e.median for e in points]
            upper = [e.row["latency_ms"]["p90"] - e.median for e in points]
            ax.errorbar(xs, medians, yerr=[[0] * len(xs), upper], marker="o", capsize=3,
                        color=palette[label], label=safe(label))  # fmt: skip
        ax.set_xscale("log", base=2)
        lengths = sorted({e.row["seq_len"] for e in members})
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.set(title=facet_title(key, SEQ_FACET), xlabel="sequence length", ylabel="median latency (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    legend_below(figure, axes)
    return figure, "Median latency per backend and precision; the whisker reaches the p90." + note


def bar_style(entry: Entry) -> dict:
    return {"edgecolor": "black" if entry.fastest or entry.tied else "none", "linewidth": 1.5}


def speedup_bars(entries: list[Entry], palette: dict):
    rated = [e for e in measured(entries) if e.speedup is not None]
    if not rated:
        return None, "no case has a speedup over a trusted eager fp32 baseline at its shape, so there is none to draw"
    ylabel = "speedup over eager fp32 (x)"
    bounds = lambda e: e.comparison.interval  # noqa: E731
    figure, axes = grouped_bars(rated, palette, lambda e: e.speedup, ylabel, bar_style, "{:.2f}x", bounds)
    for ax in axes:
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    legend_below(figure, axes)
    caption = (
        "Speedup over eager fp32 of the case's own environment (the same software) at the same shape and threads"
        " (s = sequence, b = batch, t = threads); whiskers: its"
        " 95% interval (one that crosses the dashed line at 1 is no measurable difference). Outlined: the fastest"
        " trusted configuration and those tied with it. Cases not compared (failed, failing accuracy, contaminated,"
        " unstable) are left out."
    )
    return figure, caption


def thread_scaling(entries: list[Entry], palette: dict):
    by_facet = varying(entries, THREAD_FACET, "threads")
    if not by_facet:
        return None, "every case ran at a single thread count"
    by_facet, note = capped(by_facet)
    figure, axes = grid(len(by_facet))
    for ax, (key, members) in zip(axes, by_facet.items()):
        counts = sorted({e.row["threads"] for e in members})
        for label, points in series(members).items():
            points = sorted(points, key=lambda e: e.row["threads"])
            first = points[0]
            xs = [e.row["threads"] for e in points]
            ys = [first.median / e.median for e in points]
            ax.plot(xs, ys, marker="o", color=palette[label], label=safe(label))
        ax.plot(counts, [c / counts[0] for c in counts], color="grey", linestyle=":", label="linear scaling")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set(title=facet_title(key, THREAD_FACET), xlabel="threads", ylabel="speedup over its fewest threads")
        ax.grid(alpha=0.3)
    legend_below(figure, axes)
    return figure, "Each configuration against itself at its fewest threads; dotted: perfect linear scaling." + note


LOG_SCALE_RANGE = 3
"""Distributions whose calls span more than this factor are drawn on a log axis, so fast boxes keep their width."""


def distributions(entries: list[Entry], palette: dict):
    sampled = [e for e in measured(entries) if e.row.get("samples_ms")]
    if not sampled:
        return None, "no case kept raw samples"
    by_model = facets(sampled, ("model", "task"))
    heights = [0.8 + 0.32 * len(m) for m in by_model.values()]
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(by_model), 1, figsize=(WIDE, sum(heights) + 0.4), squeeze=False,
                                gridspec_kw={"height_ratios": heights})  # fmt: skip
    axes = list(axes.flat)
    for ax, (key, members) in zip(axes, by_model.items()):
        members = sorted(members, key=lambda e: (*numeric_shape(e), *series_order(e)), reverse=True)
        box = ax.boxplot([e.row["samples_ms"] for e in members], orientation="horizontal", widths=0.6,
                         patch_artist=True, flierprops={"markersize": 3}, medianprops={"color": "black"})  # fmt: skip
        for patch, entry in zip(box["boxes"], members):
            patch.set_facecolor(palette[entry.series_label])
            patch.set_alpha(0.7)
        ax.set_yticks(range(1, len(members) + 1), [safe(f"{e.series_label}  {shape_label(e)}") for e in members])
        values = [v for e in members for v in e.row["samples_ms"]]
        if max(values) > LOG_SCALE_RANGE * min(values):
            ax.set_xscale("log")
        ax.set(title=facet_title(key, ("model", "task")), xlabel="latency per call (ms)")
        ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure, (
        "Every measured call of each case: box p25 to p75, median line, whiskers to 1.5 IQR, dots beyond;"
        f" log axis where the calls span more than {LOG_SCALE_RANGE}x."
    )


def generating(entries: list[Entry]) -> list[Entry]:
    """The measured text generation cases (whole generate calls), not a causal LM's forward-pass cases."""
    return [e for e in measured(entries) if e.row.get("new_tokens") and e.row.get("generation")]


def generation_figure(entry: Entry, key: str, statistic: str | None = None):
    value = entry.row["generation"].get(key)
    return (value or {}).get(statistic) if statistic else value


def decode_rate(entries: list[Entry], palette: dict):
    cases = generating(entries)
    if not cases:
        return None, "the run has no text generation cases"
    figure, axes = grouped_bars(cases, palette, lambda e: generation_figure(e, "decode_tokens_per_s") or 0,
                                "decode tokens/s", bar_format="{:.0f}")  # fmt: skip
    legend_below(figure, axes)
    return figure, (
        "Decode tokens per second of whole greedy generate calls with the KV cache (tokens 2..N over their time,"
        " median over calls), per prompt length; higher is faster."
    )


def time_to_first_token(entries: list[Entry], palette: dict):
    cases = generating(entries)
    if not cases:
        return None, "the run has no text generation cases"
    bounds = lambda e: (generation_figure(e, "ttft_ms", "median"), generation_figure(e, "ttft_ms", "p90"))  # noqa: E731
    figure, axes = grouped_bars(cases, palette, lambda e: generation_figure(e, "ttft_ms", "median") or 0,
                                "time to first token (ms)", bounds=bounds)  # fmt: skip
    legend_below(figure, axes)
    return figure, (
        "Time to first token (the prefill over the prompt, and choosing the first token): median over calls, the"
        " whisker up to p90, per prompt length; lower is faster."
    )


def tokens_per_second(entries: list[Entry], palette: dict):
    generating = [e for e in measured(entries) if e.row.get("task") == "text-generation" and not e.row.get("new_tokens")]
    if not generating:
        return None, "the run has no forward-pass text-generation cases"
    rate = lambda e: (e.row.get("throughput") or {}).get("tokens_per_s") or 0  # noqa: E731
    figure, axes = grouped_bars(generating, palette, rate, "prompt tokens/s")
    legend_below(figure, axes)
    return figure, "Tokens per second of the forward pass over the prompt (prefill, no KV cache), padding excluded."


def percent_of_peak(entries: list[Entry], palette: dict):
    rated = [e for e in measured(entries) if e.pct_peak is not None]
    if not rated:
        return None, "no case has both a FLOP count and a measured peak at its precision and thread count"
    figure, axes = grouped_bars(rated, palette, lambda e: e.pct_peak, "% of matmul peak", bar_format="{:.0f}%")
    for ax in axes:
        ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    legend_below(figure, axes)
    return figure, "Achieved GFLOP/s as a share of the measured matmul peak at the same precision and thread count."


def machine_speed(entries: list[Entry], palette: dict):
    """The drift canary (a short fp32 matmul timed around every block of a paired run) over the run's time."""
    traces = {}
    for entry in entries:
        trace = (entry.row.get("paired") or {}).get("canary_trace")
        if trace:
            traces.setdefault(entry.row.get("threads"), []).extend(trace)
    if not traces:
        return None, "no paired case (the canary is timed around the blocks of paired runs)"
    import matplotlib.pyplot as plt

    start = min(t for trace in traces.values() for t, _ in trace)
    figure, ax = plt.subplots(figsize=(WIDE, 2.8))
    for threads, trace in sorted(traces.items(), key=lambda item: str(item[0])):
        trace = sorted(trace)
        ax.plot([(t - start) / 60 for t, _ in trace], [c for _, c in trace], ".", markersize=2,
                label=f"{threads} thread(s)")  # fmt: skip
    ax.set(xlabel="minutes into the run", ylabel="canary matmul (ms)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    return figure, (
        "The machine's own speed: a 192×192 fp32 matmul timed next to every baseline block, at the case's threads."
        " Pairs taken seconds apart cancel its levels; a step between two runs is the machine's, not the software's."
    )


CHARTS = (
    ("latency_vs_seq", "Latency against sequence length", latency_vs_seq),
    ("speedup", "Speedup over eager fp32", speedup_bars),
    ("thread_scaling", "Thread scaling", thread_scaling),
    ("distributions", "Latency distributions", distributions),
    ("decode_rate", "Decode tokens per second (text generation)", decode_rate),
    ("time_to_first_token", "Time to first token (text generation)", time_to_first_token),
    ("tokens_per_s", "Prompt tokens per second (causal LM forward pass)", tokens_per_second),
    ("pipeline_stages", "Pipeline stage times", stage_bars),
    ("percent_of_peak", "Share of the matmul peak", percent_of_peak),
    ("machine_speed", "The machine's speed over the run (drift canary)", machine_speed),
)
