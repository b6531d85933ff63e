"""The HTML report: self-contained, and rendered by a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from recctl.config import load_config
from recctl.evaluation.report import render_report
from recctl.stages.evaluate import run_evaluate

from .conftest import build_workdir


@pytest.fixture(scope="module")
def metrics(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("report")
    path = build_workdir(
        tmp,
        evaluate={
            "k": [1, 5, 10],
            "metrics": [
                "precision",
                "recall",
                "ndcg",
                "auc",
                "novelty",
                "popularity_bias",
                "coverage",
            ],
            "baseline": "popular",
            "n_bootstrap": 100,
        },
    )
    cfg = load_config(path)
    run_evaluate(cfg)
    return json.loads((cfg.stage_dir("evaluate") / "metrics.json").read_text())


def test_report_is_self_contained_and_complete(metrics):
    html = render_report(metrics)
    # nothing to fetch: no external scripts, styles, images or fonts
    # (``url(#id)`` is a reference inside the page, e.g. a chart's clip path)
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\((?!#)|@import", html, re.I)
    assert not re.search(r"https?://", html)
    for section in (
        "Protocol",
        "Comparison at K=10",
        "Mean metrics",
        "Metrics against K",
        "User segments",
        "Item popularity bands",
        "Popularity of recommendations",
    ):
        assert section in html
    assert html.count("<svg") >= 8  # forest plot, curves, segment, band and popularity charts
    assert "no detectable difference" in html or "better" in html
    assert render_report(metrics) == html  # deterministic bytes


def test_report_escapes_names():
    from recctl.htmlreport import table

    assert "&lt;b&gt;" in table(["<b>"], [])


def test_report_starts_with_the_decision_and_history_feeds_the_next_run(tmp_path):
    path = build_workdir(tmp_path, evaluate={"k": [5, 10], "baseline": "popular", "n_bootstrap": 50, "report": True})
    cfg = load_config(path)
    first = run_evaluate(cfg)
    decision = first.summary["decision"]
    # by_category knows each user's favourite category: better than plain popularity, and the best
    assert decision["action"] == "switch" and decision["ship"] == "by_category"
    html = (cfg.stage_dir("evaluate") / "report.html").read_text()
    order = [
        html.index(h)
        for h in (
            "Decision: Ship by_category",
            "Costs",
            "Who was evaluated",
            "Sample lists",
            "Protocol",
            "Comparison at K=10",
        )
    ]
    assert order == sorted(order)
    assert "no earlier evaluate run in this workdir" in html
    assert "not evaluated: no interaction in the test split" in html
    history = (cfg.workdir_path / "history" / "evaluate.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["decision"]["ship"] == "by_category"
    run_evaluate(cfg)
    html = (cfg.stage_dir("evaluate") / "report.html").read_text()
    assert "previous run (" in html and "no earlier evaluate run" not in html
    assert len((cfg.workdir_path / "history" / "evaluate.jsonl").read_text().splitlines()) == 2


def test_without_matplotlib_the_report_says_how_to_get_charts(metrics, monkeypatch):
    import recctl.htmlreport.charts as charts

    monkeypatch.setattr(charts, "charts_available", lambda: False)
    html = render_report(metrics)
    assert "<svg" not in html
    assert "pip install &#x27;recctl[report]&#x27;" in html
    assert "Comparison at K=10" in html and "<table>" in html  # the numbers are all still there


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _png_ink_share(path, max_rows: int = 500) -> float:
    """Share of dark pixels in the top ``max_rows`` rows of an 8-bit RGB(A) PNG.

    A plain decoder (no imaging library is a dependency); rows only depend on the rows
    above them, so decoding the top of the page is exact and keeps the test fast.
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    ink = 0
    height = min(height, max_rows)
    for row in range(height):
        filt = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG row filters
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if filt == 1:
                line[i] = (line[i] + a) & 255
            elif filt == 2:
                line[i] = (line[i] + b) & 255
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        ink += sum(1 for x in range(0, stride, channels) if line[x] < 200)
        prev = line
    return ink / (width * height)


#: a test-only probe: the width the laid-out page needs, written where --dump-dom shows it
_PROBE = (
    "<script>window.addEventListener('load',()=>{document.body.dataset.scrollWidth="
    "document.documentElement.scrollWidth;document.body.dataset.viewport=window.innerWidth;});</script>"
)


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1280, 1600), (390, 844)], ids=["desktop", "phone"])
def test_report_renders_in_headless_browser(metrics, tmp_path, width, height):
    browser = _browser()
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_report(metrics), encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(render_report(metrics).replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path)}
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*common, f"--window-size={width},{height}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    ).stdout
    # the browser parsed the page into a DOM that holds the tables and the inline charts with axes
    assert "<svg" in dom and "<table>" in dom and "Comparison at K=10" in dom
    assert "ndcg@10 difference" in dom  # the forest plot's axis label
    needed = re.search(r'data-scroll-width="(\d+)"', dom)
    viewport = re.search(r'data-viewport="(\d+)"', dom)
    assert needed and viewport, "the probe did not run"
    # nothing makes the page wider than the screen: wide tables scroll inside their own box
    assert int(needed.group(1)) <= int(viewport.group(1)), (needed.group(1), viewport.group(1))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        env=env,
        check=True,
    )
    assert shot.exists()
    assert _png_ink_share(shot) > 0.01  # text, tables and charts, not a blank page
