"""The verdict: which configuration to ship per model, the fastest fp32 one, what each costs and its accuracy margin."""

import pytest

from bench.report import build_report
from bench.report.markdown import cell
from bench.report.verdict import markdown_lines
from bench.results.verdict import margin_of, verdicts
from test_compare import BASE, case
from test_report import make_row, synthetic_rows, write_run


def only(found):
    (verdict,) = found
    return verdict


def test_the_choice_is_fastest_or_tied_at_the_most_shapes_and_names_where_it_is_not():
    verdict = only(verdicts(synthetic_rows()))
    ship, fp32 = verdict.ship, verdict.fp32
    assert verdict.shapes == 4
    # ort int8 is fastest at three shapes; at seq 128, 1 thread it fails accuracy, so sdpa fp32 wins there
    assert ship.label == "ort int8" and len(ship.wins) == 3
    assert ship.losses == [("seq 128, batch 1, 1 thread", "sdpa fp32")]
    assert fp32.label == "sdpa fp32" and len(fp32.wins) == 4 and not fp32.losses
    assert "fails accuracy at 1 shape" in ship.margin() and "fails" not in fp32.margin()
    assert all(ratio > 1 for ratio in ship.speedups + fp32.speedups)


def test_a_tied_configuration_counts_at_its_shape_and_the_outright_fastest_breaks_the_tie():
    eager = case("eager", [v + 3.0 for v in BASE])
    sdpa = case("sdpa", BASE)
    close = case("ort", [v + 0.4 for v in BASE], precision="int8", backend_type="onnxruntime")
    verdict = only(verdicts([eager, sdpa, close]))
    assert verdict.ship.label == "sdpa fp32" and verdict.fp32.label == "sdpa fp32"
    assert verdict.ship.rivals == ["ort int8"] and verdict.fp32.rivals == []
    lines = "\n".join(markdown_lines([verdict], cell))
    assert "Shipping sdpa fp32 keeps fp32 outputs" in lines
    assert "Ship sdpa fp32 is tied with ort int8: fastest or tied at as many shapes" in lines
    assert "Fastest fp32 sdpa fp32 is tied" not in lines


def test_costs_come_from_the_rows_and_the_backend_type():
    rows = [make_row("bert", "eager", "fp32", 32, 1, 10.0), make_row("bert", "ov", "int8", 32, 1, 4.0,
                                                                     backend_type="openvino")]  # fmt: skip
    rows[1]["memory"]["peak_rss_mb"] = 1234.0
    ipex = make_row("gpt", "ipex", "bf16", 32, 1, 2.0, backend_type="ipex")
    ipex["environment"] = "intel"
    found = {v.model: v for v in verdicts([*rows, ipex, make_row("gpt", "eager", "fp32", 32, 1, 10.0)])}
    ship = found["bert"].ship
    assert ship.label == "ov int8" and ship.peak_mb() == 1234.0 and ship.prepare_ms() == 1200.0
    assert ship.dependencies == "optimum-intel + openvino" and ship.environment == "main"
    assert found["gpt"].ship.environment == "intel" and "torch 2.8" in found["gpt"].ship.dependencies
    assert found["gpt"].fp32.label == "eager fp32"


def test_the_margin_is_the_figure_closest_to_its_limit():
    row = make_row("bert", "ov", "int8", 32, 1, 4.0)
    row["accuracy"].update(relative_error=0.09, top1={"decided_agreement": 0.975})
    row["accuracy"]["tolerance"] = {"max_relative_error": 0.18, "min_top1_agreement": 0.9}
    used, text = margin_of(row)
    assert used == pytest.approx(0.5) and text.startswith("relative error 0.09 (limit 0.18)") and "50%" in text
    row["accuracy"]["tolerance"]["max_relative_error"] = None
    used, text = margin_of(row)
    assert used == pytest.approx(0.25) and text.startswith("top-1 agreement 97.5% (limit 90%)")


def test_the_report_opens_with_the_verdict(tmp_path):
    written = build_report(write_run(tmp_path / "run", synthetic_rows()), tmp_path / "out")
    text = written.markdown.read_text()
    assert text.index("## Verdict") < text.index("## Needs attention") < text.index("## Results")
    assert "| ship | ort int8 | 3 of 4 shapes |" in text and "| fastest fp32 | sdpa fp32 | 4 of 4 shapes |" in text
    page = written.html.read_text()
    assert page.index('id="verdict"') < page.index("Needs attention")


def test_shapes_without_a_trusted_passing_case_are_named():
    rows = synthetic_rows(seqs=(32,))
    for row in rows:
        if row["threads"] == 2 and row["status"] == "ok":
            row["interference"] = {"contaminated": True}
    verdict = only(verdicts(rows))
    assert verdict.undecided == ["seq 32, batch 1, 2 threads"] and len(verdict.ship.wins) == 1
    assert "No case is trusted and passing at: seq 32, batch 1, 2 threads" in "\n".join(markdown_lines([verdict], cell))
