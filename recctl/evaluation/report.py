"""A self-contained HTML report of an evaluation (inline CSS and SVG; opens offline).

:func:`render_report` is a pure function of the ``metrics.json`` content, so a report can
be rebuilt from a finished evaluation without re-running it. It holds the protocol, the
comparison table with confidence intervals (and a forest plot of them), mean metrics,
metric-vs-K curves, the user-segment and popularity-band breakdowns, and the popularity
distribution of each model's recommendations. It contains no timestamp, so the same
evaluation always renders the same bytes.
"""

# SVG / HTML fragments stay one per line, even past 100 columns: easier to read than split tags
# ruff: noqa: E501

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["render_report"]

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
)
_W, _H = 420, 240
_M = {"l": 52, "r": 12, "t": 28, "b": 44}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:24px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #e3e3e3;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.nodiff{color:#666}
.higher,.lower{color:#8250df}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee;border-radius:6px;padding:4px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}dd{margin:0}
.legend span{display:inline-block;margin-right:14px}.swatch{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:middle}
.note{color:#555;font-size:.9em}.scroll{overflow-x:auto}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _p(value: Any) -> str:
    """A p-value: 4 decimals, or scientific notation when tiny (never a misleading 0.0000)."""
    if isinstance(value, float) and math.isfinite(value) and 0 < value < 1e-4:
        return f"{value:.1e}"
    return _num(value, 4)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{_color(i)}"></i>{_e(n)}</span>' for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _frame(title: str, body: str, y_max: float, y_label: str = "") -> str:
    """SVG with a title, a y axis from 0 to ``y_max`` with 5 grid lines, and ``body``."""
    plot_h = _H - _M["t"] - _M["b"]
    grid = []
    for j in range(5):
        v = y_max * j / 4
        y = _M["t"] + plot_h * (1 - j / 4)
        grid.append(
            f'<line x1="{_M["l"]}" x2="{_W - _M["r"]}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_M["l"] - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{v:.3g}</text>'
        )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}">'
        f'<text x="{_W / 2}" y="16" font-size="13" font-weight="600" text-anchor="middle">{_e(title)}</text>'
        f'{"".join(grid)}<text x="12" y="{_M["t"] + plot_h / 2}" font-size="10" '
        f'transform="rotate(-90 12 {_M["t"] + plot_h / 2})" text-anchor="middle">{_e(y_label)}</text>'
        f"{body}</svg>"
    )


def line_chart(title: str, xs: Sequence[float], series: dict[str, Sequence[float | None]], y_label: str = "") -> str:
    """An SVG line chart: one line (with dots) per series over the shared ``xs``."""
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    y_max = _nice_max(max(values, default=1.0))
    plot_w, plot_h = _W - _M["l"] - _M["r"], _H - _M["t"] - _M["b"]
    lo, hi = min(xs), max(xs)

    def px(x: float) -> float:
        return _M["l"] + (plot_w * (x - lo) / (hi - lo) if hi > lo else plot_w / 2)

    def py(y: float) -> float:
        return _M["t"] + plot_h * (1 - y / y_max)

    parts = [
        f'<text x="{px(x):.1f}" y="{_H - _M["b"] + 16}" font-size="10" text-anchor="middle">{_e(x)}</text>' for x in xs
    ]
    parts.append(f'<text x="{_M["l"] + plot_w / 2}" y="{_H - 8}" font-size="10" text-anchor="middle">K</text>')
    for i, (_name, ys) in enumerate(series.items()):
        pts = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{_color(i)}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_color(i)}"/>' for x, y in pts]
    return _frame(title, "".join(parts), y_max, y_label)


def bar_chart(title: str, groups: Sequence[str], series: dict[str, Sequence[float | None]], y_label: str = "") -> str:
    """An SVG grouped bar chart: one group per label, one bar per series in each group."""
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    y_max = _nice_max(max(values, default=1.0))
    plot_w, plot_h = _W - _M["l"] - _M["r"], _H - _M["t"] - _M["b"]
    n_groups, n_series = max(len(groups), 1), max(len(series), 1)
    group_w = plot_w / n_groups
    bar_w = group_w * 0.8 / n_series
    parts = []
    for g, label in enumerate(groups):
        x0 = _M["l"] + g * group_w + group_w * 0.1
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{_H - _M["b"] + 16}" font-size="10" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
        for i, (name, ys) in enumerate(series.items()):
            v = ys[g] if g < len(ys) else None
            if v is None or not math.isfinite(v):
                continue
            h = plot_h * max(v, 0.0) / y_max
            parts.append(
                f'<rect x="{x0 + i * bar_w:.1f}" y="{_M["t"] + plot_h - h:.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{h:.1f}" fill="{_color(i)}"><title>{_e(name)} {_e(label)}: {v:.4f}</title></rect>'
            )
    return _frame(title, "".join(parts), y_max, y_label)


