"""One HTML and chart layer for recctl's reports (the evaluation report and the A/B report).

:mod:`recctl.htmlreport.page` builds the page (stylesheet, tables, banners) and
:mod:`recctl.htmlreport.charts` draws the charts with matplotlib as inline SVG (the ``report``
extra; without it a note replaces each chart). Both reports are single files that open offline.
"""

from recctl.htmlreport.charts import bar_chart, charts_available, forest_plot, line_chart
from recctl.htmlreport.page import banner, definitions, esc, num, page, pct, pvalue, table

__all__ = [
    "banner",
    "bar_chart",
    "charts_available",
    "definitions",
    "esc",
    "forest_plot",
    "line_chart",
    "num",
    "page",
    "pct",
    "pvalue",
    "table",
]
