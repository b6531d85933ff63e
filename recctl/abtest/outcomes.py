"""Reading the experiment's files: assignments and the shop's outcome log.

The outcome log is whatever the shop returns after the experiment: rows such as
``(customer, event, item, revenue, time)``. ``experiment.outcomes`` in the config maps its columns
(see :class:`recctl.config.abtest.OutcomesConfig`). Here it is validated, reduced to the canonical
frame ``user_id, event, revenue, timestamp`` and aggregated to one row per assigned user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import polars as pl

from recctl.columns import Columns
from recctl.config.abtest import OutcomesConfig
from recctl.errors import DataError

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "OutcomeCoverage",
    "OutcomeLog",
    "Revenue",
    "per_user_outcomes",
    "read_assignments",
    "read_outcomes",
    "read_table",
    "write_table",
]

log = logging.getLogger(__name__)

#: columns an assignments file must have (more are allowed)
ASSIGNMENT_COLUMNS = [Columns.User, Columns.Variant]
#: canonical name of the revenue column after mapping
Revenue = "revenue"
_KEY = "experiment.outcomes.columns"


class OutcomeCoverage(TypedDict):
    """How the outcome log's users matched the assignments (see :func:`per_user_outcomes`)."""

    unassigned_rows: int
    unassigned_users: int
    matched_users: int
    unassigned_examples: list[str]


def read_table(path: Path, what: str) -> pl.DataFrame:
    """Read a CSV or Parquet file (by extension), all CSV columns as text.

    Parameters
    ----------
    path
        ``.csv``, ``.csv.gz``, ``.tsv`` or ``.parquet``.
    what
        What the file is, for error messages ("outcomes file").

    Returns
    -------
    pl.DataFrame

    Raises
    ------
    DataError
        If the file is missing, of an unknown type or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} not found: {path}; check the path")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pl.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if name.endswith(".tsv") else ","
            return pl.read_csv(path, separator=sep, infer_schema=False)
    except Exception as exc:  # polars raises several types; wrap them at the I/O edge
        raise DataError(f"{what} {path}: cannot be read: {exc}") from exc
    raise DataError(f"{what} {path}: unknown file type; use .csv, .csv.gz, .tsv or .parquet")


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a frame atomically as Parquet or CSV, chosen by the extension of ``path``.

    Parameters
    ----------
    frame
        The table.
    path
        Destination ending in ``.parquet`` or ``.csv``.

    Raises
    ------
    DataError
        If the extension is neither.
    """
    from recctl.artifacts import atomic_path, write_parquet_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        write_parquet_atomic(frame, path)
    elif path.suffix.lower() == ".csv":
        with atomic_path(path) as tmp:
            frame.write_csv(tmp)
    else:
        raise DataError(f"output {path}: unknown file type '{path.suffix}'; use .parquet or .csv")


def _user_ids(expr: pl.Expr, numeric_ids: bool) -> pl.Expr:
    # the same id text as ingest produces, so outcome, assignment and canonical ids join
    from recctl.data.ingest import normalise_id

    return normalise_id(expr, numeric_ids)