def forest_plot(title: str, rows: list[dict[str, Any]]) -> str:
    """Differences with their confidence intervals as horizontal bars around a 0 line."""
    finite = [v for r in rows for v in (r["ci_low"], r["ci_high"], r["diff"]) if v is not None]
    span = max((abs(v) for v in finite), default=1.0) or 1.0
    row_h, left, width = 22, 230, 380
    height = 40 + row_h * len(rows)
    total_w = left + width + 20

    def px(v: float) -> float:
        return left + width / 2 + (width / 2 - 10) * v / span

    parts = [
        f'<text x="{total_w / 2}" y="16" font-size="13" font-weight="600" text-anchor="middle">{_e(title)}</text>',
        f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="24" y2="{height - 10}" stroke="#999" stroke-dasharray="3,3"/>',
    ]
    for j, r in enumerate(rows):
        y = 34 + j * row_h
        color = {"better": "#1a7f37", "worse": "#cf222e"}.get(r["verdict"], "#777")
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" font-size="11" text-anchor="end">'
            f"{_e(r['model'])} vs {_e(r['reference'])}: {_e(r['metric'])}</text>"
        )
        if r["ci_low"] is not None and r["ci_high"] is not None:
            parts.append(
                f'<line x1="{px(r["ci_low"]):.1f}" x2="{px(r["ci_high"]):.1f}" y1="{y}" y2="{y}" '
                f'stroke="{color}" stroke-width="3"/>'
            )
        if r["diff"] is not None:
            parts.append(
                f'<circle cx="{px(r["diff"]):.1f}" cy="{y}" r="4" fill="{color}">'
                f"<title>{r['diff']:+.4f}</title></circle>"
            )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" '
        f'viewBox="0 0 {total_w} {height}" role="img" aria-label="{_e(title)}">{"".join(parts)}</svg>'
    )


def _nice_max(v: float) -> float:
    if not math.isfinite(v) or v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return 10 * mag


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict_cell(verdict: str) -> str:
    cls = {"better": "better", "worse": "worse", "higher": "higher", "lower": "lower"}.get(verdict, "nodiff")
    return f'<span class="{cls}">{_e(verdict)}</span>'


