"""Raw interaction and catalogue files -> canonical frames, with every raw row accounted for.

The interaction files are read in one streaming pass, so memory does not grow with their size:

1. :func:`annotate_file` checks one raw file (format, mapped columns, types); its
   :meth:`AnnotatedFile.views` are two lazy views of its rows: the canonical columns of the
   rows that pass every check, and ``row, reason, column, value`` of the rows that do not.
   All parsing and checking are elementwise polars expressions (no ``replace``, which the
   streaming engine runs by collecting the whole column).
2. :func:`ingest_interactions` runs one polars streaming query over every file: it writes the
   accepted rows, exact duplicates dropped, to ``interactions.parquet``, each file's rejected
   rows to a scratch file, and two 64-bit hashes of every accepted row, which prove the
   de-duplication exact afterwards and charge each duplicate to its file.
3. :func:`check_policy` applies each source's ``on_error`` policy (``fail`` stops on the first
   offending row) and refuses a file where *every* row fails the same parse (a wrong column
   mapping or timestamp format, not dirty data); :func:`write_rejected` gathers the
   quarantined rows into ``rejected.parquet``.

Catalogue and user-attribute tables are small by comparison and are read into memory by
:func:`read_table`.

Reject reasons, checked in this order (a row gets the first that applies):
``empty_row`` (every mapped column empty, e.g. a blank line), ``missing_user_id``,
``missing_item_id``, ``bad_user_id`` / ``bad_item_id`` (an id the export formats cannot carry:
a control character, or a leading ``'`` before ``= + - @``), ``bad_timestamp``,
``unknown_event``, ``non_numeric_value``,
``cancelled``, the reasons of the source's ``require`` checks, and ``below_threshold`` (a
``value_rule`` with ``below: drop``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recctl.artifacts import sha256_file
from recctl.columns import Columns
from recctl.config.data import FileSource, InteractionSource, TableSource
from recctl.data.lookups import JoinedLookup, apply_lookups, read_lookups
from recctl.data.readers import ROW, detect_format, prepare_file, require_columns, scan_file
from recctl.data.timestamps import UTC_DATETIME, parse_timestamp, resolve_auto
from recctl.errors import DataError
from recctl.progress import Progress, report

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

log = logging.getLogger(__name__)

__all__ = [
    "FILE_IDX",
    "HASH",
    "HASH2",
    "IN_STREAM_MAX_ROWS",
    "PARQUET_WRITE",
    "PARSE_REASONS",
    "REJECTED_SCHEMA",
    "FileStats",
    "AnnotatedFile",
    "InteractionsResult",
    "annotate_file",
    "annotate_rows",
    "check_policy",
    "estimate_rows",
    "file_order_time",
    "float_ids",
    "infer_text_types",
    "text_column_warnings",
    "ingest_interactions",
    "map_values",
    "narrowed_time_lost_rows",
    "normalise_id",
    "unexportable_id",
    "read_table",
    "rejected_counts",
    "write_rejected",
]

#: helper columns (never in outputs)
BAD_VALUE, FILE_IDX, HASH, HASH2 = "__value", "__file", "__hash", "__hash2"
#: microseconds between the file-order times of consecutive files (sources without a time column)
_ORDER_STRIDE_US = 1 << 40
#: seeds of the two independent 64-bit row hashes
_HASH_SEEDS = (20260301, 20261129)
#: largest expected row count de-duplicated inside the streaming pass; its hash table takes
#: about 50 bytes a row (1.4 GB peak at 20M rows), so beyond this the bounded two-pass path runs
IN_STREAM_MAX_ROWS = 40_000_000
#: reasons that mean "could not be parsed"; a file where every row fails one of them is refused
PARSE_REASONS = ("missing_user_id", "missing_item_id", "bad_timestamp", "unknown_event", "non_numeric_value")
#: Parquet settings of ``interactions.parquet``: zstd level 1 writes in two thirds of the CPU
#: time of the default level 3 for a file ~1.5% larger (5M events: 0.8 s vs 1.2 s, 48 vs 47 MB)
PARQUET_WRITE: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
#: schema of ``rejected.parquet``
REJECTED_SCHEMA = pl.Schema(
    {
        Columns.Source: pl.String(),
        "row": pl.Int64(),
        "column": pl.String(),
        "value": pl.String(),
        "reason": pl.String(),
    }
)
_INTERACTION_SCHEMA = pl.Schema(
    {
        Columns.User: pl.String(),
        Columns.Item: pl.String(),
        Columns.Event: pl.String(),
        Columns.Timestamp: UTC_DATETIME,
        Columns.Value: pl.Float64(),
    }
)
_NESTED = (pl.List, pl.Struct, pl.Array, pl.Object)


@dataclass
class FileStats:
    """Row accounting of one raw file: ``read == accepted + sum(rejected.values())``.

    ``accepted`` counts rows that passed every check, duplicates included; ``duplicates`` is
    how many of them were exact copies of a row seen earlier (dropped); ``added`` is
    ``accepted - duplicates``.
    """

    path: str
    source: str
    policy: str
    read: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    sha256: str = ""

    @property
    def n_rejected(self) -> int:
        """Rows rejected for any reason."""
        return sum(self.rejected.values())

    @property
    def added(self) -> int:
        """Accepted rows that were not duplicates."""
        return self.accepted - self.duplicates

    def to_dict(self) -> dict[str, object]:
        """Plain data for the manifest."""
        return {
            "path": self.path,
            "source": self.source,
            "on_error": self.policy,
            "sha256": self.sha256,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.n_rejected,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "duplicates": self.duplicates,
            "added": self.added,
        }


def normalise_id(expr: pl.Expr, numeric_ids: bool = True, *, stripped: bool = False) -> pl.Expr:
    """Canonical id text: stripped, empty -> null, and (with ``numeric_ids``) ``17850.0`` -> ``17850``.

    Float-typed id columns (an integer id exported through a float column) are printed
    without the fractional ``.0``, so ``17850.0`` in one file and ``17850`` in another match;
    ids such as ``A1.0`` or ``1.5`` are left alone. With ``stripped``, ``expr`` is a text column
    already stripped of surrounding whitespace.
    """
    # when/then, not ``replace("", None)``: the streaming engine runs ``replace`` by collecting
    # the whole column, so memory grew with the file (3 GB for 20M rows)
    stripped_text = expr if stripped else expr.cast(pl.String).str.strip_chars()
    text = pl.when(stripped_text.str.len_bytes() > 0).then(stripped_text)
    if numeric_ids:
        # cheaper than a regex replace on every row: strip ".0" only where the rest is an integer
        no_suffix = text.str.strip_suffix(".0")
        is_float_int = text.str.ends_with(".0") & no_suffix.cast(pl.Int64, strict=False).is_not_null()
        return pl.when(is_float_int).then(no_suffix).otherwise(text)
    return text


#: an id the export formats cannot carry faithfully: a control character (NUL, newline, ...:
#: CSV readers, spreadsheets and shop importers cut or mangle them), or a leading ``'`` before a
#: formula character, which reads back as another id once a CSV's formula guard (a ``'`` put
#: before ``= + - @``) is stripped: ``'-5`` and ``-5`` would both arrive as ``-5``
UNEXPORTABLE_ID = r"[\x00-\x1f\x7f-\x9f]|^'[=+\-@]"


def unexportable_id(expr: pl.Expr) -> pl.Expr:
    """True where a canonical id cannot round-trip through the export formats (see :data:`UNEXPORTABLE_ID`).

    Such rows are rejected as ``bad_user_id`` / ``bad_item_id`` rather than accepted and found
    out by the nightly export's validation, which would then refuse every customer's file.
    """
    return expr.str.contains(UNEXPORTABLE_ID).fill_null(False)


def float_ids(lf: pl.LazyFrame, column: str, dtype: pl.DataType, enabled: bool = True) -> bool:
    """Whether an id column holds float-printed integers (``17850.0``) and needs :func:`normalise_id`'s fix.

    Float columns always do; text columns are judged on their first 1,000 values (a float
    export prints *every* value that way), so the per-row fix, which costs about as much as
    parsing the column, only runs on files that need it.
    """
    if not enabled:
        return False
    if dtype.is_float():
        return True
    if dtype != pl.String:
        return False
    head = lf.select(pl.col(column)).drop_nulls().head(1_000).collect()[column]
    return bool(head.str.strip_chars().str.contains(r"^-?\d+\.0+$").any())


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr if dtype == pl.String else expr.cast(pl.String)


def _parse_number(text: pl.Expr, dtype: pl.DataType, decimal_comma: bool = False) -> pl.Expr:
    """A number from ``text`` (stripped text, or a numeric/boolean column); null when it does not parse.

    NaN and infinities come through: :func:`_finite` drops them in a later step, so the
    parse is not evaluated twice.
    """
    if dtype.is_numeric() or dtype == pl.Boolean:
        return text.cast(pl.Float64)
    if decimal_comma:  # 1.234,5 -> 1234.5
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return text.cast(pl.Float64, strict=False)


def _finite(number: pl.Expr) -> pl.Expr:
    # NaN and infinities are not usable values: treat them like text that does not parse
    return pl.when(number.is_finite()).then(number)


def map_values(raw: pl.Expr, mapping: dict[Any, str]) -> pl.Expr:
    """Map raw values to text through ``mapping``; values not in it become null.

    An elementwise ``when``/``is_in`` chain, one branch per distinct target, instead of
    ``replace_strict``, which the streaming engine runs by collecting the whole column. Raw
    values that map to themselves pass through without building a new string per row.
    """
    by_target: dict[str, list[Any]] = {}
    for key, target in mapping.items():
        by_target.setdefault(target, []).append(key)
    identity = [k for k, t in mapping.items() if k == t]
    chain: Any = pl
    if identity:
        chain = chain.when(raw.is_in(identity)).then(raw.cast(pl.String))
    for target, keys in by_target.items():
        keys = [k for k in keys if k != target]
        if keys:
            chain = chain.when(raw.is_in(keys) if len(keys) > 1 else raw == keys[0]).then(pl.lit(target, pl.String))
    return pl.lit(None, pl.String) if chain is pl else chain.otherwise(pl.lit(None, pl.String))


def scan_source(prepared: Path, fmt: str, src: FileSource, shown: Path | None = None) -> pl.LazyFrame:
    """Scan a prepared copy (:func:`~recctl.data.readers.prepare_file`) of ``shown`` with its source's layout."""
    return scan_file(
        prepared,
        shown=shown,
        fmt=fmt,
        delimiter=src.delimiter,
        encoding=src.encoding,
        null_values=src.null_values,
        has_header=src.has_header,
        column_names=src.column_names,
        skip_lines=src.skip_lines,
        quote_char=src.quote_char,
    )


