"""A self-contained HTML page of an A/B report, on the same page and chart layer as the evaluation report.

The page (:mod:`recctl.htmlreport`): inline CSS, tables that scroll inside their box on a phone,
matplotlib forest plots with axes as inline SVG (the ``report`` extra; a note otherwise), no
scripts, nothing from the network.
"""

from __future__ import annotations

import math
from pathlib import Path

from recctl.abtest.analysis import METRICS, ABReport
from recctl.htmlreport import banner, esc, forest_plot, num, page, pct, pvalue, table

__all__ = ["render_html", "write_html"]


def _rel_ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{pct(ci[0])}, {pct(ci[1])}]"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{num(ci[0])}, {num(ci[1])}]"


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
    conf = f"{100 * (1 - report.alpha):.0f}%"
    sections = [
        f'<p class="muted">Control: <b>{esc(report.control)}</b> · '
        f"{report.data.get('n_assigned_users', 0):,} assigned users · "
        f"{conf} confidence intervals · alpha = {report.alpha} (p-values Holm-adjusted over the treatments)</p>",
    ]
    srm = report.srm
    if srm.mismatch:
        sections.append(banner("bad", f"<b>⚠ {esc(srm.message)}</b>"))
    else:
        sections.append(banner("ok", f"✓ {esc(srm.message)}"))
    other = [w for w in report.warnings if w != srm.message]
    if other:
        sections.append(banner("warn", "<b>Warnings</b><ul>" + "".join(f"<li>{esc(w)}</li>" for w in other) + "</ul>"))

    arms = [
        [
            esc(a.variant),
            esc(a.model or "–"),
            num(a.users),
            num(a.active_users),
            f"{num(a.observed_share, 3)} ({num(a.expected_share, 3)})",
            f"{num(a.conversion_rate)} {_ci(a.conversion_rate_ci)}",
            f"{num(a.clicks_per_user)} {_ci(a.clicks_per_user_ci)}",
            f"{num(a.revenue_per_user)} {_ci(a.revenue_per_user_ci)}",
        ]
        for a in report.arms
    ]
    sections.append(
        "<h2>Arms</h2>"
        + table(
            [
                "arm",
                "model",
                "users",
                "with outcomes",
                "share (expected)",
                f"conversion rate [{conf} CI]",
                f"clicks / user [{conf} CI]",
                f"revenue / user [{conf} CI]",
            ],
            arms,
        )
    )

    for metric, (_, label) in METRICS.items():
        rows = [c for c in report.comparisons if c.metric == metric]
        if not rows:
            continue
        revenue = metric == "revenue_per_user"
        cells = []
        for c in rows:
            cls = "sig" if c.significant and c.diff > 0 else "neg" if c.significant else ""
            verdict = (
                ("significantly higher" if c.diff > 0 else "significantly lower")
                if c.significant
                else "no detectable difference"
            )
            row = [
                esc(c.variant),
                esc(c.test),
                num(c.control_value),
                num(c.variant_value),
                f"{num(c.diff)} {_ci(c.ci)}",
                f"{pct(c.relative_lift)}{_rel_ci(c.relative_ci)}",
                pvalue(c.p_value),
                pvalue(c.p_adjusted),
            ]
            if revenue:
                row.append(_ci(c.bootstrap_ci) if c.bootstrap_ci else "–")
            row.append(f'<span class="{cls}">{verdict}</span>')
            cells.append(row)
        headers = ["arm", "test", "control", "arm", f"difference [{conf} CI]", f"relative [{conf} CI]", "p", "p (Holm)"]
        headers += ["bootstrap CI"] if revenue else []
        forest = [
            (
                c.variant,
                c.diff,
                c.ci[0],
                c.ci[1],
                ("better" if c.diff > 0 else "worse") if c.significant else "no detectable difference",
            )
            for c in rows
            if math.isfinite(c.ci[0]) and math.isfinite(c.ci[1])
        ]
        sections.append(
            f"<h2>{esc(label.capitalize())}: difference to {esc(report.control)}</h2>"
            + table([*headers, "verdict"], cells)
            + forest_plot(
                f"{label.capitalize()}: arm minus {report.control}, {conf} CI", forest, x_label=f"{label} difference"
            )
        )

    sections.append(
        "<h2>Sample ratio check</h2>"
        + table(
            ["arm", "observed users", "expected users"],
            [[esc(name), num(n), f"{srm.expected[name]:,.1f}"] for name, n in srm.observed.items()],
        )
        + f'<p class="muted">Pearson chi-square = {srm.chi2:.2f}, df = {srm.df}, p = {pvalue(srm.p_value)}; '
        f"a mismatch is flagged below p = {srm.threshold}.</p>"
    )
    sections.append(
        "<h2>Input</h2>"
        + table(["item", "value"], [[esc(k), esc(v)] for k, v in report.data.items()], text_columns=(1,))
        + '<p class="muted">Conversion rate: share of users with at least one conversion event (Wilson interval; '
        "two-proportion z-test). Clicks and revenue per user: means over all assigned users, zeros included "
        "(Student-t intervals; Welch t-test; revenue also by percentile bootstrap). Users are the unit of "
        "randomisation and of analysis.</p>"
    )
    return page(f"A/B report: {report.experiment}", sections)


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
