"""Speedups with intervals, fastest-or-tied, and rows that must not be compared, on rows with known samples."""

import pytest

from bench.results import compare
from bench.report import build_report, data
from bench.report.markdown import cell
from bench.measure.stats import latency_summary
from bench.cli.table import render
from test_report import PEAK, make_row, manifest, write_run

BASE = [9.0 + 0.1 * i for i in range(21)]
"""Median 10.0; at 95% the order statistics 6 and 16 of 21 bound it (P(B <= 5) = 0.013 <= 0.025 < P(B <= 6)):
[9.5, 10.5]."""


def with_samples(row, samples):
    row.update(samples_ms=list(samples), latency_ms=latency_summary(samples))
    return row


def case(backend, samples, precision="fp32", **kwargs):
    return with_samples(make_row("bert", backend, precision, 32, 1, 10.0, flops=5_000_000_000, **kwargs), samples)


def test_the_speedup_is_the_ratio_of_medians_between_the_ratios_of_the_interval_ends():
    eager, fast = case("eager", BASE), case("sdpa", [0.8 * v for v in BASE])  # median 8.0 in [7.6, 8.4]
    found = compare.speedup(fast, eager)
    assert found.ratio == pytest.approx(1.25)
    assert found.interval == pytest.approx((9.5 / 8.4, 10.5 / 7.6))
    assert found.verdict == "faster" and found.text() == "1.25x [1.13, 1.38]"
    slow = compare.speedup(eager, fast)
    assert slow.verdict == "slower" and slow.interval[1] < 1
    assert compare.speedup(eager, eager).text() == "1.00x (baseline)"


def test_a_speedup_whose_interval_contains_one_reads_as_no_difference():
    eager, close = case("eager", BASE), case("sdpa", [v + 0.2 for v in BASE])  # [9.7, 10.7] overlaps [9.5, 10.5]
    found = compare.speedup(close, eager)
    assert found.ratio == pytest.approx(10.0 / 10.2)
    assert found.interval[0] < 1 < found.interval[1]
    assert found.verdict == "same" and found.text().startswith("≈ 0.98x [")
    apart = case("sdpa", [v + 1.1 for v in BASE])  # [10.6, 11.6]: no overlap, a real (small) slowdown
    assert compare.speedup(apart, eager).verdict == "slower"


def test_too_few_samples_give_a_ratio_without_an_interval():
    eager, few = case("eager", BASE), case("sdpa", [8.0, 8.1, 7.9])
    found = compare.speedup(few, eager)
    assert found.interval is None and found.verdict == "unknown" and found.text() == "1.25x (no interval)"


@pytest.mark.parametrize(
    "flag, reason",
    [
        ({"rounds_agreement": {"verdict": "unstable"}}, "unstable"),
        ({"interference": {"contaminated": True}}, "contaminated"),
        ({"status": "crashed"}, "crashed"),
    ],
)
def test_an_untrusted_baseline_yields_no_speedup(flag, reason):
    eager, fast = case("eager", BASE), case("sdpa", [0.8 * v for v in BASE])
    eager.update(flag)
    rows = [eager, fast]
    found = compare.speedups(rows)
    assert found[fast["case_id"]].shown is None and found[fast["case_id"]].text() == f"— baseline {reason}"
    entries = {e.row["case_id"]: e for e in data.annotate(rows, PEAK)}
    assert entries[fast["case_id"]].speedup is None
    assert f"— baseline {reason}" in render(rows)


def test_an_untrusted_case_has_no_speedup_rank_or_share_of_peak():
    eager = case("eager", BASE)
    contaminated = case("sdpa", [0.5 * v for v in BASE])
    contaminated["interference"] = {"contaminated": True}
    noisy = case("ort", [5.0 + (4.0 if i % 2 else 0.0) for i in range(21)], precision="int8")  # CV over 10%
    rows = [eager, contaminated, noisy]
    assert compare.distrust_reasons(contaminated) == ["contaminated"]
    assert compare.distrust_reasons(noisy) == ["unstable"]
    assert compare.row_is_trusted(eager) and compare.distrust_reasons({**eager, "interference": {}}) == []
    entries = {e.row["case_id"]: e for e in data.annotate(rows, PEAK)}
    for row, text in ((contaminated, "— contaminated"), (noisy, "— unstable")):
        entry = entries[row["case_id"]]
        assert entry.comparison.text() == text and entry.speedup is None
        assert not entry.fastest and not entry.tied and entry.pct_peak is None and entry.gflops is not None
    assert entries[eager["case_id"]].fastest and entries[eager["case_id"]].pct_peak is not None
    shown = render(rows)
    assert "Not compared (2): measured and accurate, but not trusted" in shown
    assert f"    {contaminated['case_id']}: contaminated\n" in shown


def test_fastest_or_tied_takes_every_trusted_case_whose_interval_overlaps_the_fastests():
    rows = [
        case("eager", [v + 2.0 for v in BASE]),  # [11.5, 12.5]: slower, apart
        case("sdpa", BASE),  # [9.5, 10.5]: the fastest trusted
        case("ort", [v + 0.8 for v in BASE], precision="int8"),  # [10.3, 11.3]: overlaps
        case("openvino", [0.5 * v for v in BASE], precision="bf16", passed=False),  # faster, fails accuracy
        case("ipex", [0.6 * v for v in BASE], precision="bf16"),  # faster, contaminated
    ]
    rows[-1]["interference"] = {"contaminated": True}
    best, tied = compare.fastest_or_tied(rows)
    assert best is rows[1] and tied == [rows[2]]
    entries = data.annotate(rows, PEAK)
    assert [(e.row["backend"], e.fastest, e.tied) for e in entries if e.fastest or e.tied] == [
        ("sdpa", True, False), ("ort", False, True),
    ]  # fmt: skip
    assert [e.row["backend"] for e in entries if e.beats_fastest_but_fails] == ["openvino"]