def _check_types(path: Path, schema: dict[str, pl.DataType], columns: dict[str, str]) -> None:
    for key, column in columns.items():
        dtype = schema[column]
        if isinstance(dtype, _NESTED):
            raise DataError(
                f"{path}: column '{column}' (mapped by {key}) holds {dtype} values; recctl needs text or "
                "numbers there. Map another column or flatten it in the export."
            )


def annotate_file(
    path: Path,
    src: InteractionSource,
    *,
    key: str,
    file_idx: int,
    tmp_dir: Path,
    order: int | None = None,
    resolve: Callable[[str], Path] | None = None,
) -> AnnotatedFile:
    """Scan one raw interaction file into lazy accepted rows and rejected rows (one shared scan).

    Parameters
    ----------
    path
        The raw file.
    src
        Its source config (mapping, formats, rules).
    key
        YAML key of the source (``data.interactions``), for error messages.
    file_idx
        Index of the file in this ingest run (kept on the result).
    tmp_dir
        Where decompressed / transcoded copies may be written.
    order
        The file's place in the ingest history (default ``file_idx``); only used for the
        file-order times of a source without a time column (:func:`file_order_time`).
    resolve
        ``cfg.resolve``, for the paths of the source's ``lookups`` (relative to the config).

    Returns
    -------
    AnnotatedFile
        A checked file whose :meth:`AnnotatedFile.views` are the lazy accepted rows (canonical
        columns of rows that pass every check) and rejected rows (``row, reason, column,
        value``), both from one scan; :func:`ingest_interactions` writes them in one pass.

    Raises
    ------
    DataError
        If the file cannot be read or lacks a mapped column.
    """
    fmt = detect_format(path, src.format)
    prepared = prepare_file(path, fmt, src.encoding, tmp_dir, delimiter=src.delimiter, sheet=src.sheet)
    lf = scan_source(prepared, fmt, src, shown=path)
    joined: list[JoinedLookup] = []
    if src.lookups:
        joined = read_lookups(src.lookups, lf, path, key=key, resolve=resolve or (lambda p: Path(p)), tmp_dir=tmp_dir)
        lf = apply_lookups(lf, joined)
    cols = src.columns
    wanted = {f"{key}.columns.{name}": raw for name, raw in cols.model_dump().items() if raw is not None}
    if src.cancellations is not None and src.cancellations.column:
        wanted[f"{key}.cancellations.column"] = src.cancellations.column
    for i, check in enumerate(src.require):
        wanted[f"{key}.require.{i}.column"] = check.column
    schema = require_columns(lf, path, wanted, fmt=fmt, delimiter=src.delimiter)
    _check_types(path, schema, wanted)

    fix = src.normalize_numeric_ids
    try:  # the peeks read the first rows only
        float_user = float_ids(lf, cols.user_id, schema[cols.user_id], fix)
        float_item = float_ids(lf, cols.item_id, schema[cols.item_id], fix)
        time_plan = None
        if src.timestamp_format == "auto" and cols.timestamp is not None and schema[cols.timestamp] == pl.String:
            head = lf.select(pl.col(cols.timestamp)).drop_nulls().head(1_000).collect().to_series()
            time_plan = resolve_auto(head, src.timezone)
    except (pl.exceptions.PolarsError, OSError) as exc:
        from recctl.data.readers import diagnose_source

        raise diagnose_source(path, fmt, src, exc, read_from=prepared, key=key) from exc
    return AnnotatedFile(
        path=path,
        prepared=prepared,
        fmt=fmt,
        src=src,
        file_idx=file_idx,
        schema=schema,
        float_ids=(float_user, float_item),
        order=file_idx if order is None else order,
        lookups=joined,
        time_plan=time_plan,
        key=key,
    )


