"""Parse raw timestamps into UTC as polars expressions (unparseable values become null).

Formats (the ``timestamp_format`` of an interaction source):

* ``auto``: ISO 8601 (``2026-03-01``, ``2026-03-01 12:34``, ``2026-03-01T12:34:56.123Z``,
  ``...+02:00``), ``YYYY/MM/DD`` variants, the day-first dotted dates of German, Swiss,
  Russian... exports (``01.03.2026``, ``01.03.2026 12:34[:56]``: unambiguous, no one writes
  month-first with dots), or epoch numbers (seconds, or milliseconds when the
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

__all__ = ["AUTO_PLANS", "UTC_DATETIME", "parse_timestamp", "resolve_auto"]

#: dtype of canonical timestamps
UTC_DATETIME = pl.Datetime("us", "UTC")

_NAIVE_ISO = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_NAIVE_SLASH = ("%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M", "%Y/%m/%d")
_NAIVE_DOTTED = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
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


#: The concrete layouts ``auto`` accepts, each as one cheap parse: ``(pattern, kind)`` where kind
#: is ``naive`` (in the source's time zone), ``utc`` (a Z / UTC / GMT suffix) or ``aware`` (an
#: offset). ``auto`` itself tries all of them per row, about 25x the cost of one; a file whose
#: sampled values all fit one layout is parsed with that layout alone (:func:`resolve_auto`).
AUTO_PLANS: dict[str, tuple[str, str]] = {
    # whole seconds first: a fixed-width pattern parses ~7x faster than one with ``%.f``
    "iso_seconds": ("%Y-%m-%d %H:%M:%S", "naive"),
    "iso_t_seconds": ("%Y-%m-%dT%H:%M:%S", "naive"),
    "iso_t_z_seconds": ("%Y-%m-%dT%H:%M:%SZ", "utc"),
    "iso": ("%Y-%m-%d %H:%M:%S%.f", "naive"),
    "iso_t": ("%Y-%m-%dT%H:%M:%S%.f", "naive"),
    "iso_minutes": ("%Y-%m-%d %H:%M", "naive"),
    "iso_t_minutes": ("%Y-%m-%dT%H:%M", "naive"),
    "date": ("%Y-%m-%d", "naive"),
    "iso_t_z": ("%Y-%m-%dT%H:%M:%S%.fZ", "utc"),
    "iso_z": ("%Y-%m-%d %H:%M:%S%.fZ", "utc"),
    "iso_utc": ("%Y-%m-%d %H:%M:%S%.f UTC", "utc"),
    "iso_gmt": ("%Y-%m-%d %H:%M:%S%.f GMT", "utc"),
    "iso_t_offset": ("%Y-%m-%dT%H:%M:%S%.f%z", "aware"),
    "iso_offset": ("%Y-%m-%d %H:%M:%S%.f%z", "aware"),
    "slash": ("%Y/%m/%d %H:%M:%S%.f", "naive"),
    "slash_minutes": ("%Y/%m/%d %H:%M", "naive"),
    "slash_date": ("%Y/%m/%d", "naive"),
    "dotted_seconds": ("%d.%m.%Y %H:%M:%S", "naive"),
    "dotted_minutes": ("%d.%m.%Y %H:%M", "naive"),
    "dotted_date": ("%d.%m.%Y", "naive"),
    "epoch": ("", "epoch"),
}
_NUMBER = r"^-?\d+(\.\d+)?$"


def _auto_epoch(text: pl.Expr) -> pl.Expr:
    number = text.cast(pl.Float64, strict=False)
    return pl.when(number.abs() >= _EPOCH_MS_THRESHOLD).then(_epoch(number, "ms")).otherwise(_epoch(number, "s"))


def _plan(text: pl.Expr, plan: str, timezone: str) -> pl.Expr:
    pattern, kind = AUTO_PLANS[plan]
    if kind == "epoch":
        return pl.when(text.str.contains(_NUMBER)).then(_auto_epoch(text))
    if kind == "naive":
        return _naive(text, pattern, timezone)
    if kind == "aware":
        return _aware(text, pattern)
    # a Z / UTC / GMT suffix: the wall time is UTC, whatever the source's time zone
    return text.str.strptime(UTC_DATETIME, pattern, strict=False, exact=True, cache=False)


def resolve_auto(sample: pl.Series, timezone: str = "UTC") -> str | None:
    """The one :data:`AUTO_PLANS` layout that parses every sampled value ``auto`` parses, or None.

    ``sample`` is text (e.g. a file's first 1,000 timestamps). None when the values mix layouts,
    or none parses: the caller then keeps the full ``auto``. A layout parses a value exactly as
    ``auto`` does, so the result only differs on values the layout cannot parse (null instead
    of ``auto``'s answer); the ingest stage checks those afterwards.
    """
    text = sample.drop_nulls().str.strip_chars()
    text = text.filter(text.str.len_bytes() > 0)
    if text.is_empty():
        return None
    frame = text.to_frame("t")
    full = frame.select(parse_timestamp(pl.col("t"), "auto", timezone, stripped=True)).to_series()
    wanted = full.is_not_null()
    if not wanted.any():
        return None
    for plan in AUTO_PLANS:
        got = frame.select(_plan(pl.col("t"), plan, timezone)).to_series()
        if (got.is_not_null() == wanted).all() and (got.filter(wanted) == full.filter(wanted)).all():
            return plan
    return None


def parse_timestamp(
    expr: pl.Expr,
    fmt: str = "auto",
    timezone: str = "UTC",
    dtype: pl.DataType | None = None,
    *,
    stripped: bool = False,
    plan: str | None = None,
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
    plan
        With ``fmt="auto"`` on text: parse with this one :data:`AUTO_PLANS` layout only
        (from :func:`resolve_auto`); values in other layouts become null.

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
    if fmt == "auto" and plan is not None:
        return _plan(text, plan, timezone)
    if fmt == "auto":
        is_number = text.str.contains(_NUMBER)
        epoch = _auto_epoch(text)
        other = [_naive(text, f, timezone) for f in (*_NAIVE_SLASH, *_NAIVE_DOTTED)]
        return pl.when(is_number).then(epoch).otherwise(pl.coalesce([_iso(text, timezone), *other]))
    if "%z" in fmt or "%Z" in fmt or "%:z" in fmt:
        return _aware(text, fmt)
    return _naive(text, fmt, timezone)
