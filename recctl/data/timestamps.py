"""Parse raw timestamps into UTC as polars expressions (unparseable values become null).

Formats (the ``timestamp_format`` of an interaction source):

* ``auto``: ISO 8601 (``2026-03-01``, ``2026-03-01 12:34``, ``2026-03-01T12:34:56.123Z``,
  ``...+02:00``), ``YYYY/MM/DD`` variants, or epoch numbers (seconds, or milliseconds when the
  number is too large to be seconds: >= 1e11, i.e. after the year 5138);
* ``iso``: the ISO forms above only;
* ``epoch_s`` / ``epoch_ms``: numbers (integer or fractional) since 1970-01-01 UTC;
* a strftime pattern such as ``%d/%m/%Y %H:%M`` (with ``%z`` if it carries an offset).

Parsing never uses polars' cache of unique values (``cache=False``): event timestamps are
nearly all distinct, and building the cache doubled the cost of the parse.

Naive values are interpreted in the source's ``timezone`` and converted to UTC; a wall-clock
time that does not exist in that zone (the hour skipped at a DST change) is null, and an
ambiguous one (the repeated hour) takes the earlier instant.
"""

from __future__ import annotations

import polars as pl

__all__ = ["UTC_DATETIME", "parse_timestamp"]

#: dtype of canonical timestamps
UTC_DATETIME = pl.Datetime("us", "UTC")

_NAIVE_ISO = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_NAIVE_SLASH = ("%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M", "%Y/%m/%d")
_AWARE_ISO = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
_EPOCH_MS_THRESHOLD = 1e11


def _localise(expr: pl.Expr, timezone: str) -> pl.Expr:
    if timezone == "UTC":  # no DST, no conversion: just label the values
        return expr.dt.replace_time_zone("UTC")
    return expr.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def _naive(text: pl.Expr, fmt: str, timezone: str) -> pl.Expr:
    if timezone == "UTC":
        # parse straight into the UTC dtype: a third cheaper than parse-then-localise per row
        return text.str.strptime(UTC_DATETIME, fmt, strict=False, exact=True, cache=False)
    parsed = text.str.strptime(pl.Datetime("us"), fmt, strict=False, exact=True, cache=False)
    return _localise(parsed, timezone)


def _aware(text: pl.Expr, fmt: str) -> pl.Expr:
    return text.str.strptime(UTC_DATETIME, fmt, strict=False, exact=True, cache=False)


def _epoch(number: pl.Expr, unit: str) -> pl.Expr:
    # go through float microseconds so fractional seconds survive, then to an integer
    scale = 1_000_000 if unit == "s" else 1_000
    micros = (number * scale).round(0)
    in_range = micros.abs() < 8.0e18  # beyond that the int64 cast overflows
    return (
        pl.when(in_range)
        .then(micros.cast(pl.Int64, strict=False))
        .otherwise(None)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )


def _iso(text: pl.Expr, timezone: str) -> pl.Expr:
    # normalise the ISO "T" separator and the "Z" suffix so one pattern list covers both
    norm = text.str.replace(r"^(\d{4}-\d{2}-\d{2})T", "$1 ").str.replace(r"(Z| UTC| GMT)$", "+00:00")
    parts = [_aware(norm, f) for f in _AWARE_ISO] + [_naive(norm, f, timezone) for f in _NAIVE_ISO]
    return pl.coalesce(parts)


def parse_timestamp(
    expr: pl.Expr,
    fmt: str = "auto",
    timezone: str = "UTC",
    dtype: pl.DataType | None = None,
    *,
    stripped: bool = False,
) -> pl.Expr:
    """Return an expression parsing ``expr`` into ``Datetime[us, UTC]``; unparseable values are null.

    Parameters
    ----------
    expr
        The raw timestamp column.
    fmt
        ``auto``, ``iso``, ``epoch_s``, ``epoch_ms`` or a strftime pattern.
    timezone
        IANA zone of naive values (ignored for epoch numbers and values with an offset).
    dtype
        The raw column's dtype when it is not text (Parquet/JSON): datetimes are converted
        directly, numbers are epochs, dates are midnight in ``timezone``.
    stripped
        ``expr`` is text already stripped of surrounding whitespace (saves a pass over it).

    Returns
    -------
    polars.Expr
        A ``Datetime("us", "UTC")`` expression.
    """
    if dtype is not None and dtype != pl.String:
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                return _localise(expr.cast(pl.Datetime("us")), timezone)
            return expr.dt.convert_time_zone("UTC").cast(UTC_DATETIME)
        if dtype == pl.Date:
            return _localise(expr.cast(pl.Datetime("us")), timezone)
        if dtype.is_numeric():
            number = expr.cast(pl.Float64)
            if fmt == "epoch_ms":
                return _epoch(number, "ms")
            if fmt == "epoch_s":
                return _epoch(number, "s")
            return (
                pl.when(number.abs() >= _EPOCH_MS_THRESHOLD).then(_epoch(number, "ms")).otherwise(_epoch(number, "s"))
            )
        expr = expr.cast(pl.String, strict=False)
    text = expr if stripped else expr.str.strip_chars()
    if fmt == "epoch_s":
        return _epoch(text.cast(pl.Float64, strict=False), "s")
    if fmt == "epoch_ms":
        return _epoch(text.cast(pl.Float64, strict=False), "ms")
    if fmt == "iso":
        return _iso(text, timezone)
    if fmt == "auto":
        is_number = text.str.contains(r"^-?\d+(\.\d+)?$")
        number = text.cast(pl.Float64, strict=False)
        epoch = pl.when(number.abs() >= _EPOCH_MS_THRESHOLD).then(_epoch(number, "ms")).otherwise(_epoch(number, "s"))
        slash = [_naive(text, f, timezone) for f in _NAIVE_SLASH]
        return pl.when(is_number).then(epoch).otherwise(pl.coalesce([_iso(text, timezone), *slash]))
    if "%z" in fmt or "%Z" in fmt or "%:z" in fmt:
        return _aware(text, fmt)
    return _naive(text, fmt, timezone)
