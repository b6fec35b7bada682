"""A job as the runner writes it, for tests that drive a backend's parts in this process; what a run should exit with."""

from bench.backends import BACKENDS
from bench.job import Job
from bench.backends.threads import thread_settings


def job_of(backend_type: str, **case) -> Job:
    """bert-tiny's text classification at seq 128, batch 1, one thread, with the backend's default options;
    `case` changes any field of the case."""
    info = BACKENDS[backend_type]
    values = {
        "suite": "test",
        "model": "m",
        "task": "text-classification",
        "model_entry": {"name": "m", "config": "bert-tiny", "task": "text-classification"},
        "backend": backend_type,
        "backend_type": backend_type,
        "backend_options": info.options().model_dump(),
        "environment": info.environment,
        "precision": "fp32",
        "seq_len": 128,
        "batch_size": 1,
        "threads": 1,
        "padding_ratio": 0.0,
        "seed": 0,
        "measure": {},
        "tolerance": {},
        **case,
    }
    return Job.from_dict(
        {
            "mode": "measure",
            "case": values,
            "source": {"kind": "config", "location": "", "identity": "abc"},
            "vocab": {"size": 30522, "pad_token_id": 0},
            "thread_settings": thread_settings(info.thread_family, values["threads"]),
            "cpus": [0],
            "reference": "",
            "cache_dir": "",
        }
    )


def expected_exit(rows) -> int:
    """What `bench run` exits with when every row is ok and accurate: 1 if another program's work contaminated a
    case on this shared machine (the row says so), else 0."""
    return 1 if any((row.get("interference") or {}).get("contaminated") for row in rows) else 0


def support_here(backend_type: str, precision: str, **options):
    """The tier this machine's CPU gives a backend's precision (bench.cpu), as the runner decides it."""
    from bench import cpu

    return cpu.support(backend_type, precision, cpu.cpu_flags(), options)


def check_tier_row(row: dict, backend_type: str, **options) -> bool:
    """Assert what a row says for the tier of its precision on this CPU; True when it holds a measurement.

    native: measured and accurate; emulated: not measured, saying how to measure it; unsupported: the reason in the
    user's words; kept fp32: measured with --emulated (not measured otherwise, like emulated), labelled so, its
    fp32-sized error questioned."""
    from bench import cpu
    from bench.backends.precision_mode import row_label

    support = support_here(backend_type, row["precision"], **options)
    assert row["cpu_support"]["tier"] == support.tier, (row["case_id"], row["cpu_support"], row.get("reason"))
    if support.tier == cpu.UNSUPPORTED:
        assert row["status"] == "unsupported" and row["reason"] == support.reason
        return False
    if support.tier in (cpu.EMULATED, cpu.KEPT_FP32) and row["status"] == "not_measured":
        assert row["reason"] == cpu.not_measured_reason(support)
        return False
    assert row["status"] == "ok" and row["accuracy"]["passed"], (row["case_id"], row["reason"], row["accuracy"])
    if support.tier == cpu.KEPT_FP32:
        assert row_label(row) == f"{row['precision']} kept fp32"
        assert any(w.startswith("did it run fp32?") for w in row["warnings"]), row["warnings"]
    return True
