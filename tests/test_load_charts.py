"""The charts of the rows under load: the hockey stick of a server run, the closed loop's front."""

import pytest

from bench.report.load_charts import latency_against_load, pareto_front, throughput_against_latency

pytest.importorskip("matplotlib")


def server_row(backend: str, probes: list[tuple]) -> dict:
    return {
        "status": "ok", "scenario": "server", "model": "m", "seq_len": 32, "batch_size": 1, "backend": backend,
        "precision": "fp32", "streams": 1, "threads": 2, "p99_ms": 50.0,
        "server": {"search": {"probes": [{"rate": r, "result": v, "latency_ms": {"p99": p}} for r, p, v in probes]}},
    }  # fmt: skip


def users_row(users: int, per_s: float, p99: float) -> dict:
    return {
        "status": "ok", "scenario": "closed-loop", "model": "m", "seq_len": 32, "batch_size": 1, "backend": "ort",
        "precision": "fp32", "streams": 2, "threads": 1, "concurrency": users,
        "closed_loop": {"completed_per_s": per_s, "pooled_latency_ms": {"p99": p99}},
    }  # fmt: skip


def test_the_front_keeps_only_points_no_other_beats_on_both_throughput_and_latency():
    points = [(10.0, 5.0, 1), (20.0, 8.0, 2), (15.0, 9.0, 4), (5.0, 4.0, 8), (20.0, 12.0, 16)]
    assert pareto_front(points) == [(5.0, 4.0, 8), (10.0, 5.0, 1), (20.0, 8.0, 2)]


def test_the_hockey_stick_is_drawn_from_every_probe_and_skipped_without_server_rows():
    import matplotlib.pyplot as plt

    rows = [server_row("ort", [(10, 20.0, "VALID"), (20, 45.0, "VALID"), (40, None, "INVALID")]),
            server_row("eager", [(5, 30.0, "VALID"), (10, 80.0, "INVALID")])]  # fmt: skip
    figure, caption = latency_against_load(rows)
    [ax] = figure.axes[:1]
    drawn = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) > 1]
    assert sorted(len(line.get_xdata()) for line in drawn) == [2, 2]  # the unserved p99 is left out
    assert "Dashed: the p99 bound (50 ms)" in caption and "never served is not drawn" in caption
    plt.close(figure)
    assert latency_against_load([users_row(1, 10.0, 5.0)]) == (None, "no server row (scenario: server) with a p99 to draw")


def test_the_closed_loop_chart_draws_a_point_per_number_of_users():
    import matplotlib.pyplot as plt

    figure, caption = throughput_against_latency([users_row(u, 10.0 * min(u, 2), 5.0 * u) for u in (1, 2, 4)])
    assert figure is not None and "one point per number of users" in caption
    plt.close(figure)
