"""Progress: a live rich bar on a terminal, plain lines (no escape codes) in logs."""

import io
from types import SimpleNamespace

from bench.run.progress import Progress
from test_report import make_row


def case(backend, rounds=1, streams=0):
    return SimpleNamespace(model="bert", backend=backend, precision="fp32", seq_len=16, batch_size=2, threads=1,
                           padding_ratio=0.0, measure={"rounds": rounds}, offline=bool(streams),
                           under_load=bool(streams), server=False, closed_loop=False, search={},
                           scenario="offline" if streams else "single-stream",
                           streams=streams or 1)  # fmt: skip


def run_two_cases(progress):
    ticks = iter(range(100))
    progress.clock = lambda: float(next(ticks))
    progress.start(3)
    progress.case_started(case("eager", rounds=2), 0)
    progress.case_finished(make_row("bert", "eager", "fp32", 16, 1, 10.0))
    progress.case_started(case("sdpa", rounds=2), 0)
    progress.case_finished(make_row("bert", "sdpa", "fp32", 16, 1, 0, status="crashed", reason="SIGSEGV"))
    progress.case_skipped()
    progress.finish()


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(stream)
    assert not progress.live
    run_two_cases(progress)
    text = stream.getvalue()
    assert "\x1b[" not in text and "1/3" in text and "2/3" in text and "ETA" in text
    assert "round 1/2" in text and "CRASHED: SIGSEGV" in text and text.rstrip().endswith("3 case(s) in 0:03")


def test_a_live_bar_names_each_finished_case_and_stops_at_the_end():
    stream = io.StringIO()
    progress = Progress(stream, live=True)
    run_two_cases(progress)
    text = stream.getvalue()
    assert "bert eager fp32 s16 b2 t1  round 1/2\n    ok  median" in text and "CRASHED: SIGSEGV" in text
    assert "3/3" in text and "ETA" in text and progress.stream is stream


def test_an_offline_case_is_named_with_its_streams_and_reports_what_they_completed():
    stream = io.StringIO()
    progress = Progress(stream)
    progress.start(1)
    progress.case_started(case("eager", streams=2), 0)
    row = make_row("bert", "eager", "fp32", 16, 1, 10.0)
    row["load"] = {"samples_per_s": 181.25, "streams": 2}
    progress.case_finished(row)
    text = stream.getvalue()
    assert "bert eager fp32 s16 b2 t1 x2 offline" in text
    assert "181.2 samples/s from 2 stream(s) at once" in text