def file_order_time(order: int, row: pl.Expr) -> pl.Expr:
    """The time given to a row of a source without a time column: its place in the ingest history.

    ``1970-01-01 UTC + order * 2**40 + row`` microseconds: rows of one file are a microsecond
    apart in file order, each later file (or appended batch) starts 2**40 us (12.7 days) later,
    so "latest" and time-based splits follow the order the rows were exported and appended in.
    """
    return (pl.lit(order * _ORDER_STRIDE_US, pl.Int64) + row.cast(pl.Int64)).cast(UTC_DATETIME)


def _annotate(
    lf: pl.LazyFrame,
    schema: dict[str, pl.DataType],
    src: InteractionSource,
    float_ids: tuple[bool, bool],
    *,
    order: int = 0,
    time_plan: str | None = None,
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Build the annotation in steps, each a plain projection, so every parse runs once per row.

    Polars does not share a sub-expression used twice inside one streaming projection (a
    ``when(x).then(x)`` strips or parses ``x`` twice), so each intermediate gets its own column:

    0. the stripped text of every mapped column (raw columns kept for rejected rows' messages);
    1. the parsed canonical columns and the flags that need text;
    2. the finite value and the flags that need it.

    A row is accepted when no flag fires; only for the others (few) is the first applicable
    reason, column and raw value worked out.
    """
    cols = src.columns
    rule_c = src.cancellations
    marker_col = rule_c.column if rule_c is not None and rule_c.column and rule_c.prefix else None
    used = [
        c
        for c in dict.fromkeys(
            [cols.user_id, cols.item_id, cols.timestamp, cols.event, cols.value, marker_col]
            + [check.column for check in src.require]
        )
        if c is not None
    ]
    # step 0: stripped text (non-text columns pass through), and the raw columns for messages
    text_of = {c: f"__text{k}" for k, c in enumerate(used)}
    raw_of = {c: f"__raw{k}" for k, c in enumerate(used)}
    step0 = lf.select(
        pl.col(ROW).cast(pl.Int64),
        *[(pl.col(c).str.strip_chars() if schema[c] == pl.String else pl.col(c)).alias(text_of[c]) for c in used],
        *[pl.col(c).alias(raw_of[c]) for c in used],
    )

    def text(c: str) -> pl.Expr:
        return pl.col(text_of[c])

    # step 1: parse
    parsed: dict[str, pl.Expr] = {
        Columns.User: _id(text(cols.user_id), schema[cols.user_id], float_ids[0]),
        Columns.Item: _id(text(cols.item_id), schema[cols.item_id], float_ids[1]),
        Columns.Timestamp: (
            file_order_time(order, pl.col(ROW))
            if cols.timestamp is None
            else parse_timestamp(
                text(cols.timestamp),
                src.timestamp_format,
                src.timezone,
                schema[cols.timestamp],
                stripped=True,
                plan=time_plan,
            )
        ),
    }
    if src.value_rule is None and cols.event is not None:
        event_text = _as_text(text(cols.event), schema[cols.event])
        if src.event_map is not None:
            parsed[Columns.Event] = map_values(event_text, src.event_map)
        else:
            parsed[Columns.Event] = pl.when(event_text.str.len_bytes() > 0).then(event_text)
    elif src.value_rule is None:
        parsed[Columns.Event] = pl.lit(src.default_event, pl.String)
    if cols.value is not None:
        dtype = schema[cols.value]
        parsed["__number"] = _parse_number(text(cols.value), dtype, src.decimal_comma)
        # a value that is present but not a number (empty is fine: value is optional)
        present = (text(cols.value).str.len_bytes() > 0) if dtype == pl.String else text(cols.value).is_not_null()
        parsed["__present"] = present.fill_null(False)
    else:
        parsed["__number"] = pl.lit(None, pl.Float64)
    if marker_col is not None and rule_c is not None and rule_c.prefix:
        marker = _as_text(text(marker_col), schema[marker_col])
        parsed["__marked"] = marker.str.starts_with(rule_c.prefix).fill_null(False)
    ops = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne"}
    for k, check in enumerate(src.require):
        number = _parse_number(text(check.column), schema[check.column], src.decimal_comma)
        parsed[f"__check{k}"] = ~getattr(_finite(number), f"__{ops[check.op]}__")(check.value).fill_null(False)
    step1 = step0.select(pl.col(ROW), *[e.alias(n) for n, e in parsed.items()], *[pl.col(a) for a in raw_of.values()])

    # step 2: the finite value and what depends on it
    v = pl.col(Columns.Value)
    derived: dict[str, pl.Expr] = {Columns.Value: _finite(pl.col("__number"))}
    step2 = step1.with_columns(**derived)
    flags: dict[str, pl.Expr] = {}
    if cols.value is not None:
        flags["__bad_value"] = pl.col("__present") & v.is_null()
    cancelled = []
    if marker_col is not None:
        cancelled.append(pl.col("__marked"))
    if rule_c is not None and rule_c.negative_value and cols.value is not None:
        cancelled.append((v < 0).fill_null(False))
    if cancelled:
        flags["__cancelled"] = pl.any_horizontal(cancelled)
    if src.value_rule is not None:
        rule = src.value_rule
        below = None if rule.below == "drop" else rule.below
        flags[Columns.Event] = pl.when(v >= rule.min_value).then(pl.lit(rule.event)).otherwise(pl.lit(below, pl.String))
    step2 = (step2.with_columns(**flags) if flags else step2).cache()

    if src.value_rule is not None:
        rule = src.value_rule
        unknown_event = v.is_null() & ~pl.col("__bad_value")
        below_threshold = (v < rule.min_value).fill_null(False) if rule.below == "drop" else None
    else:
        unknown_event = pl.col(Columns.Event).is_null()
        below_threshold = None
    # (flag, reason, raw column) in priority order: a row gets the first that applies; flags
    # that cannot fire for this source (no cancellation rule, no value rule) are left out
    candidates: list[tuple[pl.Expr | None, str, str | None]] = [
        (pl.col(Columns.User).is_null(), "missing_user_id", cols.user_id),
        (pl.col(Columns.Item).is_null(), "missing_item_id", cols.item_id),
        (unexportable_id(pl.col(Columns.User)), "bad_user_id", cols.user_id),
        (unexportable_id(pl.col(Columns.Item)), "bad_item_id", cols.item_id),
        (pl.col(Columns.Timestamp).is_null(), "bad_timestamp", cols.timestamp),
        (unknown_event, "unknown_event", cols.event if src.value_rule is None else cols.value),
        (pl.col("__bad_value") if "__bad_value" in flags else None, "non_numeric_value", cols.value),
        (pl.col("__cancelled") if "__cancelled" in flags else None, "cancelled", marker_col or cols.value),
        *[(pl.col(f"__check{k}"), c.reason, c.column) for k, c in enumerate(src.require)],
        (below_threshold, "below_threshold", cols.value),
    ]
    rules = [(cond, reason, col) for cond, reason, col in candidates if cond is not None]
    # accepted rows need one boolean per row; which rule fired is only worked out for the others
    ok = ~pl.any_horizontal([cond for cond, _, _ in rules])
    accepted = step2.filter(ok).select(Columns.Interactions).cast(_INTERACTION_SCHEMA)
    # a blank line (every mapped column empty) fails the user-id check anyway; name it for what it is
    blank = pl.all_horizontal([pl.col(raw_of[c]).is_null() for c in used])
    rules.insert(0, (blank, "empty_row", None))
    chain: Then | ChainedThen = pl.when(rules[0][0]).then(pl.lit(0, pl.Int8))
    for k, (cond, _, _) in enumerate(rules[1:], start=1):
        chain = chain.when(cond).then(pl.lit(k, pl.Int8))
    rule_idx = pl.col("__rule")
    reason = map_values(rule_idx, {k: r for k, (_, r, _) in enumerate(rules)})
    column = map_values(rule_idx, {k: c for k, (_, _, c) in enumerate(rules) if c is not None})
    shown = pl.lit(None, pl.String)
    for k, (_, _, col) in enumerate(rules):
        if col is not None:
            raw_text = _as_text(pl.col(raw_of[col]), schema[col])
            shown = pl.when(rule_idx == k).then(raw_text).otherwise(shown)
    rejected = (
        step2.filter(~ok)
        .with_columns(chain.otherwise(pl.lit(None, pl.Int8)).alias("__rule"))
        .select(
            pl.col(ROW).alias("row"),
            reason.alias("reason"),
            column.alias("column"),
            shown.alias("value"),
        )
    )
    return accepted, rejected


def annotate_rows(
    lf: pl.LazyFrame,
    schema: dict[str, pl.DataType],
    src: InteractionSource,
    float_ids: tuple[bool, bool],
    *,
    order: int = 0,
    time_plan: str | None = None,
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Lazy ``(accepted, rejected)`` views of raw rows: the one definition of the per-row ingest rules.

    The local stream (:meth:`AnnotatedFile.views`) and the Spark engine's tasks
    (:mod:`recctl.engine.spark.ingest`, one Arrow batch at a time) both call it, so parsing and
    reject reasons cannot differ between engines.

    Parameters
    ----------
    lf
        Raw rows with the 1-based :data:`~recctl.data.readers.ROW` column (lookups joined).
    schema
        Raw column types (text for CSV).
    src
        The interaction source (mapping, formats, rules).
    float_ids
        Whether the user / item id columns need the ``17850.0`` fix (:func:`float_ids`).
    order
        The file's place in the ingest history (file-order times).
    time_plan
        The one timestamp layout of ``auto`` for this file, or None for the full ``auto``.
    """
    return _annotate(lf, schema, src, float_ids, order=order, time_plan=time_plan)


def _id(text: pl.Expr, dtype: pl.DataType, numeric_ids: bool) -> pl.Expr:
    """Canonical id from step 0's column: stripped text, or a number / other type printed as text."""
    if dtype == pl.String:
        return normalise_id(text, numeric_ids, stripped=True)
    return normalise_id(text, numeric_ids)


@dataclass
class AnnotatedFile:
    """A checked raw file, ready to be read in one streaming pass by :func:`ingest_interactions`."""

    path: Path
    prepared: Path
    fmt: str
    src: InteractionSource
    file_idx: int
    schema: dict[str, pl.DataType]
    float_ids: tuple[bool, bool]
    #: position of the file in the whole ingest history (file-order times, see :func:`file_order_time`)
    order: int = 0
    #: the source's lookup tables, joined onto every scan
    lookups: list[JoinedLookup] = field(default_factory=list)
    #: with ``timestamp_format: auto``: the one layout the file's first values use (see
    #: :func:`~recctl.data.timestamps.resolve_auto`), or None for the full ``auto``
    time_plan: str | None = None
    #: the source's YAML key (``data.interactions``), for messages
    key: str | None = None

    def scan(self) -> pl.LazyFrame:
        """A fresh lazy scan of the (prepared) file, lookups joined, with the 1-based :data:`ROW` column."""
        return apply_lookups(scan_source(self.prepared, self.fmt, self.src, shown=self.path), self.lookups)

    def views(self) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        """Lazy ``(accepted, rejected)`` views of the whole file, from one :meth:`scan`."""
        return _annotate(
            self.scan(),
            self.schema,
            self.src,
            self.float_ids,
            order=self.order,
            time_plan=self.time_plan,
        )


@dataclass
class InteractionsResult:
    """What :func:`ingest_interactions` wrote and how each input file's rows were counted.

    Keys of the dicts are file indices (``AnnotatedFile.file_idx``).
    """

    written: int
    accepted: dict[int, int]
    duplicates: dict[int, int]
    rejected_files: dict[int, Path]
    #: ``in_stream`` or ``two_pass`` (see :func:`ingest_interactions`)
    method: str = "in_stream"
    #: true when a 64-bit row-hash collision was found and the exact fallback pass ran
    exact_fallback: bool = False


def _row_hash(seed: int) -> pl.Expr:
    return pl.struct(Columns.Interactions).hash(seed)


def _previous_rows(previous: Path) -> pl.LazyFrame:
    return pl.scan_parquet(previous).select(Columns.Interactions).cast(_INTERACTION_SCHEMA)


def _accepted_stream(
    files: list[AnnotatedFile], previous: Path | None, *, second_hash: bool
) -> tuple[pl.LazyFrame, list[pl.LazyFrame]]:
    """Every accepted row (``previous`` first, then the files in order) with its file index and row hash(es)."""
    parts, rejected = [], []
    if previous is not None:
        parts.append(_previous_rows(previous).with_columns(pl.lit(-1, pl.Int32).alias(FILE_IDX)))
    for ann in files:
        accepted, rejects = ann.views()
        parts.append(accepted.with_columns(pl.lit(ann.file_idx, pl.Int32).alias(FILE_IDX)))
        rejected.append(rejects)
    hashes = [_row_hash(_HASH_SEEDS[0]).alias(HASH)]
    if second_hash:
        hashes.append(_row_hash(_HASH_SEEDS[1]).alias(HASH2))
    return pl.concat(parts, how="vertical").with_columns(hashes), rejected


def estimate_rows(files: list[AnnotatedFile], previous: Path | None = None) -> int:
    """Rows the files (and ``previous``) probably hold: Parquet metadata, else bytes / bytes-per-line of the head."""
    total = pl.scan_parquet(previous).select(pl.len()).collect().item() if previous is not None else 0
    for ann in files:
        if ann.fmt in ("parquet", "excel"):  # a spreadsheet's prepared copy is Parquet
            total += pl.scan_parquet(ann.prepared).select(pl.len()).collect().item()
            continue
        with open(ann.prepared, "rb") as fh:
            head = fh.read(1 << 20)
        lines = max(head.count(b"\n"), 1)
        total += int(ann.prepared.stat().st_size / (len(head) / lines))
    return total


def ingest_interactions(
    files: list[AnnotatedFile],
    target: Path,
    scratch: Path,
    previous: Path | None = None,
    *,
    in_stream_max_rows: int | None = None,
    progress: Progress | None = None,
) -> InteractionsResult:
    """Parse, check, de-duplicate and write every interaction file, reading each raw file once.

    One polars streaming query reads every file (both cores; memory set by the engine's
    morsels, not by the files) and writes each file's rejected rows
    (``rejected-<file>.parquet`` in ``scratch``) while it de-duplicates the accepted rows,
    ``previous`` first, then the files in order, keeping the first copy. How it de-duplicates
    depends on the expected size (:func:`estimate_rows`):

    * up to ``in_stream_max_rows`` rows, **in the stream**: a row whose 64-bit row hash
      (:data:`HASH`) was seen before is dropped on the way to ``target``
      (``unique(keep="first")``: a hash table of about 50 bytes per row), and a second,
      independent hash (:data:`HASH2`) of every row goes to ``hashes.arrow``. Afterwards, rows
      whose ``HASH`` repeats but whose ``HASH2`` differs are different rows that share a 64-bit
      hash (odds about 1e-5 for 20M distinct rows): :func:`_exact_rewrite` then writes
      ``target`` again comparing those rows column by column. Otherwise every dropped row
      matched the kept one on 128 bits of hash (odds of a false match below 1e-24).
    * above it, **in two passes** with memory of 8 bytes a row: the accepted rows go to an
      lz4 Arrow scratch file, the sorted hashes name the candidate rows, which are compared
      column by column, and a second streaming pass writes ``target`` without the later copies.
      (20M rows: 10.0 s and 0.83 GB peak, against 8.7 s and 1.46 GB in the stream.)

    A file whose ``auto`` timestamps were narrowed to the layout of its first rows
    (:func:`~recctl.data.timestamps.resolve_auto`) but whose rejected ``bad_timestamp`` values
    the full ``auto`` can parse (:func:`narrowed_time_lost_rows`) is read again with the full
    ``auto``, so the result never depends on the narrowing.

    Parameters
    ----------
    files
        From :func:`annotate_file`, in ingest order (earlier files win duplicates).
    target
        ``interactions.parquet``.
    scratch
        A private scratch directory.
    previous
        An earlier ``interactions.parquet`` (``--append``): its rows come first and stay.
    in_stream_max_rows
        Largest expected row count de-duplicated in the stream (default :data:`IN_STREAM_MAX_ROWS`).
    progress
        Told ``ingest: rows read`` against the expected row count while the pass runs (measured
        from the growing side file, since polars reports nothing while it streams).

    Returns
    -------
    InteractionsResult
        Rows written, accepted and duplicate rows per file, and each file's rejected-rows file.

    Raises
    ------
    DataError
        When polars cannot read a file (naming the file, the line and the fix).
    """
    limit = IN_STREAM_MAX_ROWS if in_stream_max_rows is None else in_stream_max_rows
    result = _ingest_pass(files, target, scratch, previous, limit, progress)
    mixed = [i for i, ann in enumerate(files) if narrowed_time_lost_rows(ann, result.rejected_files[ann.file_idx])]
    if not mixed:
        return result
    # a file's first timestamps all had one layout and later ones do not: read again with the full auto
    files = list(files)
    for i in mixed:
        log.info("%s: timestamps in several layouts; reading it again with the full `auto`", files[i].path)
        files[i] = dataclasses.replace(files[i], time_plan=None)
    return _ingest_pass(files, target, scratch, previous, limit, progress)


def _ingest_pass(
    files: list[AnnotatedFile],
    target: Path,
    scratch: Path,
    previous: Path | None,
    limit: int,
    progress: Progress | None,
) -> InteractionsResult:
    """One run of :func:`ingest_interactions` with each file's annotation as given."""
    expected = estimate_rows(files, previous)
    in_stream = expected <= limit
    stream, rejected = _accepted_stream(files, previous, second_hash=in_stream)
    side = scratch / ("hashes.arrow" if in_stream else "accepted.arrow")
    rejected_files = {ann.file_idx: scratch / f"rejected-{ann.file_idx}.parquet" for ann in files}
    sinks = [
        *[
            rejects.sink_parquet(rejected_files[ann.file_idx], compression="zstd", lazy=True)
            for ann, rejects in zip(files, rejected, strict=True)
        ],
    ]
    if in_stream:
        sinks += [
            stream.unique(subset=[HASH], keep="first", maintain_order=True)
            .select(Columns.Interactions)
            .sink_parquet(target, statistics=True, lazy=True, **PARQUET_WRITE),
            stream.select(HASH, HASH2, FILE_IDX).sink_ipc(side, compression="uncompressed", lazy=True),
        ]
    else:
        # lz4 scratch: half the size of uncompressed for about the same CPU, and it is read twice
        sinks.append(stream.sink_ipc(side, compression="lz4", lazy=True))
    try:
        with _watch_rows(side, expected, progress, bytes_per_row=_SIDE_ROW_BYTES if in_stream else None):
            pl.collect_all(sinks)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_failure(files, exc) from exc

    rows = pl.scan_ipc(side).with_row_index("__pos")
    file_idx = rows.select(FILE_IDX).collect()[FILE_IDX].to_numpy()
    per_file = np.bincount(file_idx + 1, minlength=len(files) + 1)
    accepted = {ann.file_idx: int(per_file[ann.file_idx + 1]) for ann in files}
    n_accepted = len(file_idx)
    del file_idx
    result = InteractionsResult(
        written=0,
        accepted=accepted,
        duplicates={},
        rejected_files=rejected_files,
        method="in_stream" if in_stream else "two_pass",
    )
    if not in_stream:
        drop = _later_copies(_repeated_hash_rows(rows))
        rows.filter(~pl.col("__pos").is_in(drop["__pos"].implode())).select(Columns.Interactions).sink_parquet(
            target, statistics=True, **PARQUET_WRITE
        )
        result.duplicates = _per_file(drop)
        result.written = n_accepted - drop.height
        return result
    result.written = pl.scan_parquet(target).select(pl.len()).collect().item()
    if result.written == n_accepted:  # nothing dropped: no duplicates and no collision to check
        return result
    candidates = _repeated_hash_rows(rows)
    if candidates.group_by(HASH).agg(pl.col(HASH2).n_unique().alias("k")).filter(pl.col("k") > 1).height:
        log.warning("two different rows share a 64-bit row hash; de-duplicating again row by row")
        result.duplicates = _exact_rewrite(files, previous, target, candidates["__pos"])
        result.written = pl.scan_parquet(target).select(pl.len()).collect().item()
        result.exact_fallback = True
        return result
    later = candidates.filter(~pl.col(HASH).is_first_distinct())
    result.duplicates = _per_file(later)
    if later.height != n_accepted - result.written:  # the in-stream unique and this count must agree
        raise RuntimeError(f"duplicate accounting mismatch: {later.height} vs {n_accepted - result.written}")
    return result


#: bytes a row adds to ``hashes.arrow`` (two u64 hashes and an i32 file index)
_SIDE_ROW_BYTES = 20
#: rough lz4 Arrow size of an accepted row with its hash and file index (two-pass scratch)
_TWO_PASS_ROW_BYTES = 45


@contextlib.contextmanager
def _watch_rows(side: Path, expected: int, progress: Progress | None, *, bytes_per_row: float | None) -> Iterator[None]:
    """Report rows read while the streaming pass runs, from the size of the growing side file.

    ``bytes_per_row`` None is the two-pass path's lz4 scratch, whose size per row varies: a
    typical size is assumed, so that bar is rough, but it moves. Polls twice a second on a
    daemon thread; stops when the pass ends.
    """
    if progress is None or expected <= 0:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            size = side.stat().st_size if side.exists() else 0
            done = size / (bytes_per_row or _TWO_PASS_ROW_BYTES)
            report(progress, "ingest: rows read", min(done, expected * 0.99), expected)

    thread = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    report(progress, "ingest: rows read", expected, expected)


def _per_file(dropped: pl.DataFrame) -> dict[int, int]:
    return {int(k): int(n) for k, n in dropped.group_by(FILE_IDX).agg(pl.len()).iter_rows()}


def _repeated_hash_rows(rows: pl.LazyFrame) -> pl.DataFrame:
    """The rows of ``rows`` (with their position ``__pos``) whose :data:`HASH` occurs more than once.

    Only the hash column is held in memory (8 bytes a row). Sorting it (polars sorts on every
    core) finds the repeated values at a tenth of the cost of a hash-based ``is_duplicated``
    (20M rows: 0.5 s vs 3.5 s); then only the (few) rows with those values are collected.
    """
    ordered = rows.select(HASH).collect()[HASH].sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    del ordered
    return rows.filter(pl.col(HASH).is_in(repeated.implode())).collect()


def _later_copies(candidates: pl.DataFrame) -> pl.DataFrame:
    """Candidate rows that repeat an earlier row exactly, compared column by column (not by hash)."""
    firsts = candidates.unique(subset=Columns.Interactions, keep="first", maintain_order=True)
    return candidates.filter(~pl.col("__pos").is_in(firsts["__pos"].implode()))


def _exact_rewrite(
    files: list[AnnotatedFile], previous: Path | None, target: Path, candidates: pl.Series
) -> dict[int, int]:
    """Write ``target`` again, comparing the candidate rows column by column (after a hash collision).

    Returns the duplicates dropped per file index.
    """
    stream, _ = _accepted_stream(files, previous, second_hash=False)
    indexed = stream.with_row_index("__pos")
    drop = _later_copies(indexed.filter(pl.col("__pos").is_in(candidates.implode())).collect())
    indexed.filter(~pl.col("__pos").is_in(drop["__pos"].implode())).select(Columns.Interactions).sink_parquet(
        target, statistics=True, **PARQUET_WRITE
    )
    return _per_file(drop)


def _read_failure(files: list[AnnotatedFile], exc: BaseException) -> DataError:
    """Name the file polars failed on: re-read each alone (error path only) and diagnose the first that fails."""
    from recctl.data.readers import diagnose_source

    culprit = files[0] if files else None
    for ann in files:
        try:
            ann.scan().select(pl.len()).collect()
        except (pl.exceptions.PolarsError, OSError):
            culprit = ann
            break
    if culprit is None:
        return DataError(f"cannot read the interaction files: {exc}")
    return diagnose_source(culprit.path, culprit.fmt, culprit.src, exc, read_from=culprit.prepared, key=culprit.key)


def narrowed_time_lost_rows(ann: AnnotatedFile, rejected: Path) -> int:
    """Rows rejected as ``bad_timestamp`` under ``ann.time_plan`` that the full ``auto`` would have parsed.

    Non-zero means the file mixes timestamp layouts past its first rows: ingest it again with
    ``time_plan=None``. Only reads the (few) rejected rows.
    """
    if ann.time_plan is None:
        return 0
    src = ann.src
    return (
        pl.scan_parquet(rejected)
        .filter(pl.col("reason") == "bad_timestamp")
        .select(parse_timestamp(pl.col("value"), "auto", src.timezone).is_not_null().sum())
        .collect()
        .item()
    )


def rejected_counts(path: Path) -> dict[str, int]:
    """Rejected rows per reason in one file's rejected-rows file."""
    counts = pl.scan_parquet(path).group_by("reason").agg(pl.len().alias("n")).collect()
    return {reason: int(n) for reason, n in counts.iter_rows()}


def check_policy(rejected: Path, stats: FileStats, src: InteractionSource, key: str) -> None:
    """Apply a file's ``on_error`` policy and refuse files whose mapping is clearly wrong.

    Raises
    ------
    DataError
        Under ``fail``, naming the first offending row, column, value and reason; under any
        policy, when the file has no data rows, when every row fails the same parse (wrong
        column mapping, wrong ``timestamp_format``, wrong ``event_map``), or when more than
        ``max_reject_rate`` of its rows could not be read (:data:`PARSE_REASONS`): then with
        the top reasons, sample raw values and the config change that would fix them.
    """
    path = stats.path
    if stats.read == 0:
        raise DataError(
            f"{path}: the file has a header but no data rows; export it again or remove it from {key}.path."
        )
    for reason, n in stats.rejected.items():
        if n == stats.read and reason in PARSE_REASONS:
            raise DataError(_whole_column_message(rejected, path, reason, n, key, src))
    unreadable = sum(n for reason, n in stats.rejected.items() if reason in PARSE_REASONS)
    limit = src.max_reject_rate
    if limit is not None and unreadable > limit * stats.read:
        raise DataError(_reject_rate_message(rejected, stats, unreadable, limit, key, src))
    if src.on_error == "fail" and stats.n_rejected:
        first = pl.scan_parquet(rejected).sort("row").head(1).collect().row(0, named=True)
        raise DataError(
            f"{path}: row {first['row']}: column '{first['column']}' = {first['value']!r}: "
            f"{first['reason'].replace('_', ' ')} ({stats.n_rejected:,} of {stats.read:,} rows have problems). "
            f"{key}.on_error is 'fail'; fix the file, or set on_error to 'quarantine' "
            "(keep them in rejected.parquet) or 'skip'."
        )


def _samples(rejected: Path, reason: str, n: int = 5) -> tuple[str | None, list[str], int, list[str]]:
    """The rows rejected for ``reason``: column, ``n`` distinct raw values, first row, and a wider sample.

    The wider sample (the 500 smallest and 500 largest distinct values) is what the hints guess
    from: a date layout guessed from the first rows alone cannot tell ``%d/%m`` from ``%m/%d``.
    """
    reasons = pl.scan_parquet(rejected).filter(pl.col("reason") == reason)
    rows = reasons.sort("row").select("row", "column", "value").head(1_000).collect()
    if rows.height == 0:
        return None, [], 0, []
    shown = rows["value"].drop_nulls().unique(maintain_order=True).head(n).to_list()
    distinct = reasons.select(pl.col("value").drop_nulls().unique().sort()).collect().to_series()
    wide = pl.concat([distinct.head(500), distinct.tail(500)]).unique(maintain_order=True).to_list()
    return rows["column"][0], shown, int(rows["row"][0]), wide


def _reject_rate_message(
    rejected: Path, stats: FileStats, unreadable: int, limit: float, key: str, src: InteractionSource
) -> str:
    from recctl.data.hints import fix_for

    top = sorted(((n, r) for r, n in stats.rejected.items() if r in PARSE_REASONS), reverse=True)[:3]
    lines = [
        f"{stats.path}: {unreadable:,} of {stats.read:,} rows ({unreadable / stats.read:.0%}) could not be read, "
        f"more than {key}.max_reject_rate ({limit:.0%}). Top reasons:"
    ]
    for n, reason in top:
        column, values, first_row, wide = _samples(rejected, reason)
        shown = ", ".join(repr(v) for v in values) or "empty"
        lines.append(
            f"  - {reason}: {n:,} row{'s' if n != 1 else ''} (first: row {first_row}), column '{column}', "
            f"e.g. {shown}: {fix_for(reason, column, wide or values, src, key)}."
        )
    lines.append(
        f"Nothing was written. If these rows are expected, raise {key}.max_reject_rate (null turns the check off)."
    )
    return "\n".join(lines)


def _whole_column_message(rejected: Path, path: str, reason: str, n: int, key: str, src: InteractionSource) -> str:
    from recctl.data.hints import fix_for

    column, values, _, wide = _samples(rejected, reason)
    shown = ", ".join(repr(v) for v in values)
    return (
        f"{path}: column '{column or '?'}': none of the {n:,} rows is usable ({reason.replace('_', ' ')}; "
        f"e.g. {shown}); the column has the wrong type or the mapping is wrong: "
        f"{fix_for(reason, column, wide or values, src, key)}."
    )


def write_rejected(rejected: list[tuple[str, Path]], target: Path, previous: Path | None = None) -> int:
    """Write the rejected rows of the quarantined files (and ``previous`` rejects) to ``target``.

    Parameters
    ----------
    rejected
        ``(source file name, its rejected-rows file from`` :func:`ingest_interactions` ``)`` pairs.
    target
        ``rejected.parquet``.
    previous
        An earlier ``rejected.parquet`` (for ``--append``), kept first.

    Returns
    -------
    int
        Rows written.
    """
    parts = []
    if previous is not None:
        parts.append(pl.scan_parquet(previous).cast(REJECTED_SCHEMA))
    for name, path in rejected:
        parts.append(
            pl.scan_parquet(path).select(pl.lit(name).alias(Columns.Source), "row", "column", "value", "reason")
        )
    frame = pl.concat(parts, how="vertical") if parts else pl.LazyFrame(schema=REJECTED_SCHEMA)
    frame.cast(REJECTED_SCHEMA).sink_parquet(target, compression="zstd", statistics=True)
    return pl.scan_parquet(target).select(pl.len()).collect().item()


def infer_text_types(
    frame: pl.DataFrame,
    exclude: Iterable[str] = (),
    decimal_comma: bool = False,
    true_values: Iterable[str] = (),
    false_values: Iterable[str] = (),
) -> pl.DataFrame:
    """Give text columns the narrowest type every non-empty value fits: Int64, Float64, Boolean or text.

    Decided over the whole column (not the first rows), and much faster than letting the CSV
    reader infer types, which parses the file twice. A column is Boolean when all its values
    are the true/false words of one language (``true/false``, ``yes/no``, ``ja/nein``,
    ``oui/non``, ...; :func:`recctl.data.locale.flag_language`) plus the shop's own
    ``true_values`` / ``false_values``, and it uses both a true and a false word.
    """
    from recctl.data.locale import flag_language

    skip = set(exclude)
    true_values, false_values = list(true_values), list(false_values)
    casts = []
    for name, dtype in frame.schema.items():
        if name in skip or dtype != pl.String:
            continue
        col = frame[name]
        numeric = (
            col.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True) if decimal_comma else col
        )
        present = col.is_not_null().sum()
        if present == 0:
            continue
        for target in (pl.Int64, pl.Float64):
            converted = numeric.cast(target, strict=False)
            if converted.is_not_null().sum() == present:
                casts.append(converted.alias(name))
                break
        else:
            lowered = pl.col(name).str.strip_chars().str.to_lowercase()
            distinct = frame.select(lowered.drop_nulls().unique()).to_series()
            if distinct.len() > 64:  # a flag column has a handful of spellings, a text column many
                continue
            if set(distinct.to_list()) <= {"true", "false"}:
                yes: Iterable[str] | None = ["true"]  # as before: true/false alone is a flag
            else:
                found = flag_language(distinct.to_list(), true_values, false_values)
                yes = None if found is None else found[1]
            if yes is not None:
                casts.append(pl.when(pl.col(name).is_not_null()).then(lowered.is_in(list(yes))).alias(name))
    return frame.with_columns(casts) if casts else frame


def text_column_warnings(frame: pl.DataFrame, src: TableSource, key: str, exclude: Iterable[str] = ()) -> list[str]:
    """Warnings about attribute columns left as text that were probably meant as numbers.

    Today: decimal-comma numbers (``29,41``) in a table read without ``decimal_comma``, which
    would otherwise silently give no numeric features and no price rule.
    """
    from recctl.data.locale import looks_decimal_comma

    found = []
    skip = set(exclude)
    for name, dtype in frame.schema.items():
        if name in skip or dtype != pl.String or src.decimal_comma:
            continue
        if looks_decimal_comma(frame[name]):
            examples = ", ".join(repr(v) for v in frame[name].drop_nulls().head(3).to_list())
            found.append(
                f"{key}: column '{name}' holds decimal-comma numbers (e.g. {examples}) and was kept as text, so it "
                f"gives no numeric features or price rule; set `{key}.decimal_comma: true` to read them as numbers."
            )
    return found


def _long_to_wide(long: pl.DataFrame, src: TableSource, id_name: str) -> pl.DataFrame:
    """One row per id from (id, property, value) rows: the latest value of each property in ``src.columns``.

    "Latest" is by ``long_format.time_column`` when given (ties and a missing time fall back to
    file order), else file order. Properties not named in ``columns`` are left out; values are
    then typed like any text column (:func:`infer_text_types`).
    """
    spec = src.long_format
    assert spec is not None
    wanted = {prop: name for name, prop in src.columns.items()}
    rows = long.filter(pl.col(spec.property_column).cast(pl.String).is_in(list(wanted)))
    order = [FILE_IDX, ROW] if spec.time_column is None else [spec.time_column, FILE_IDX, ROW]
    if spec.time_column is not None:
        rows = rows.with_columns(parse_timestamp(pl.col(spec.time_column), "auto"))
    latest = (
        rows.sort(order, nulls_last=False)
        .group_by(id_name, pl.col(spec.property_column).cast(pl.String).alias("__property"))
        .agg(pl.col(spec.value_column).cast(pl.String).last().alias("__value"), pl.col(ROW).min())
    )
    # an id's place in the table: its first row (file, then row), for a stable order
    first_row = long.sort(FILE_IDX, ROW).group_by(id_name, maintain_order=True).agg(pl.col(ROW).first())
    wide = latest.pivot(on="__property", index=id_name, values="__value") if latest.height else latest.select(id_name)
    wide = first_row.join(wide, on=id_name, how="left").rename({p: n for p, n in wanted.items() if p in wide.columns})
    for name in src.columns:
        if name not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.String).alias(name))
    wide = wide.select(ROW, id_name, *src.columns)
    return infer_text_types(
        wide,
        exclude=(ROW, id_name),
        decimal_comma=src.decimal_comma,
        true_values=src.true_values,
        false_values=src.false_values,
    )


