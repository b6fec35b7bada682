"""The HTML report as a reader sees it: rendered by headless Chromium, screenshot and DOM checked."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bench.report import build_report
from conftest import PROJECT, TINY_SUITE, write_suite
from test_report import EVIL, synthetic_rows, write_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason=f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium"
)


def chromium(page: Path, *mode: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        command = [
            BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,2000", *mode, page.resolve().as_uri(),
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def screenshot_colours(page: Path, tmp_path: Path) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not white) of the page's first 1280x2000 pixels."""
    from PIL import Image

    shot = tmp_path / "shot.png"
    result = chromium(page, f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    pixels = np.asarray(image).reshape(-1, 3)
    return len(np.unique(pixels, axis=0)), float((pixels != 255).any(axis=1).mean())


def rendered_dom(page: Path) -> str:
    result = chromium(page, "--dump-dom")
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


def check_rendered(page: Path, tmp_path: Path, case_count: int) -> str:
    colours, inked = screenshot_colours(page, tmp_path)
    assert colours > 50 and inked > 0.05
    dom = rendered_dom(page)
    assert dom.count("<table") >= 3 and dom.count("<tr") >= case_count
    assert dom.count("<img") >= 1
    return dom


@needs_browser
def test_the_report_renders_with_its_tables_and_escaped_names(tmp_path):
    rows = synthetic_rows(model=EVIL)
    written = build_report(write_run(tmp_path / "run", rows), tmp_path / "out")
    dom = check_rendered(written.html, tmp_path, len(rows))
    assert "<script" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "★ fastest" in dom and "⚠ fails accuracy" in dom and "SIGSEGV" in dom
    verdict = dom[dom.index('<section id="verdict">') : dom.index("</section>")]
    assert "<h2>Verdict</h2>" in verdict and verdict.count("<tr") == 3  # header, ship, fastest fp32
    assert "ort int8" in verdict and "sdpa fp32" in verdict and "of the allowance used" in verdict


@pytest.mark.slow
@needs_browser
def test_a_real_run_ends_with_a_report_that_renders(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    command = [sys.executable, "-m", "bench", "run", str(suite), "--out", "results/tiny-run", "--quiet-wait", "0"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "results/tiny-run/manifest.json").read_text())
    assert manifest["peak"]["gflops"]["fp32"]["1"] > 0
    rows = [json.loads(line) for line in (tmp_path / "results/tiny-run/results.jsonl").read_text().splitlines()]
    assert len({r["flops"] for r in rows}) == 1 and rows[0]["flops"] > 0
    page = tmp_path / "reports" / "tiny-run" / "report.html"
    assert f"report: {Path('reports/tiny-run/report.html')}" in result.stderr
    dom = check_rendered(page, tmp_path, len(rows))
    assert "sdpa" in dom and "% peak" in dom and '<section id="verdict">' in dom
    csv_text = (page.parent / "results.csv").read_text()
    assert csv_text.count("\n") == len(rows) + 1 and ",True," in csv_text