def render_report(metrics: dict[str, Any]) -> str:
    """Render the evaluation in ``metrics`` (the ``metrics.json`` content) as one HTML page.

    Parameters
    ----------
    metrics
        What :func:`recctl.stages.evaluate.evaluate_models` returns (and ``metrics.json`` holds).

    Returns
    -------
    str
        A complete HTML document with inline CSS and SVG, no external resource.
    """
    proto = metrics["protocol"]
    models = metrics["models"]
    names = list(metrics.get("model_order") or models)
    ks = proto["ks"]
    kmax = max(ks)
    primary = metrics["primary_metric"]
    title = f"recctl evaluation: {metrics.get('experiment', '')}".rstrip(": ")
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Baseline: <b>{_e(metrics["baseline"])}</b>; best by {_e(primary)}: '
        f"<b>{_e(metrics.get('best'))}</b>. Metric definitions: docs/metrics.md.</p>",
    ]

    # protocol
    stats = metrics["statistics"]
    items = [
        ("Split", proto["split"]),
        ("Users evaluated", f"{proto['n_users_evaluated']:,} of {proto['n_users_total']:,}"),
        ("Who is evaluated", proto["users"]),
        ("Candidate items", proto["candidate_items"]),
        (
            "Excluded",
            f"{proto['excluded']} ({proto['n_test_pairs_excluded']:,} of {proto['n_test_pairs']:,} test "
            "pairs were training items and are not counted as relevant)",
        ),
        ("Relevance", proto["relevance"]),
        ("K", ", ".join(map(str, ks))),
        ("Ties", proto["ties"]),
        (
            "Comparison",
            f"{stats['test']}; {stats['interval']}; {stats['correction']}; "
            f"alpha {stats['alpha']}; seed {stats['seed']}",
        ),
        ("Popularity bands", proto["popularity_bands"]["definition"]),
        ("User segments", proto["user_segments"]["definition"]),
    ]
    sections.append("<h2>Protocol</h2><dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>")

    # comparison
    comps = [
        c
        for c in metrics["comparisons"]
        if c["metric"] == primary or c["metric"].endswith(f"@{kmax}") or c["metric"] == "auc"
    ]
    if comps:
        rows = [
            [
                _e(c["model"]),
                f"{_e(c['reference'])} ({_e(c['role'])})",
                _e(c["metric"]),
                _num(c["model_mean"]),
                _num(c["reference_mean"]),
                f"{c['diff']:+.4f}" if c["diff"] is not None else "–",
                f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]",
                _p(c["p_value"]),
                _p(c["p_holm"]),
                _verdict_cell(c["verdict"]),
            ]
            for c in comps
        ]
        sections.append(
            f"<h2>Comparison at K={kmax}</h2>"
            + _table(
                [
                    "model",
                    "vs",
                    "metric",
                    "model mean",
                    "reference mean",
                    "diff",
                    f"{1 - stats['alpha']:.0%} CI",
                    "p",
                    "p (Holm)",
                    "verdict",
                ],
                rows,
            )
            + forest_plot(
                f"Difference in {primary} with {1 - stats['alpha']:.0%} CI",
                [c for c in comps if c["metric"] == primary],
            )
        )
    else:
        sections.append("<h2>Comparison</h2><p>Only the baseline was evaluated.</p>")

    # mean metrics: one row per metric, one column per model (fits any number of K)
    keys = list(next(iter(models.values()))["mean"]) if models else []
    rows = [[_e(k)] + [_num(models[n]["mean"].get(k)) for n in names] for k in keys]
    headers = [n + (" (baseline)" if n == metrics["baseline"] else "") for n in names]
    sections.append("<h2>Mean metrics</h2>" + '<div class="scroll">' + _table(["metric", *headers], rows) + "</div>")

    # metric vs K
    curve_metrics = [m for m in proto["metrics"] if m != "auc"]
    if len(ks) > 1 and curve_metrics:
        charts = [
            line_chart(
                f"{m} vs K",
                ks,
                {n: [models[n]["mean"].get(f"{m}@{k}") for k in ks] for n in names},
                m,
            )
            for m in curve_metrics
        ]
        sections.append(
            "<h2>Metrics against K</h2>" + _legend(names) + '<div class="charts">' + "".join(charts) + "</div>"
        )

    # segments
    seg = metrics.get("segments", {})
    user_rows = seg.get("users", {})
    if user_rows:
        segments = [r["segment"] for r in user_rows[names[0]]]
        chart = bar_chart(
            f"{primary} by user history",
            segments,
            {
                n: [next((r.get(primary) for r in user_rows[n] if r["segment"] == s), None) for s in segments]
                for n in names
            },
            primary,
        )
        thresholds = proto["user_segments"]
        note = (
            f'<p class="note">short: at most {thresholds.get("short_max")} training items; long: at least '
            f"{thresholds.get('long_min')}; new: none.</p>"
        )
        table_rows = [
            [_e(s), str(next(r["n_users"] for r in user_rows[names[0]] if r["segment"] == s))]
            + [_num(next((r.get(primary) for r in user_rows[n] if r["segment"] == s), None)) for n in names]
            for s in segments
        ]
        sections.append(
            "<h2>User segments</h2>" + note + _legend(names) + chart + _table(["segment", "users", *names], table_rows)
        )
    band_rows = seg.get("item_bands", {})
    if band_rows:
        bands = [r["band"] for r in band_rows[names[0]]]
        key = f"recall@{kmax}"
        chart = bar_chart(
            f"{key} on relevant items of each popularity band",
            bands,
            {n: [r.get(key) for r in band_rows[n]] for n in names},
            key,
        )
        table_rows = [
            [_e(b), str(band_rows[names[0]][j]["n_users"])] + [_num(band_rows[n][j].get(key)) for n in names]
            for j, b in enumerate(bands)
        ]
        sections.append(
            "<h2>Item popularity bands</h2>"
            '<p class="note">Recall restricted to the relevant items of each band; a user counts in a band '
            "when they have a relevant item in it.</p>"
            + _legend(names)
            + chart
            + _table(["band", "users", *names], table_rows)
        )

    # popularity distribution of recommendations
    pops = {n: models[n].get("recommendation_popularity") for n in names if models[n].get("recommendation_popularity")}
    if pops:
        deciles = [f"{10 * (i + 1)}%" for i in range(len(next(iter(pops.values()))["deciles"]))]
        chart1 = bar_chart(
            f"Share of top-{kmax} items by catalogue popularity decile",
            deciles,
            {n: p["deciles"] for n, p in pops.items()},
            "share",
        )
        chart2 = bar_chart(
            f"Share of top-{kmax} items by popularity band",
            ["head", "torso", "tail"],
            {n: [p["bands"].get(b) for b in ("head", "torso", "tail")] for n, p in pops.items()},
            "share",
        )
        sections.append(
            "<h2>Popularity of recommendations</h2>"
            '<p class="note">Decile 10% = the tenth of the catalogue with the most training users.</p>'
            + _legend(list(pops))
            + '<div class="charts">'
            + chart1
            + chart2
            + "</div>"
        )

    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f"<body>\n{body}\n</body></html>\n"
    )