@dataclass
class TableResult:
    """A catalogue or user table after ingest, with its accounting."""

    frame: pl.DataFrame
    stats: list[FileStats]
    rejected: pl.DataFrame
    duplicate_ids: int
    #: data problems that did not stop the read (see :func:`text_column_warnings`)
    warnings: list[str] = field(default_factory=list)


def read_table(src: TableSource, resolve, *, key: str, id_name: str, tmp_dir: Path) -> TableResult:  # noqa: ANN001
    """Read a catalogue (items) or user-attribute table into ``<id_name>`` + attribute columns.

    Attribute columns keep the types polars infers from the whole file (prices as floats,
    ``true``/``false`` as booleans); text attributes are stripped of surrounding spaces. Rows
    without an id are rejected (``missing_item_id`` / ``missing_user_id``); several rows with
    the same id are collapsed by ``src.dedupe`` and counted.

    Parameters
    ----------
    src
        The table source config.
    resolve
        ``cfg.resolve``.
    key
        YAML key (``data.items``), for messages.
    id_name
        Canonical id column (``item_id`` or ``user_id``).
    tmp_dir
        Scratch directory for decompressed copies.

    Raises
    ------
    DataError
        On unreadable files, missing columns, and under ``on_error: fail`` on rows without an id.
    """
    from recctl.data.readers import diagnose_source, expand_paths

    missing_reason = "missing_item_id" if id_name == Columns.Item else "missing_user_id"
    frames, stats, rejects = [], [], []
    for path in expand_paths(src.path, resolve, f"{key}.path"):
        fmt = detect_format(path, src.format)
        prepared = prepare_file(path, fmt, src.encoding, tmp_dir, delimiter=src.delimiter, sheet=src.sheet)
        try:
            lf = scan_source(prepared, fmt, src, shown=path)
            wanted = {f"{key}.id_column": src.id_column}
            long = src.long_format
            if long is None:
                wanted.update({f"{key}.columns.{name}": raw for name, raw in src.columns.items()})
            else:
                wanted.update({f"{key}.long_format.{k}": v for k, v in long.model_dump().items() if v is not None})
            schema = require_columns(lf, path, wanted, fmt=fmt, delimiter=src.delimiter)
            _check_types(path, schema, {f"{key}.id_column": src.id_column})
            if long is None:
                mapping = src.columns or {c: c for c in schema if c not in (ROW, src.id_column)}
            else:
                mapping = {c: c for c in (long.property_column, long.value_column, long.time_column) if c}
            selected = lf.select(
                pl.col(ROW).cast(pl.Int64),
                normalise_id(
                    pl.col(src.id_column),
                    float_ids(lf, src.id_column, schema[src.id_column], src.normalize_numeric_ids),
                ).alias(id_name),
                pl.col(src.id_column).cast(pl.String).alias(BAD_VALUE),
                *[
                    (pl.col(raw).str.strip_chars() if schema[raw] == pl.String else pl.col(raw)).alias(name)
                    for name, raw in mapping.items()
                ],
            ).collect()
            if fmt in ("csv", "tsv", "excel") and long is None:  # read as text: give columns their types
                selected = infer_text_types(
                    selected,
                    exclude=(ROW, id_name, BAD_VALUE),
                    decimal_comma=src.decimal_comma,
                    true_values=src.true_values,
                    false_values=src.false_values,
                )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise diagnose_source(path, fmt, src, exc, read_from=prepared, key=key) from exc
        stat = FileStats(
            path=str(path), source=key, policy=src.on_error, read=selected.height, sha256=sha256_file(path)
        )
        if selected.height == 0:
            raise DataError(
                f"{path}: the file has a header but no data rows; export it again or remove it from {key}.path."
            )
        bad = selected.filter(pl.col(id_name).is_null() | unexportable_id(pl.col(id_name))).with_columns(
            pl.when(pl.col(id_name).is_null())
            .then(pl.lit(missing_reason))
            .otherwise(pl.lit(f"bad_{id_name}"))
            .alias("__reason")
        )
        if bad.height == selected.height:
            raise DataError(
                f"{path}: column '{src.id_column}' ({key}.id_column) is empty on every row; check the mapping."
            )
        if bad.height and src.on_error == "fail":
            raise DataError(
                f"{path}: row {bad[ROW][0]}: column '{src.id_column}' = {bad[BAD_VALUE][0]!r}: "
                f"{bad['__reason'][0].replace('_', ' ')}. {key}.on_error is 'fail'; "
                "fix the file or set it to 'quarantine' or 'skip'."
            )
        if bad.height:
            for reason, n in bad.group_by("__reason").len().iter_rows():
                stat.rejected[reason] = n
            if src.on_error == "quarantine":
                rejects.append(
                    bad.select(
                        pl.lit(str(path)).alias(Columns.Source),
                        pl.col(ROW).alias("row"),
                        pl.lit(src.id_column).alias("column"),
                        pl.col(BAD_VALUE).alias("value"),
                        pl.col("__reason").alias("reason"),
                    )
                )
        stat.accepted = selected.height - bad.height
        stats.append(stat)
        # the file's place rides along: "latest" in a long table breaks time ties by file, then row
        frames.append(
            selected.filter(pl.col(id_name).is_not_null() & ~unexportable_id(pl.col(id_name)))
            .drop(BAD_VALUE)
            .with_columns(pl.lit(len(stats)).alias(FILE_IDX))
        )
    table = pl.concat(frames, how="diagonal_relaxed")
    table = _long_to_wide(table, src, id_name) if src.long_format is not None else table.drop(FILE_IDX)
    n_rows = table.height
    attrs = [c for c in table.columns if c not in (ROW, id_name)]
    if src.dedupe == "mode":
        # per attribute, the most frequent non-empty value; ties broken by sorting for stability
        table = table.group_by(id_name).agg([pl.col(c).drop_nulls().mode().sort().first().alias(c) for c in attrs])
    else:
        table = table.unique(subset=[id_name], keep=src.dedupe, maintain_order=True).drop(ROW)
    table = table.select(id_name, *attrs).sort(id_name)
    rejected = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECTED_SCHEMA)
    return TableResult(
        frame=table,
        stats=stats,
        rejected=rejected.cast(REJECTED_SCHEMA),
        duplicate_ids=n_rows - table.height,
        warnings=text_column_warnings(table, src, key, exclude=(id_name,)),
    )
