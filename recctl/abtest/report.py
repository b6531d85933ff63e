"""A self-contained HTML page of an A/B report (inline CSS and SVG, no network, no scripts)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from recctl.abtest.analysis import METRICS, ABReport, Comparison

__all__ = ["render_html", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
  max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}
h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}
th,td{padding:.35rem .6rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f6f6f6}.sig{font-weight:600;color:#0a6b2d}.neg{font-weight:600;color:#a11}
.banner{padding:1rem;border-radius:6px;margin:1rem 0}
.bad{background:#fde2e2;border:2px solid #c00;color:#700}
.ok{background:#e7f6ea;border:1px solid #7c7}.warn{background:#fff6dc;border:1px solid #e0c060}
.muted{color:#777;font-size:.85rem}svg text{font-size:11px;font-family:inherit}
"""


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"


def _rel_ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def _p(x: float) -> str:
    return "–" if not math.isfinite(x) else ("&lt;0.0001" if x < 1e-4 else f"{x:.4f}")


def _forest(comparisons: list[Comparison], label: str) -> str:
    """Inline SVG: one row per arm, the difference a dot, its interval a bar, zero a line."""
    rows = [c for c in comparisons if math.isfinite(c.ci[0]) and math.isfinite(c.ci[1])]
    if not rows:
        return ""
    lo = min(min(c.ci[0] for c in rows), 0.0)
    hi = max(max(c.ci[1] for c in rows), 0.0)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    width, left, right, row_h = 640, 130, 20, 28
    height = row_h * len(rows) + 40
    x = lambda v: left + (v - lo) / (hi - lo) * (width - left - right)  # noqa: E731
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(label)} difference to control">'
    ]
    parts.append(
        f'<line x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 25}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    for i, c in enumerate(rows):
        y = 22 + i * row_h
        color = "#0a6b2d" if c.significant and c.diff > 0 else "#a11" if c.significant else "#555"
        parts.append(f'<text x="4" y="{y + 4}">{html.escape(c.variant)}</text>')
        parts.append(
            f'<line x1="{x(c.ci[0]):.1f}" y1="{y}" x2="{x(c.ci[1]):.1f}" y2="{y}" stroke="{color}" stroke-width="3"/>'
        )
        parts.append(f'<circle cx="{x(c.diff):.1f}" cy="{y}" r="5" fill="{color}"/>')
    for v in (lo, 0.0, hi):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 8}" text-anchor="middle">{_num(v, 3)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: ABReport) -> str:
    """Render the report as one HTML document.

    Parameters
    ----------
    report
        The analysis result.

    Returns
    -------
    str
        A complete HTML page with inline CSS and SVG; it loads nothing from the network.
    """
    e = html.escape
    conf = f"{100 * (1 - report.alpha):.0f}%"
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>A/B report: {e(report.experiment)}</title><style>{_CSS}</style></head><body>",
        f"<h1>A/B report: {e(report.experiment)}</h1>",
        f"<p class='muted'>Control: <b>{e(report.control)}</b> · "
        f"{report.data.get('n_assigned_users', 0):,} assigned users · "
        f"{conf} confidence intervals · alpha = {report.alpha} (p-values Holm-adjusted over the treatments)</p>",
    ]
    srm = report.srm
    if srm.mismatch:
        out.append(f"<div class='banner bad'><b>⚠ {e(srm.message)}</b></div>")
    else:
        out.append(f"<div class='banner ok'>✓ {e(srm.message)}</div>")
    other = [w for w in report.warnings if w != srm.message]
    if other:
        out.append(
            "<div class='banner warn'><b>Warnings</b><ul>" + "".join(f"<li>{e(w)}</li>" for w in other) + "</ul></div>"
        )

    out.append(
        "<h2>Arms</h2><table><tr><th>arm</th><th>model</th><th>users</th><th>with outcomes</th>"
        "<th>share (expected)</th>"
        f"<th>conversion rate [{conf} CI]</th><th>clicks / user [{conf} CI]</th><th>revenue / "
        f"user [{conf} CI]</th></tr>"
    )
    for a in report.arms:
        out.append(
            f"<tr><td>{e(a.variant)}</td><td>{e(a.model or '–')}</td><td>{a.users:,}</td><td>{a.active_users:,}</td>"
            f"<td>{_num(a.observed_share, 3)} ({_num(a.expected_share, 3)})</td>"
            f"<td>{_num(a.conversion_rate)} [{_num(a.conversion_rate_ci[0])}, {_num(a.conversion_rate_ci[1])}]</td>"
            f"<td>{_num(a.clicks_per_user)} [{_num(a.clicks_per_user_ci[0])}, {_num(a.clicks_per_user_ci[1])}]</td>"
            f"<td>{_num(a.revenue_per_user)} [{_num(a.revenue_per_user_ci[0])}, "
            f"{_num(a.revenue_per_user_ci[1])}]</td></tr>"
        )
    out.append("</table>")

    for metric, (_, label) in METRICS.items():
        rows = [c for c in report.comparisons if c.metric == metric]
        if not rows:
            continue
        out.append(f"<h2>{e(label.capitalize())}: difference to {e(report.control)}</h2>")
        out.append(
            f"<table><tr><th>arm</th><th>test</th><th>control</th><th>arm</th><th>difference [{conf} CI]</th>"
            f"<th>relative [{conf} CI]</th><th>p</th><th>p (Holm)</th>"
            + ("<th>bootstrap CI</th>" if metric == "revenue_per_user" else "")
            + "<th>verdict</th></tr>"
        )
        for c in rows:
            cls = "sig" if c.significant and c.diff > 0 else "neg" if c.significant else ""
            verdict = (
                ("significantly higher" if c.diff > 0 else "significantly lower")
                if c.significant
                else "no detectable difference"
            )
            boot = ""
            if metric == "revenue_per_user":
                boot = (
                    f"<td>[{_num(c.bootstrap_ci[0])}, {_num(c.bootstrap_ci[1])}]</td>"
                    if c.bootstrap_ci
                    else "<td>–</td>"
                )
            out.append(
                f"<tr><td>{e(c.variant)}</td><td>{e(c.test)}</td><td>{_num(c.control_value)}</td><td>{_num(c.variant_value)}</td>"
                f"<td>{_num(c.diff)} [{_num(c.ci[0])}, "
                f"{_num(c.ci[1])}]</td><td>{_pct(c.relative_lift)}{_rel_ci(c.relative_ci)}</td>"
                f"<td>{_p(c.p_value)}</td><td>{_p(c.p_adjusted)}</td>{boot}<td class='{cls}'>{verdict}</td></tr>"
            )
        out.append("</table>")
        out.append(_forest(rows, label))

    out.append("<h2>Sample ratio check</h2><table><tr><th>arm</th><th>observed users</th><th>expected users</th></tr>")
    for name, n in srm.observed.items():
        out.append(f"<tr><td>{e(name)}</td><td>{n:,}</td><td>{srm.expected[name]:,.1f}</td></tr>")
    out.append(
        f"</table><p class='muted'>Pearson chi-square = {srm.chi2:.2f}, df = {srm.df}, p = {_p(srm.p_value)}; "
        f"a mismatch is flagged below p = {srm.threshold}.</p>"
    )

    out.append("<h2>Input</h2><table>")
    for key, value in report.data.items():
        out.append(f"<tr><td>{e(str(key))}</td><td>{e(str(value))}</td></tr>")
    out.append(
        "</table><p class='muted'>Conversion rate: share of users with at least one conversion event (Wilson interval; "
        "two-proportion z-test). Clicks and revenue per user: means over all assigned users, zeros included "
        "(Student-t intervals; Welch t-test; revenue also by percentile bootstrap). Users are the unit of "
        "randomisation and of analysis.</p></body></html>"
    )
    return "\n".join(out)


def write_html(report: ABReport, path: Path) -> Path:
    """Write :func:`render_html` to ``path`` atomically.

    Parameters
    ----------
    report
        The analysis result.
    path
        Destination ``.html`` file (parent directories are created).

    Returns
    -------
    Path
    """
    from recctl.artifacts import write_text_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, render_html(report))
