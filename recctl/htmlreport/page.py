"""The HTML page both reports are built on: one file, inline CSS, readable on a phone.

A page is a title and a list of HTML sections; :func:`page` wraps them with the stylesheet and
the viewport tag. Tables sit in a horizontally scrolling box (:func:`table`), so a wide table
never widens the page on a narrow screen, and charts (:mod:`recctl.htmlreport.charts`) take the
width of the page. No script, nothing fetched from the network, no timestamp: the same content
renders to the same bytes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["banner", "definitions", "esc", "num", "page", "pct", "pvalue", "table"]

CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:16px;color:#1f2328;line-height:1.45;font-size:15px;overflow-wrap:anywhere}
h1{font-size:1.55em;margin:.2em 0 .3em}h2{font-size:1.2em;border-bottom:2px solid #e3e6ea;padding-bottom:4px;
margin-top:1.8em}h3{font-size:1.02em;margin:1.2em 0 .3em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%;margin:6px 0 14px}
table{border-collapse:collapse;font-size:.88em;overflow-wrap:normal}
th,td{border:1px solid #d8dee4;padding:4px 8px;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#f3f5f7}td:first-child,th:first-child{text-align:left}td.text,th.text{text-align:left;white-space:normal;
min-width:12em}
.better,.sig{color:#1a7f37;font-weight:600}.worse,.neg{color:#cf222e;font-weight:600}.nodiff{color:#57606a}
.higher,.lower{color:#8250df}.hit{color:#1a7f37;font-weight:600}
svg.chart{display:block;width:100%;height:auto;max-width:760px;margin:6px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,340px),1fr));gap:12px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dt{font-weight:600}dd{margin:0}
.note,.muted{color:#57606a;font-size:.9em}
.banner{padding:12px 16px;border-radius:8px;margin:12px 0}.ok{background:#e7f6ea;border:1px solid #7cc08a}
.warn{background:#fff6dc;border:1px solid #e0c060}.bad{background:#fde2e2;border:2px solid #c00;color:#700}
.decision{background:#f3f7ff;border:2px solid #4e79a7}.decision h2{border:0;margin:0 0 .3em;font-size:1.35em}
.decision ul{margin:.3em 0 .3em 1.2em;padding:0}
code{background:#f3f5f7;padding:0 3px;border-radius:3px}
@media (max-width:640px){body{padding:10px;font-size:14px}dl{grid-template-columns:1fr}dd{margin-bottom:6px}
h1{font-size:1.3em}}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: fixed decimals, thousands grouped, ``–`` for missing / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.{digits - 1}g}"
        return f"{value:.{digits}f}"
    return esc(value)


def pct(value: float | None) -> str:
    """A relative change as ``+1.2%``; ``–`` when missing."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:+.1f}%"


def pvalue(value: Any) -> str:
    """A p-value: 4 decimals, or ``<0.0001`` when smaller (never a misleading 0.0000)."""
    if isinstance(value, float) and math.isfinite(value) and value < 1e-4:
        return "&lt;0.0001"
    return num(value, 4)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, text_columns: Sequence[int] = ()) -> str:
    """A table in a horizontally scrolling box; cells are HTML already, headers are escaped.

    ``text_columns`` are indices of columns holding prose (left-aligned, allowed to wrap).
    """
    wrap = set(text_columns)

    def cls(i: int) -> str:
        return ' class="text"' if i in wrap else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def definitions(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of ``(term, html)`` pairs (terms escaped)."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def banner(kind: str, body: str) -> str:
    """A coloured box: ``ok``, ``warn``, ``bad`` or ``decision``; ``body`` is HTML."""
    return f'<div class="banner {kind}">{body}</div>'


def page(title: str, sections: Sequence[str]) -> str:
    """A complete HTML document: escaped ``title``, the stylesheet, then ``sections`` in order.

    Parameters
    ----------
    title
        Page title and heading.
    sections
        HTML fragments.

    Returns
    -------
    str
        The document (no script, no external resource).
    """
    body = "\n".join([f"<h1>{esc(title)}</h1>", *sections])
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f"<body>\n{body}\n</body></html>\n"
    )
