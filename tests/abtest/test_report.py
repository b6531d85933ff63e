"""The HTML page: self-contained, escaped, loud about a sample ratio mismatch."""

from __future__ import annotations

import polars as pl

from recctl.abtest.analysis import analyze
from recctl.abtest.report import render_html, write_html

from .conftest import make_experiment


def _report(weights: dict[str, float], assigned: dict[str, int]):
    exp = make_experiment(weights)
    users = [(f"{v}-{i}", v) for v, n in assigned.items() for i in range(n)]
    a = pl.DataFrame(users, schema=["user_id", "variant"], orient="row")
    o = pl.DataFrame(
        {
            "user_id": [u for u, _ in users[::7]],
            "kind": ["conversion"] * len(users[::7]),
            "revenue": [12.5] * len(users[::7]),
        }
    )
    return analyze(a, o, exp)


def test_page_is_self_contained_and_escaped(tmp_path) -> None:
    report = _report({"control": 1, "<b>new</b>": 1}, {"control": 500, "<b>new</b>": 500})
    page = render_html(report)
    assert "&lt;b&gt;new&lt;/b&gt;" in page and "<b>new</b>" not in page
    for forbidden in ("http://", "https://", "<script", "<link", "@import"):
        assert forbidden not in page
    assert "match the configured weights" in page
    path = write_html(report, tmp_path / "sub" / "r.html")
    assert path.read_text() == page


def test_page_shows_a_mismatch_banner() -> None:
    page = render_html(_report({"control": 1, "treatment": 1}, {"control": 600, "treatment": 400}))
    assert 'class="banner bad"' in page and "SAMPLE RATIO MISMATCH" in page
