"""How results reach stdout: Rich tables, Markdown, TSV or JSON, never cut to the terminal's width.

stdout holds results only (tables, or one JSON object with ``--json``); everything else goes to
stderr through logging (:mod:`recctl.cli._logging`). Only the standard library and rich are
imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

__all__ = ["JSON_SCHEMA_VERSION", "OutputFormat", "err", "out", "print_json", "render_table", "render_text"]

#: version of the shape of every ``--json`` answer (and JSON error); raised on incompatible changes
JSON_SCHEMA_VERSION = 1

out = Console()  # results
err = Console(stderr=True)  # progress, logs, errors


class OutputFormat(str, enum.Enum):
    """``--format``: how result tables are printed."""

    table = "table"
    markdown = "markdown"
    tsv = "tsv"
    json = "json"


def print_json(data: dict[str, Any]) -> None:
    """Print one JSON object on stdout, with ``schema_version`` first-class."""
    body = _finite({**data, "schema_version": JSON_SCHEMA_VERSION})
    sys.stdout.write(json.dumps(body, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    # NaN and infinity are not JSON: a reader such as jq would refuse the whole answer
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_table(fmt: OutputFormat, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print one result table in ``fmt`` on stdout.

    Parameters
    ----------
    fmt
        ``table`` (Rich; as wide as it needs off a terminal), ``markdown`` (a pipe table under a
        ``###`` heading) or ``tsv`` (``# title``, a header line, one line per row; tables
        separated by an empty line). ``json`` prints nothing: the command emits one object.
    title
        The table's title.
    columns
        Column names.
    rows
        Cell values; floats and ints are formatted for reading (``tsv`` keeps full precision).
    """
    if fmt is OutputFormat.table:
        _print_rich(_rich_table(title, columns, rows))
    elif fmt is OutputFormat.markdown:
        lines = [f"### {_md_cell(title)}", "", "| " + " | ".join(_md_cell(c) for c in columns) + " |"]
        lines.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(columns))) + "|")
        lines += ["| " + " | ".join(_md_cell(_fmt(v)) for v in row) + " |" for row in rows]
        sys.stdout.write("\n".join(lines) + "\n\n")
    elif fmt is OutputFormat.tsv:
        lines = [f"# {_tsv_cell(title)}", "\t".join(_tsv_cell(c) for c in columns)]
        lines += ["\t".join(_tsv_cell(_raw(v)) for v in row) for row in rows]
        sys.stdout.write("\n".join(lines) + "\n\n")


def render_text(fmt: OutputFormat, text: str, *, markup: bool = True) -> None:
    """Print a line of result prose (a verdict, a total) that belongs with the tables.

    In ``tsv`` it goes to stderr so stdout stays tab-separated data; in ``markdown`` it is a
    paragraph without Rich markup.
    """
    if fmt is OutputFormat.json:
        return
    if fmt is OutputFormat.table:
        out.print(text, markup=markup, highlight=False, soft_wrap=True)
        return
    plain = _plain(text) if markup else text
    if fmt is OutputFormat.markdown:
        sys.stdout.write(plain + "\n\n")
    else:
        err.print(plain, markup=False, highlight=False, soft_wrap=True)


def _print_rich(renderable: Any) -> None:
    # off a terminal Rich assumes 80 columns and cuts cells ("lightfm…"); a CI log or a file has
    # no width, so render at the table's natural width instead
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    width = Measurement.get(out, out.options.update(max_width=1_000_000), renderable).maximum
    Console(file=sys.stdout, width=max(width, 20), color_system=None, highlight=False).print(renderable)


def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[_fmt(v) for v in row])
    return t


def _plain(text: str) -> str:
    from rich.text import Text

    return Text.from_markup(text).plain


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _raw(value: Any) -> str:
    # machine-readable cells: full precision, no thousands separators
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else str(value)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _tsv_cell(text: str) -> str:
    return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")