def read_assignments(path: Path, *, numeric_ids: bool = True) -> pl.DataFrame:
    """Read an assignments file written by ``recctl ab assign`` (or ``serve-export``).

    Parameters
    ----------
    path
        CSV or Parquet with at least ``user_id`` and ``variant``.
    numeric_ids
        Read ``17850.0`` as ``17850`` (``experiment.normalize_numeric_ids``).

    Returns
    -------
    pl.DataFrame
        ``user_id, variant`` (String) plus any other columns, one row per user.

    Raises
    ------
    DataError
        Missing columns, null values, or a user listed twice with different variants.
    """
    frame = read_table(path, "assignments file")
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"assignments file {path}: missing column(s) {missing}; found {frame.columns}. "
            "Write it with `recctl ab assign CONFIG --users FILE`."
        )
    frame = frame.with_columns(_user_ids(pl.col(Columns.User), numeric_ids), pl.col(Columns.Variant).cast(pl.String))
    for col in ASSIGNMENT_COLUMNS:
        nulls = frame[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise DataError(
                f"assignments file {path}: row {row + 1}: column '{col}' is empty; every user needs a {col}"
            )
    conflicts = frame.group_by(Columns.User).agg(pl.col(Columns.Variant).n_unique().alias("n")).filter(pl.col("n") > 1)
    if conflicts.height:
        user = conflicts[Columns.User][0]
        raise DataError(
            f"assignments file {path}: user '{user}' (and {conflicts.height - 1} more) is assigned to "
            "more than one variant; a user must see exactly one variant"
        )
    return frame.unique(subset=[Columns.User], keep="first", maintain_order=True)


@dataclass
class OutcomeLog:
    """The outcome log reduced to canonical columns, with what was dropped and why.

    Attributes
    ----------
    frame
        ``user_id`` (String), ``kind`` ("click" / "conversion" / "other"), ``revenue`` (Float64).
    n_rows
        Rows in the file.
    n_outside_window
        Rows dropped because their timestamp is outside ``[start, end)``.
    n_null_user
        Rows dropped because the user column is empty.
    event_counts
        Rows per event value (after the window filter).
    notes
        Human-readable remarks (e.g. "no timestamp column: the window was not applied").
    """

    frame: pl.DataFrame
    n_rows: int
    n_outside_window: int = 0
    n_null_user: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _column(frame: pl.DataFrame, path: Path, key: str, name: str) -> str:
    if name not in frame.columns:
        raise DataError(
            f"outcomes file {path}: column '{name}' (from {_KEY}.{key}) not found; columns are: "
            f"{', '.join(frame.columns)}. Set {_KEY}.{key} in the config to the right column."
        )
    return name


def _parse_time(series: pl.Series, path: Path, name: str, fmt: str | None) -> pl.Series:
    if isinstance(series.dtype, pl.Datetime):
        parsed = series
    elif series.dtype == pl.Date:
        parsed = series.cast(pl.Datetime("us"))
    else:
        text = series.cast(pl.String)
        try:
            parsed = text.str.to_datetime(format=fmt, time_unit="us", strict=True)
        except Exception:
            loose = text.str.to_datetime(format=fmt, time_unit="us", strict=False) if fmt else None
            bad = (loose.is_null() & text.is_not_null()) if loose is not None else None
            row = int(bad.arg_true()[0]) if bad is not None and bad.any() else None
            where = f"row {row + 1} ('{text[row]}')" if row is not None else "some rows"
            raise DataError(
                f"outcomes file {path}: column '{name}': {where} is not a valid timestamp"
                f"{f' in format {fmt!r}' if fmt else ' (ISO 8601 expected)'}; fix the rows or set "
                "experiment.outcomes.timestamp_format"
            ) from None
    tz = parsed.dtype.time_zone if isinstance(parsed.dtype, pl.Datetime) else None
    return parsed.dt.replace_time_zone("UTC") if tz is None else parsed.dt.convert_time_zone("UTC")


def read_outcomes(
    path: Path,
    spec: OutcomesConfig,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    numeric_ids: bool = True,
) -> OutcomeLog:
    """Read and validate an outcome log.

    Parameters
    ----------
    path
        CSV or Parquet file.
    spec
        ``experiment.outcomes`` (column mapping and which events are clicks / conversions).
    start, end
        Keep rows with ``start <= timestamp < end`` (needs ``columns.timestamp``).
    numeric_ids
        Read user ids ``17850.0`` as ``17850`` (``experiment.normalize_numeric_ids``).

    Returns
    -------
    OutcomeLog

    Raises
    ------
    DataError
        A mapped column is missing, revenue is not a number, a timestamp does not parse.
    """
    raw = read_table(path, "outcomes file")
    cols = spec.columns
    user = _column(raw, path, "user_id", cols.user_id)
    notes: list[str] = []
    exprs = [_user_ids(pl.col(user), numeric_ids).alias(Columns.User)]
    if cols.event is not None:
        event = _column(raw, path, "event", cols.event)
        ev = pl.col(event).cast(pl.String).str.strip_chars()
        kind = (
            pl.when(ev.is_in(spec.conversion_events))
            .then(pl.lit("conversion"))
            .when(ev.is_in(spec.click_events))
            .then(pl.lit("click"))
            .otherwise(pl.lit("other"))
        )
        exprs += [ev.alias(Columns.Event), kind.alias("kind")]
    else:
        # an orders file: every row is a conversion
        exprs += [pl.lit("order").alias(Columns.Event), pl.lit("conversion").alias("kind")]
    if cols.item_id is not None:
        exprs.append(pl.col(_column(raw, path, "item_id", cols.item_id)).cast(pl.String).alias(Columns.Item))
    frame = raw.select(exprs)

    if cols.revenue is not None:
        rev_name = _column(raw, path, "revenue", cols.revenue)
        rev_raw = raw[rev_name]
        revenue = rev_raw.cast(pl.Float64, strict=False) if rev_raw.dtype != pl.Float64 else rev_raw
        bad = revenue.is_null() & rev_raw.is_not_null() & (rev_raw.cast(pl.String).str.strip_chars() != "")
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(
                f"outcomes file {path}: column '{rev_name}' ({_KEY}.revenue): row {row + 1} "
                f"('{rev_raw[row]}') is not a number; {int(bad.sum())} such rows. Fix them or map another column."
            )
        frame = frame.with_columns(revenue.fill_null(0.0).fill_nan(0.0).alias(Revenue))
    else:
        frame = frame.with_columns(pl.lit(0.0).alias(Revenue))

    n_rows = frame.height
    n_outside = 0
    if start is not None or end is not None:
        if cols.timestamp is None:
            notes.append(
                "experiment start/end are set but experiment.outcomes.columns.timestamp is not: "
                "all rows were counted, none filtered by time"
            )
        else:
            ts_name = _column(raw, path, "timestamp", cols.timestamp)
            ts = _parse_time(raw[ts_name], path, ts_name, spec.timestamp_format)
            keep = pl.Series([True] * n_rows)
            if start is not None:
                keep = keep & (ts >= start).fill_null(False)
            if end is not None:
                keep = keep & (ts < end).fill_null(False)
            n_outside = int((~keep).sum())
            frame = frame.filter(keep)

    null_user = frame[Columns.User].is_null() | (frame[Columns.User] == "")
    n_null = int(null_user.fill_null(True).sum())
    if n_null:
        frame = frame.filter(~null_user.fill_null(True))
        notes.append(f"{n_null} outcome rows have an empty user id and were ignored")
    counts = frame.group_by(Columns.Event).len().sort(Columns.Event)
    event_counts = dict(zip(counts[Columns.Event].to_list(), counts["len"].to_list(), strict=True))
    if cols.event is not None:
        known = set(spec.click_events) | set(spec.conversion_events)
        unknown = sorted(str(e) for e in event_counts if e not in known)
        if unknown:
            notes.append(
                f"event values {unknown[:10]} are neither click_events nor conversion_events and were not counted"
            )
        if not any(e in event_counts for e in spec.conversion_events) and frame.height:
            notes.append(
                f"no row has a conversion event {spec.conversion_events}; values seen: "
                f"{sorted(map(str, event_counts))[:10]}. Check experiment.outcomes.conversion_events."
            )
    return OutcomeLog(frame, n_rows, n_outside, n_null, event_counts, notes)


def per_user_outcomes(assignments: pl.DataFrame, outcomes: pl.DataFrame) -> tuple[pl.DataFrame, OutcomeCoverage]:
    """One row per assigned user with clicks, conversions and revenue.

    Users with no outcome rows count as zero clicks, not converted and zero revenue; outcome
    rows of users who are not in the assignments are counted and excluded.

    Parameters
    ----------
    assignments
        ``user_id, variant``.
    outcomes
        Canonical outcome frame from :func:`read_outcomes` (``user_id, kind, revenue``).

    Returns
    -------
    tuple
        The per-user frame ``user_id, variant, clicks, conversions, revenue, rows, converted``
        (``rows``: the user's outcome rows of any event) and
        the :class:`OutcomeCoverage` (``unassigned_rows``, ``unassigned_users``, ``matched_users``,
        ``unassigned_examples``).
    """
    per_user = outcomes.group_by(Columns.User).agg(
        (pl.col("kind") == "click").sum().cast(pl.Int64).alias("clicks"),
        (pl.col("kind") == "conversion").sum().cast(pl.Int64).alias("conversions"),
        pl.col(Revenue).sum().alias(Revenue),
        pl.len().alias("rows"),
    )
    assigned = assignments.select(Columns.User, Columns.Variant)
    unassigned = per_user.join(assigned, on=Columns.User, how="anti")
    frame = (
        assigned.join(per_user, on=Columns.User, how="left")
        .with_columns(
            pl.col("rows").fill_null(0).cast(pl.Int64),
            pl.col("clicks").fill_null(0),
            pl.col("conversions").fill_null(0),
            pl.col(Revenue).fill_null(0.0),
        )
        .with_columns((pl.col("conversions") > 0).alias("converted"))
    )
    extra: OutcomeCoverage = {
        "unassigned_rows": int(unassigned["rows"].sum() or 0),
        "unassigned_users": unassigned.height,
        "matched_users": per_user.height - unassigned.height,
        "unassigned_examples": unassigned[Columns.User].head(3).to_list(),
    }
    return frame, extra
