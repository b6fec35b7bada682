

def test_a_peak_probed_after_the_run_names_each_figure_that_moved_and_the_report_says_so():
    from bench.run.peak import peak_moves
    from bench.report.environment import peak_note

    before = {"measured": "t0", "seconds": 1, "torch": "x", "method": "m",
              "gflops": {"fp32": {"1": 100.0, "2": 200.0}, "bf16": {"1": 400.0}}}  # fmt: skip
    after = {"measured": "t1", "gflops": {"fp32": {"1": 104.0, "2": 150.0}, "bf16": {"1": 432.0}}}
    moved = peak_moves(before, after)
    assert moved == ["fp32 at 2 thread(s) 200 before, 150 after (-25%)", "bf16 at 1 thread(s) 400 before, 432 after (+8%)"]
    note = peak_note({**before, "after": {**after, "moved": moved}})
    assert "Probed again after the run (t1)" in note and "fp32 at 2 thread(s) 200 before, 150 after (-25%)" in note
    steady = peak_note({**before, "after": {**after, "moved": []}})
    assert "every figure within 5% of the probe before it" in steady


def test_the_memo_keeps_the_higher_of_the_probes_before_and_after_a_run():
    from bench.run.peak import higher_of

    before = {"fp32": {"1": 100.0, "2": 200.0}, "bf16": {"1": 373.0}}
    after = {"fp32": {"1": 96.0, "2": 210.0}, "bf16": {"1": 1042.0, "2": 1500.0}}
    assert higher_of(before, after) == {"fp32": {"1": 100.0, "2": 210.0}, "bf16": {"1": 1042.0, "2": 1500.0}}
    assert before == {"fp32": {"1": 100.0, "2": 200.0}, "bf16": {"1": 373.0}}  # the manifest's probe is left alone
