"""History over synthetic runs with known steps: lasting changes are marked at their first run, outliers are not."""

import pytest

from bench.results.history import collect, find_runs
from conftest import bench_cli
from test_regression import grid, row_of
from test_report import manifest, write_run

SERIES = {
    "up": [10, 10.1, 9.9, 12, 12.1, 11.9],
    "down": [10, 10, 10.1, 8, 8.1, 7.9],
    "outlier": [10, 10.1, 13, 10, 9.9, 10],
    "last-only": [10, 10, 10.1, 9.9, 10, 12],
    "small": [10, 10.1, 9.9, 10.3, 10.3, 10.4],  # beyond the intervals, but under the 5% threshold
    "up-and-back": [10, 10, 12, 12, 10, 10.1],
}


def write_history(tmp_path, series=SERIES, contaminated=(), cpu_model="Test CPU", prefix=""):
    """One run folder per point in time, named so that their alphabetical order is not their order in time."""
    runs = len(next(iter(series.values())))
    for index in range(runs):
        rows = []
        for name, levels in series.items():
            row = row_of([grid(levels[index], 0.01, 30)], backend=name)
            row["case_id"] = f"bert-{name}"
            if (name, index) in contaminated:
                row["interference"] = {"contaminated": True}
            rows.append(row)
        data = manifest(cpu_model=cpu_model)
        data["runs"][0]["started"] = f"2026-01-{index + 1:02d}T03:00:00+00:00"
        data["git"]["commit"] = f"{index:02d}" + "c0ffee" * 6
        write_run(tmp_path / f"{prefix}{'zyxwvu'[index]}-nightly", rows, data)
    return tmp_path


def steps_of(tmp_path, **filters):
    runs, notes = find_runs(tmp_path)
    assert not notes
    return {s.case_id: [(p.order, round(p.step, 3)) for p in s.points if p.step is not None]
            for s in collect(runs, filters)}  # fmt: skip


def test_a_lasting_change_is_marked_at_its_first_run_and_an_outlier_is_not(tmp_path):
    steps = steps_of(write_history(tmp_path))
    assert steps["bert-up"] == [(3, pytest.approx(0.2, abs=0.01))]
    assert steps["bert-down"] == [(3, pytest.approx(-0.2, abs=0.01))]
    assert steps["bert-up-and-back"] == [(2, pytest.approx(0.2, abs=0.01)), (4, pytest.approx(-0.16, abs=0.01))]
    assert steps["bert-outlier"] == steps["bert-last-only"] == steps["bert-small"] == []


def test_runs_are_ordered_by_start_time_and_untrusted_runs_neither_make_nor_hide_a_step(tmp_path):
    write_history(tmp_path, contaminated={("up", 3), ("outlier", 2)})
    runs, _ = find_runs(tmp_path)
    assert [r.name for r in runs] == ["z-nightly", "y-nightly", "x-nightly", "w-nightly", "v-nightly", "u-nightly"]
    steps = steps_of(tmp_path)
    assert steps["bert-up"] == [(4, pytest.approx(0.2, abs=0.01))]  # run 3 is contaminated: the step shows at 4
    assert steps["bert-outlier"] == []


def test_other_machines_make_their_own_series(tmp_path):
    write_history(tmp_path, {"up": SERIES["up"]})
    write_history(tmp_path, {"up": [12] * 6}, cpu_model="Other CPU", prefix="other-")
    runs, _ = find_runs(tmp_path)
    series = collect(runs, {})
    assert len(series) == 2 and {len(s.points) for s in series} == {6}
    assert sorted(sum(p.step is not None for p in s.points) for s in series) == [0, 1]


def test_bench_history_prints_the_filtered_table_and_draws_the_plot(tmp_path):
    write_history(tmp_path / "results")
    (tmp_path / "results" / "not-a-run").mkdir()
    plot = tmp_path / "history.png"
    result = bench_cli("history", tmp_path / "results", "--filter", "backend=up", "--filter", "backend=down",
                       "--plot", plot)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "bert-up" in result.stdout and "bert-down" in result.stdout and "bert-outlier" not in result.stdout
    assert "step ▲ +20.5%" in result.stdout and "step ▼ -19.5%" in result.stdout
    assert "2026-01-04" in result.stdout and "03c0ffeec0" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = bench_cli("history", tmp_path / "results", "--filter", "backend=nothing")
    assert missing.returncode == 2 and "no case" in missing.stderr
    bad = bench_cli("history", tmp_path / "results", "--filter", "colour=red")
    assert bad.returncode == 2 and "--filter: expected a field among" in bad.stderr
