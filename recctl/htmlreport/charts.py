"""Charts for the HTML reports, drawn by matplotlib as inline SVG (the ``report`` extra).

Every chart is a :class:`matplotlib.figure.Figure` (no pyplot, so no global figure state)
saved as SVG text into the page: the report stays one file that opens offline, the charts
have real axes with tick values and labels, and they scale to the width of a phone (the SVG
keeps its ``viewBox`` and takes the width of its container). Text stays text
(``svg.fonttype: none``), so it is searchable and uses the page's font. Output is
deterministic: no date in the metadata and a fixed ``svg.hashsalt`` for element ids, so the
same numbers give the same bytes.

Without matplotlib (``pip install 'recctl[report]'``) every function returns a short note
instead of a chart; the report's tables carry the same numbers, so nothing is lost but the
picture.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "INSTALL_HINT",
    "PALETTE",
    "ForestRow",
    "bar_chart",
    "charts_available",
    "forest_plot",
    "line_chart",
]

#: colour-blind-safe categorical colours (Tableau 10)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
#: colours of a difference's verdict in forest plots
VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "higher": "#8250df", "lower": "#8250df"}
INSTALL_HINT = "pip install 'recctl[report]'"
#: typed Any: matplotlib's stubs want a literal-keyed dict
_RC: Any = {
    "svg.fonttype": "none",
    "svg.hashsalt": "recctl",
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "axes.axisbelow": True,
}

ForestRow = tuple[str, float | None, float | None, float | None, str]
"""``(label, difference, ci_low, ci_high, verdict)`` of one row of a forest plot."""


def charts_available() -> bool:
    """Whether matplotlib (the ``report`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _missing(title: str) -> str:
    from html import escape

    return (
        f'<p class="note chart-missing">Chart “{escape(title)}” not drawn: charts need matplotlib '
        f"(<code>{escape(INSTALL_HINT)}</code>); the table holds the same numbers.</p>"
    )


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _svg(fig: Any, title: str) -> str:
    """The figure as an inline ``<svg>`` that scales to its container, with an accessible title."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and doctype: the page is HTML5
    # the RDF metadata block only names matplotlib and its licence URLs; inside HTML an <svg> needs
    # no namespace declarations (the parser puts it, and xlink:href, in the right namespaces)
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = re.sub(r' xmlns(:xlink)?="[^"]*"', "", text[: text.index(">") + 1]) + text[text.index(">") + 1 :]
    # keep the viewBox, let CSS size it: 100% of the container's width, height by aspect ratio
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="chart"', text, count=1)
    from html import escape

    return text.replace(">", f' role="img" aria-label="{escape(title)}">', 1)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def forest_plot(title: str, rows: Sequence[ForestRow], *, x_label: str = "difference") -> str:
    """Differences with their confidence intervals: one row each, a dot and a bar, zero dashed.

    Parameters
    ----------
    title
        Chart title (also its accessible name).
    rows
        ``(label, difference, ci_low, ci_high, verdict)``; ``verdict`` colours the row
        (``better`` green, ``worse`` red, others grey).
    x_label
        Axis label (what the difference is of, e.g. ``ndcg@10 difference``).

    Returns
    -------
    str
        Inline SVG, or a note when matplotlib is missing.
    """
    if not charts_available():
        return _missing(title)
    import matplotlib

    rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
    if not rows:
        return ""
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, 0.9 + 0.42 * len(rows))
        ax = fig.add_subplot()
        for i, (_, diff, low, high, verdict) in enumerate(rows):
            colour = VERDICT_COLOURS.get(verdict, "#6e7781")
            y = len(rows) - 1 - i
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [y, y], color=colour, linewidth=3, solid_capstyle="butt")
            ax.plot([diff], [y], "o", color=colour, markersize=6)
        ax.axvline(0.0, color="#57606a", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(x_label)
        ax.set_title(title, fontsize=11, fontweight="bold")
        ax.grid(axis="y", visible=False)
        return _svg(fig, title)


def line_chart(
    title: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    x_label: str = "",
    y_label: str = "",
) -> str:
    """One line with markers per series over the shared ``xs`` (e.g. a metric against K)."""
    if not charts_available():
        return _missing(title)
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 3.2)
        ax = fig.add_subplot()
        for i, (name, ys) in enumerate(series.items()):
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
            if points:
                ax.plot(*zip(*points, strict=True), "o-", color=PALETTE[i % len(PALETTE)], label=name, linewidth=2)
        ax.set_xticks(list(xs))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=11, fontweight="bold")
        if len(series) > 1:
            ax.legend(fontsize=8, frameon=False)
        return _svg(fig, title)


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_label: str = "",
) -> str:
    """Grouped bars: one group per label, one bar per series in each group."""
    if not charts_available():
        return _missing(title)
    import matplotlib

    n = max(len(series), 1)
    width = 0.8 / n
    with matplotlib.rc_context(_RC):
        fig = _figure(max(4.5, 0.55 * len(groups) * n + 1.5), 3.2)
        ax = fig.add_subplot()
        for i, (name, ys) in enumerate(series.items()):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
            heights = [y if y is not None and math.isfinite(y) else 0.0 for y in list(ys)[: len(groups)]]
            ax.bar(xs[: len(heights)], heights, width=width * 0.92, color=PALETTE[i % len(PALETTE)], label=name)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_ylabel(y_label)
        ax.set_title(title, fontsize=11, fontweight="bold")
        ax.grid(axis="x", visible=False)
        if _finite([v for ys in series.values() for v in ys]) and len(series) > 1:
            ax.legend(fontsize=8, frameon=False)
        return _svg(fig, title)