def test_the_report_shows_intervals_ties_and_why_a_case_is_not_compared(tmp_path):
    rows = [case("eager", BASE), case("sdpa", [v + 0.2 for v in BASE]), case("ort", [0.8 * v for v in BASE])]
    rows.append(case("ipex", [0.7 * v for v in BASE], precision="bf16"))
    rows[-1]["rounds_agreement"] = {"verdict": "unstable"}
    written = build_report(write_run(tmp_path / "run", rows, manifest()), tmp_path / "out")
    md = written.markdown.read_text()
    assert "| ★ fastest | 32 | 1 | 1 | ort | fp32 | main | 8.00 | 7.60–8.40 |" in md
    assert "| ★ tied |" not in md  # eager [9.5, 10.5] and sdpa [9.7, 10.7] do not reach ort's [7.6, 8.4]
    assert "≈ 0.98x \\[" in md and "— unstable" in md and "**Not compared** (1)" in md
    page = written.html.read_text()
    assert "Not compared" in page and "— unstable" in page
    csv_text = written.csv.read_text()
    assert "speedup_ci_low" in csv_text and ",same," in csv_text


def test_rows_of_another_environment_are_divided_by_that_environments_eager_and_also_shown_against_mains():
    main_eager = case("eager", BASE)
    intel_eager = case("eager@intel", [1.25 * v for v in BASE])
    ipex = case("ipex", [0.5 * v for v in BASE])
    for row in (intel_eager, ipex):
        row.update(environment="intel")
    intel_eager["baseline"] = True
    rows = [main_eager, intel_eager, ipex]
    own, across = compare.speedups(rows), compare.speedups_vs_main(rows)
    assert own[ipex["case_id"]].ratio == pytest.approx(12.5 / 5.0)
    assert across[ipex["case_id"]].ratio == pytest.approx(10.0 / 5.0)
    assert own[intel_eager["case_id"]].is_baseline
    assert across[intel_eager["case_id"]].ratio == pytest.approx(10.0 / 12.5)
    assert own[main_eager["case_id"]].is_baseline and across[main_eager["case_id"]] is None
    main_eager["effective"]["versions"] = {"torch": "2.13.0"}
    shown = render(rows)
    assert "vs eager fp32 (main, torch 2.13.0)" in shown
    assert "2.50x [" in shown and "2.00x [" in shown


def test_without_its_own_environments_eager_a_row_has_no_speedup_rather_than_a_cross_environment_one():
    ipex = case("ipex", [0.5 * v for v in BASE])
    ipex["environment"] = "intel"
    rows = [case("eager", BASE), ipex]
    assert compare.speedups(rows)[ipex["case_id"]] is None
    assert compare.speedups_vs_main(rows)[ipex["case_id"]].ratio == pytest.approx(2.0)


def test_the_report_shows_the_own_environment_speedup_and_the_one_against_main_labelled(tmp_path):
    eager = make_row("bert", "eager", "fp32", 32, 1, 10.0)
    eager["effective"]["versions"] = {"torch": "2.13.0"}
    intel_eager = make_row("bert", "eager@intel", "fp32", 32, 1, 12.5, backend_type="pytorch")
    ipex = make_row("bert", "ipex", "fp32", 32, 1, 5.0)
    for row in (intel_eager, ipex):
        row["environment"] = "intel"
    intel_eager["baseline"] = True
    rows = [eager, intel_eager, ipex]
    own, across = compare.speedups(rows)[ipex["case_id"]], compare.speedups_vs_main(rows)[ipex["case_id"]]
    assert own.ratio > 2.2 and across.ratio < 2.2  # 12.5 / 5 and 10 / 5, within the samples' ±5%
    md = build_report(write_run(tmp_path / "run", rows, manifest()), tmp_path / "out").markdown.read_text()
    speedup_header = cell("speedup [95% CI]")
    header = next(line for line in md.splitlines() if speedup_header in line and "| backend |" in line)
    assert cell("vs eager fp32 (main, torch 2.13.0)") in header
    (line,) = [line for line in md.splitlines() if "| ipex |" in line]
    cells = [c.strip() for c in line.split("|")]
    position = [c.strip() for c in header.split("|")].index(speedup_header)
    assert cells[position] == cell(own.text()) and cells[position + 1] == cell(across.text())


def test_a_wide_spread_distrusts_a_single_round_but_over_rounds_the_interval_carries_it():
    wide = [v * (1.0 if i % 2 else 1.3) for i, v in enumerate(BASE)]  # CV ~13%
    single = case("sdpa", wide)
    assert single["latency_ms"]["cv"] > compare.CV_WARNING
    assert compare.distrust_reasons(single) == ["unstable"]
    rounds = case("sdpa", wide)
    rounds["round_samples_ms"] = [wide[::2], wide[1::2]]
    rounds["rounds_agreement"] = {"verdict": "stable"}
    assert compare.distrust_reasons(rounds) == []
    rounds["rounds_agreement"] = {"verdict": "unstable"}
    assert compare.distrust_reasons(rounds) == ["unstable"]
