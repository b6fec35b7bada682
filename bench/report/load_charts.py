"""The charts of the rows measured under load: each takes those rows and returns (figure, caption) or (None, reason).

A series is one configuration: backend, precision and split of the CPUs (streams × threads); a panel one model and
shape."""

from __future__ import annotations

from bench.backends.precision_mode import row_label
from bench.report.panels import WIDE, facet_title, grid, legend_below, safe
from bench.results.closed_loop import closed_loop_rows, pooled_latency
from bench.results.offline import split_text
from bench.results.server import server_rows

PANEL_KEYS = ("model", "seq_len", "batch_size")


def configuration(row: dict) -> str:
    return f"{row.get('backend')} {row_label(row)} {split_text(row)}"


def panels(rows: list[dict], points, order=lambda point: point) -> dict[tuple, dict[str, list[tuple]]]:
    """{panel key: {configuration: [(x, y, label)] sorted by `order`}}, from `points(row)`, for the rows with any."""
    found: dict[tuple, dict[str, list[tuple]]] = {}
    for row in rows:
        drawn = [p for p in points(row) if p[1] is not None]
        if row.get("status") == "ok" and drawn:
            key = tuple(row.get(k) for k in PANEL_KEYS)
            found.setdefault(key, {}).setdefault(configuration(row), []).extend(drawn)
    return {
        key: {name: sorted(p, key=order) for name, p in sorted(series.items())}
        for key, series in sorted(found.items(), key=str)
    }


def offered_points(row: dict) -> list[tuple]:
    """(offered rate, p99 from the scheduled time, result) of a rate row, or of every probe of a rate search."""
    server = row.get("server") or {}
    search = server.get("search")
    if search:
        return [(p["rate"], (p.get("latency_ms") or {}).get("p99"), p["result"]) for p in search.get("probes") or []]
    validity = (server.get("validity") or {}).get("result", "")
    return [(row.get("rate"), (server.get("pooled_latency_ms") or {}).get("p99"), validity)]


def latency_against_load(rows: list[dict]):
    """The hockey stick: p99 from the scheduled time against the offered rate, per configuration, with the bound."""
    by_panel = panels(server_rows(rows), offered_points)
    if not by_panel:
        return None, "no server row (scenario: server) with a p99 to draw"
    figure, axes = grid(len(by_panel), columns=min(2, len(by_panel)), size=(WIDE / min(2, len(by_panel)), 3.4))
    bounds = {r.get("p99_ms") for r in server_rows(rows) if r.get("p99_ms")}
    for ax, (key, series) in zip(axes, by_panel.items()):
        for name, points in series.items():
            line = ax.plot([x for x, _, _ in points], [y for _, y, _ in points], "-", linewidth=1, label=safe(name))[0]
            valid = [(x, y) for x, y, result in points if result == "VALID"]
            other = [(x, y) for x, y, result in points if result != "VALID"]
            for marked, marker in ((valid, "o"), (other, "x")):
                if marked:
                    ax.plot(*zip(*marked), marker, color=line.get_color(), markersize=4)
        for bound in sorted(bounds):
            ax.axhline(bound, color="grey", linestyle="--", linewidth=0.8)
        ax.set(title=facet_title(key, PANEL_KEYS), xlabel="offered queries/s", ylabel="p99 from schedule (ms)",
               yscale="log")  # fmt: skip
        ax.grid(alpha=0.3)
    legend_below(figure, axes)
    bound_text = ", ".join(f"{b:g} ms" for b in sorted(bounds))
    return figure, (
        "Latency against offered load: each configuration's p99 from the scheduled time at each rate it served (a rate"
        " search's probes included): flat while the streams keep up, then the queue makes it climb. o: VALID; x: not"
        " (INVALID or unresolved)." + (f" Dashed: the p99 bound ({bound_text})." if bounds else "")
        + " A p99 that falls on a query never served is not drawn."
    )


def users_points(row: dict) -> list[tuple]:
    entry = row.get("closed_loop") or {}
    return [(entry.get("completed_per_s"), pooled_latency(row).get("p99"), row.get("concurrency"))]


def pareto_front(points: list[tuple]) -> list[tuple]:
    """The points no other point beats on both throughput (higher) and latency (lower), by throughput."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q[:2] != p[:2] for q in points)]
    return sorted(front)


def throughput_against_latency(rows: list[dict]):
    """Closed loop: queries completed per second against p99 latency, each point a number of users, with the front."""
    by_panel = panels(closed_loop_rows(rows), users_points, order=lambda point: point[2])  # by number of users
    if not by_panel:
        return None, "no closed-loop row (scenario: closed-loop)"
    figure, axes = grid(len(by_panel), columns=min(2, len(by_panel)), size=(WIDE / min(2, len(by_panel)), 3.4))
    for ax, (key, series) in zip(axes, by_panel.items()):
        every = []
        for name, points in series.items():
            every += points
            line = ax.plot([y for _, y, _ in points], [x for x, _, _ in points], "o-", markersize=4, linewidth=1,
                           label=safe(name))[0]  # fmt: skip
            for x, y, users in points:
                ax.annotate(str(users), (y, x), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=line.get_color())  # fmt: skip
        front = pareto_front(every)
        ax.step([y for _, y, _ in front], [x for x, _, _ in front], where="post", color="grey", linewidth=2, alpha=0.4)
        ax.set(title=facet_title(key, PANEL_KEYS), xlabel="p99 from the send (ms)", ylabel="completed queries/s")
        ax.grid(alpha=0.3)
    legend_below(figure, axes)
    return figure, (
        "Closed loop: what each configuration completes per second against its p99 latency from the send, one point per"
        " number of users (the number beside it). Grey: the front no other point beats on both, the configurations"
        " worth shipping at some latency budget. More users past the front's knee add latency, not throughput."
    )


LOAD_CHARTS = (
    ("latency_vs_offered_load", "Latency against offered load (server)", latency_against_load),
    ("throughput_vs_latency", "Throughput against latency (closed loop)", throughput_against_latency),
)
