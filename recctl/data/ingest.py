"""Raw interaction and catalogue files -> canonical frames, with every raw row accounted for.

The work is split so memory stays bounded however large the event files are:

1. :func:`annotate_file` checks one raw file (format, mapped columns, types); its
   :meth:`AnnotatedFile.views` are two lazy views of a frame of its rows: the canonical columns
   of the rows that pass every check, and ``row, reason, column, value`` of the rows that do
   not. All parsing and checking are polars expressions.
2. :func:`sink_file` reads the raw file once, in bounded chunks, and writes both views of each
   chunk (``collect_all`` shares the parsing) to scratch files.
3. :func:`check_policy` applies the source's ``on_error`` policy (``fail`` stops on the first
   offending row) and refuses a file where *every* row fails the same parse (a wrong column
   mapping or timestamp format, not dirty data).
4. :func:`write_interactions` streams the accepted rows of every file (after the previous
   output with ``--append``), drops exact duplicates (keeping the first occurrence, in file and
   row order) and writes ``interactions.parquet``; :func:`write_rejected` gathers the
   quarantined rows into ``rejected.parquet``.

Catalogue and user-attribute tables are small by comparison and are read into memory by
:func:`read_table`.

Reject reasons, checked in this order (a row gets the first that applies):
``missing_user_id``, ``missing_item_id``, ``bad_timestamp``, ``unknown_event``,
``non_numeric_value``, ``cancelled``, the reasons of the source's ``require`` checks, and
``below_threshold`` (a ``value_rule`` with ``below: drop``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recctl.artifacts import sha256_file
from recctl.columns import Columns
from recctl.config.data import InteractionSource, TableSource
from recctl.data.readers import ROW, detect_format, prepare_file, require_columns, scan_file
from recctl.data.timestamps import UTC_DATETIME, parse_timestamp
from recctl.errors import DataError

__all__ = [
    "CHUNK_ROWS",
    "FILE_IDX",
    "HASH",
    "PARQUET_WRITE",
    "PARSE_REASONS",
    "REJECTED_SCHEMA",
    "FileStats",
    "AnnotatedFile",
    "annotate_file",
    "check_policy",
    "count_rows",
    "file_stats",
    "float_ids",
    "infer_text_types",
    "normalise_id",
    "read_table",
    "sink_file",
    "write_interactions",
    "write_rejected",
]

#: helper columns (never in outputs)
BAD_VALUE, FILE_IDX, HASH = "__value", "__file", "__hash"
#: rows per chunk when reading an interaction file (bounds memory to about one chunk)
CHUNK_ROWS = 2_000_000
_HASH_SEED = 20260301
#: reasons that mean "could not be parsed"; a file where every row fails one of them is refused
PARSE_REASONS = ("missing_user_id", "missing_item_id", "bad_timestamp", "unknown_event", "non_numeric_value")
#: Parquet settings of ``interactions.parquet``: zstd level 1 writes in two thirds of the CPU
#: time of the default level 3 for a file ~1.5% larger (5M events: 0.8 s vs 1.2 s, 48 vs 47 MB)
PARQUET_WRITE: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
#: schema of ``rejected.parquet``
REJECTED_SCHEMA = {
    Columns.Source: pl.String,
    "row": pl.Int64,
    "column": pl.String,
    "value": pl.String,
    "reason": pl.String,
}
_INTERACTION_SCHEMA = {
    Columns.User: pl.String,
    Columns.Item: pl.String,
    Columns.Event: pl.String,
    Columns.Timestamp: UTC_DATETIME,
    Columns.Value: pl.Float64,
}
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


def normalise_id(expr: pl.Expr, numeric_ids: bool = True) -> pl.Expr:
    """Canonical id text: stripped, empty -> null, and (with ``numeric_ids``) ``17850.0`` -> ``17850``.

    Float-typed id columns (an integer id exported through a float column) are printed
    without the fractional ``.0``, so ``17850.0`` in one file and ``17850`` in another match;
    ids such as ``A1.0`` or ``1.5`` are left alone.
    """
    # ``replace("", None)`` is about half the cost of a ``when(len > 0)`` on every row
    text = expr.cast(pl.String).str.strip_chars().replace("", None)
    if numeric_ids:
        # cheaper than a regex replace on every row: strip ".0" only where the rest is an integer
        stripped = text.str.strip_suffix(".0")
        is_float_int = text.str.ends_with(".0") & stripped.cast(pl.Int64, strict=False).is_not_null()
        text = pl.when(is_float_int).then(stripped).otherwise(text)
    return text


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


def _as_number(expr: pl.Expr, dtype: pl.DataType, decimal_comma: bool = False) -> pl.Expr:
    if dtype.is_numeric():
        number = expr.cast(pl.Float64)
    elif dtype == pl.Boolean:
        number = expr.cast(pl.Float64)
    else:
        text = expr.cast(pl.String).str.strip_chars()
        if decimal_comma:  # 1.234,5 -> 1234.5
            text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
        number = text.cast(pl.Float64, strict=False)
    # NaN and infinities are not usable values: treat them like text that does not parse
    return pl.when(number.is_finite()).then(number).otherwise(None)


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

    Returns
    -------
    AnnotatedFile
        ``accepted``: the canonical columns of rows that pass every check; ``rejected``:
        ``row, reason, column, value`` of the others. Both are views of one lazy scan, written
        together by :func:`sink_file`.

    Raises
    ------
    DataError
        If the file cannot be read or lacks a mapped column.
    """
    fmt = detect_format(path, src.format)
    prepared = prepare_file(path, fmt, src.encoding, tmp_dir)
    lf = scan_file(prepared, fmt=fmt, delimiter=src.delimiter, encoding=src.encoding, null_values=src.null_values)
    cols = src.columns
    wanted = {f"{key}.columns.{name}": raw for name, raw in cols.model_dump().items() if raw is not None}
    if src.cancellations is not None and src.cancellations.column:
        wanted[f"{key}.cancellations.column"] = src.cancellations.column
    for i, check in enumerate(src.require):
        wanted[f"{key}.require.{i}.column"] = check.column
    schema = require_columns(lf, path, wanted, fmt=fmt, delimiter=src.delimiter)
    _check_types(path, schema, wanted)

    fix = src.normalize_numeric_ids
    try:  # the float-id peek reads the first rows only
        float_user = float_ids(lf, cols.user_id, schema[cols.user_id], fix)
        float_item = float_ids(lf, cols.item_id, schema[cols.item_id], fix)
    except (pl.exceptions.PolarsError, OSError) as exc:
        from recctl.data.readers import diagnose

        raise diagnose(path, fmt, src.encoding, exc, delimiter=src.delimiter) from exc
    return AnnotatedFile(
        path=path,
        prepared=prepared,
        fmt=fmt,
        src=src,
        file_idx=file_idx,
        schema=schema,
        float_ids=(float_user, float_item),
    )


def _annotate(
    lf: pl.LazyFrame, schema: dict[str, pl.DataType], src: InteractionSource, float_ids: tuple[bool, bool]
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Build the annotation in three steps, so each parse runs once per row.

    Step 1 parses the canonical columns and evaluates the rule flags that need raw columns;
    step 2 derives the remaining flags from the parsed columns; step 3 turns the flags into
    the first applicable reason, column and raw value. (One big expression would re-evaluate
    every parse inside each ``when`` branch.)
    """
    cols = src.columns
    raw = pl.col
    user = normalise_id(raw(cols.user_id), float_ids[0])
    item = normalise_id(raw(cols.item_id), float_ids[1])
    ts = parse_timestamp(raw(cols.timestamp), src.timestamp_format, src.timezone, schema[cols.timestamp])

    if cols.value is not None:
        value = _as_number(raw(cols.value), schema[cols.value], src.decimal_comma)
        value_text = _as_text(raw(cols.value), schema[cols.value]).str.strip_chars()
        # a value that is present but not a number (empty is fine: value is optional)
        bad_value = value_text.is_not_null() & (value_text.str.len_chars() > 0) & value.is_null()
    else:
        value = pl.lit(None, pl.Float64)
        bad_value = pl.lit(False)

    flags: dict[str, pl.Expr] = {"__bad_value": bad_value}
    rule_c = src.cancellations
    cancelled = pl.lit(False)
    if rule_c is not None:
        if rule_c.column and rule_c.prefix:
            marker = _as_text(raw(rule_c.column), schema[rule_c.column]).str.strip_chars()
            cancelled = cancelled | marker.str.starts_with(rule_c.prefix).fill_null(False)
        if rule_c.negative_value and cols.value is not None:
            cancelled = cancelled | (value < 0).fill_null(False)
    flags["__cancelled"] = cancelled
    ops = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne"}
    for k, check in enumerate(src.require):
        number = _as_number(raw(check.column), schema[check.column], src.decimal_comma)
        flags[f"__check{k}"] = ~getattr(number, f"__{ops[check.op]}__")(check.value).fill_null(False)

    if src.value_rule is None and cols.event is not None:
        raw_event = _as_text(raw(cols.event), schema[cols.event]).str.strip_chars()
        if src.event_map is not None:
            event = raw_event.replace_strict(src.event_map, default=None, return_dtype=pl.String)
        else:
            event = pl.when(raw_event.str.len_chars() > 0).then(raw_event).otherwise(None)
    elif src.value_rule is None:
        event = pl.lit(src.default_event)
    else:
        event = pl.lit(None, pl.String)  # derived from the parsed value in step 2

    shown_columns = [
        c
        for c in dict.fromkeys(
            [
                cols.user_id,
                cols.item_id,
                cols.timestamp,
                cols.event,
                cols.value,
                rule_c.column if rule_c else None,
                *[c.column for c in src.require],
            ]
        )
        if c is not None
    ]
    display = {c: f"__raw{k}" for k, c in enumerate(shown_columns)}
    step1 = lf.select(
        pl.col(ROW).cast(pl.Int64),
        user.alias(Columns.User),
        item.alias(Columns.Item),
        event.cast(pl.String).alias(Columns.Event),
        ts.alias(Columns.Timestamp),
        value.alias(Columns.Value),
        *[expr.alias(name) for name, expr in flags.items()],
        *[_as_text(raw(c), schema[c]).alias(alias) for c, alias in display.items()],
    )

    v = pl.col(Columns.Value)
    if src.value_rule is not None:
        rule = src.value_rule
        below = None if rule.below == "drop" else rule.below
        step1 = step1.with_columns(
            pl.when(v >= rule.min_value)
            .then(pl.lit(rule.event))
            .otherwise(pl.lit(below, pl.String))
            .alias(Columns.Event)
        )
        unknown_event = v.is_null() & ~pl.col("__bad_value")
        below_threshold = (v < rule.min_value).fill_null(False) & pl.lit(rule.below == "drop")
    else:
        unknown_event = pl.col(Columns.Event).is_null()
        below_threshold = pl.lit(False)

    # (flag, reason, raw column) in priority order: a row gets the first that applies
    rules: list[tuple[pl.Expr, str, str | None]] = [
        (pl.col(Columns.User).is_null(), "missing_user_id", cols.user_id),
        (pl.col(Columns.Item).is_null(), "missing_item_id", cols.item_id),
        (pl.col(Columns.Timestamp).is_null(), "bad_timestamp", cols.timestamp),
        (unknown_event, "unknown_event", cols.event if src.value_rule is None else cols.value),
        (pl.col("__bad_value"), "non_numeric_value", cols.value),
        (
            pl.col("__cancelled"),
            "cancelled",
            rule_c.column if rule_c and rule_c.column and rule_c.prefix else cols.value,
        ),
        *[(pl.col(f"__check{k}"), c.reason, c.column) for k, c in enumerate(src.require)],
        (below_threshold, "below_threshold", cols.value),
    ]
    # one chained when/then: evaluated as a single expression, first true condition wins
    chain = pl.when(rules[0][0]).then(pl.lit(0, pl.Int8))
    for k, (cond, _, _) in enumerate(rules[1:], start=1):
        chain = chain.when(cond).then(pl.lit(k, pl.Int8))
    step2 = step1.with_columns(chain.otherwise(pl.lit(None, pl.Int8)).alias("__rule"))
    rule_idx = pl.col("__rule")
    reason = rule_idx.replace_strict({k: r for k, (_, r, _) in enumerate(rules)}, default=None, return_dtype=pl.String)
    column = rule_idx.replace_strict({k: c for k, (_, _, c) in enumerate(rules)}, default=None, return_dtype=pl.String)
    shown = pl.lit(None, pl.String)
    for k, (_, _, col) in enumerate(rules):
        if col is not None:
            shown = pl.when(rule_idx == k).then(pl.col(display[col])).otherwise(shown)
    accepted = step2.filter(rule_idx.is_null()).select(Columns.Interactions).cast(_INTERACTION_SCHEMA)
    # the reason and raw-value expressions run on the (few) rejected rows only
    rejected = step2.filter(rule_idx.is_not_null()).select(
        pl.col(ROW).alias("row"),
        reason.alias("reason"),
        column.alias("column"),
        shown.alias("value"),
    )
    return accepted, rejected


@dataclass
class AnnotatedFile:
    """A checked raw file, ready to be read in bounded chunks by :func:`sink_file`."""

    path: Path
    prepared: Path
    fmt: str
    src: InteractionSource
    file_idx: int
    schema: dict[str, pl.DataType]
    float_ids: tuple[bool, bool]

    def scan(self) -> pl.LazyFrame:
        """A fresh lazy scan of the whole (prepared) file, with the 1-based :data:`ROW` column."""
        src = self.src
        return scan_file(
            self.prepared, fmt=self.fmt, delimiter=src.delimiter, encoding=src.encoding, null_values=src.null_values
        )

    def views(self, frame: pl.LazyFrame | None = None) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        """Lazy ``(accepted, rejected)`` views of ``frame`` (rows of :meth:`scan`), or of the whole file."""
        return _annotate(self.scan() if frame is None else frame, self.schema, self.src, self.float_ids)


def _row_chunks(lf: pl.LazyFrame, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Stream ``lf`` once as in-memory frames of exactly ``chunk_rows`` rows (the last may be shorter).

    ``collect_batches`` pulls small batches from one streaming scan: the reader only runs as
    fast as they are consumed, so memory stays at about one chunk, and no chunk has to skip
    over the rows before it (re-scanning with ``skip_rows`` made the whole read quadratic:
    ~2 s of CPU at 20M rows in 2M-row chunks). Always yields at least one (possibly empty) frame.
    """
    pending: list[pl.DataFrame] = []
    size, emitted = 0, False
    for batch in lf.collect_batches():
        pending.append(batch)
        size += batch.height
        while size >= chunk_rows:
            frame = pl.concat(pending, rechunk=False)
            yield frame.slice(0, chunk_rows)
            emitted = True
            rest = frame.slice(chunk_rows)
            pending, size = ([rest] if rest.height else []), rest.height
    if pending or not emitted:
        yield pl.concat(pending, rechunk=False) if pending else pl.DataFrame(schema=lf.collect_schema())


def sink_file(ann: AnnotatedFile, out_dir: Path, *, chunk_rows: int = CHUNK_ROWS) -> tuple[list[Path], list[Path]]:
    """Write a file's accepted and rejected rows, reading the raw file once, in bounded chunks.

    The file is scanned once and consumed ``chunk_rows`` rows at a time (:func:`_row_chunks`);
    each chunk is annotated and written with one ``pl.collect_all`` of two lazy sinks, so the
    rows are parsed once. Accepted rows carry a 64-bit row hash (:data:`HASH`) for
    :func:`write_interactions`' de-duplication.

    Chunking bounds memory: a single streaming query over the whole file grew with the file
    when the per-row work is heavier than the reader (measured: 0.9 GB for 5M rows, 1.8 GB for
    10M in one go).

    Parameters
    ----------
    ann
        From :func:`annotate_file`.
    out_dir
        Where the chunk files go: ``accepted-<file>-<chunk>.arrow`` (Arrow IPC, uncompressed:
        scratch read once more by :func:`write_interactions`) and ``rejected-<file>-<chunk>.parquet``.
    chunk_rows
        Rows per chunk.

    Returns
    -------
    (list of Path, list of Path)
        Accepted and rejected chunk files, in row order.

    Raises
    ------
    DataError
        When polars cannot read the file (with the line and the fix, see ``readers.diagnose``).
    """
    from recctl.data.readers import diagnose

    accepted_files, rejected_files = [], []
    try:
        for k, chunk in enumerate(_row_chunks(ann.scan(), chunk_rows)):
            acc_path = out_dir / f"accepted-{ann.file_idx}-{k}.arrow"
            rej_path = out_dir / f"rejected-{ann.file_idx}-{k}.parquet"
            accepted, rejected = ann.views(chunk.lazy())
            accepted = accepted.with_columns(pl.struct(Columns.Interactions).hash(_HASH_SEED).alias(HASH))
            pl.collect_all(
                [
                    # scratch format: uncompressed Arrow IPC is written and read back at
                    # close to memory speed; Parquet (even uncompressed) costs ~3x in encoding
                    accepted.sink_ipc(acc_path, compression="uncompressed", lazy=True),
                    rejected.sink_parquet(rej_path, compression="zstd", lazy=True),
                ]
            )
            accepted_files.append(acc_path)
            rejected_files.append(rej_path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise diagnose(ann.path, ann.fmt, ann.src.encoding, exc, delimiter=ann.src.delimiter) from exc
    return accepted_files, rejected_files


def _scan_chunks(paths: Path | list[Path]) -> pl.LazyFrame:
    """Scan chunk files written by :func:`sink_file` (Arrow IPC, or Parquet by extension)."""
    paths = [paths] if isinstance(paths, Path) else paths
    if all(p.suffix == ".parquet" for p in paths):
        return pl.scan_parquet(paths)
    return pl.scan_ipc(paths)


def count_rows(paths: Iterable[Path]) -> int:
    """Total rows of chunk files (from their metadata)."""
    paths = list(paths)
    return _scan_chunks(paths).select(pl.len()).collect().item() if paths else 0


def file_stats(accepted: list[Path], rejected: list[Path], stats: FileStats) -> FileStats:
    """Fill ``read``, ``accepted`` and ``rejected`` of ``stats`` from a file's chunk files."""
    accepted_rows = count_rows(accepted)
    counts = pl.scan_parquet(rejected).group_by("reason").agg(pl.len().alias("n")).collect()
    stats.accepted = accepted_rows
    stats.rejected = {reason: int(n) for reason, n in counts.iter_rows()}
    stats.read = accepted_rows + sum(stats.rejected.values())
    return stats


def check_policy(rejected: list[Path], stats: FileStats, src: InteractionSource, key: str) -> None:
    """Apply a file's ``on_error`` policy and refuse files whose mapping is clearly wrong.

    Raises
    ------
    DataError
        Under ``fail``, naming the first offending row, column, value and reason; under any
        policy, when the file has no data rows or every row fails the same parse (wrong
        column mapping, wrong ``timestamp_format``, wrong ``event_map``).
    """
    path = stats.path
    if stats.read == 0:
        raise DataError(
            f"{path}: the file has a header but no data rows; export it again or remove it from {key}.path."
        )
    for reason, n in stats.rejected.items():
        if n == stats.read and reason in PARSE_REASONS:
            raise DataError(_whole_column_message(rejected, path, reason, n, key, src))
    if src.on_error == "fail" and stats.n_rejected:
        first = pl.scan_parquet(rejected).sort("row").head(1).collect().row(0, named=True)
        raise DataError(
            f"{path}: row {first['row']}: column '{first['column']}' = {first['value']!r}: "
            f"{first['reason'].replace('_', ' ')} ({stats.n_rejected:,} of {stats.read:,} rows have problems). "
            f"{key}.on_error is 'fail'; fix the file, or set on_error to 'quarantine' "
            "(keep them in rejected.parquet) or 'skip'."
        )


def _whole_column_message(
    rejected: list[Path], path: str, reason: str, n: int, key: str, src: InteractionSource
) -> str:
    examples = (
        pl.scan_parquet(rejected)
        .filter(pl.col("reason") == reason)
        .select("column", "value")
        .unique("value", maintain_order=True)
        .head(5)
        .collect()
    )
    column = examples["column"][0] if examples.height else "?"
    shown = ", ".join(repr(v) for v in examples["value"].to_list())
    hints = {
        "missing_user_id": f"check {key}.columns.user_id",
        "missing_item_id": f"check {key}.columns.item_id",
        "bad_timestamp": f"check {key}.columns.timestamp and {key}.timestamp_format (now '{src.timestamp_format}')",
        "unknown_event": f"check {key}.event_map (knows: {', '.join(src.event_map or {}) or 'nothing'}) "
        f"or {key}.columns.event",
        "non_numeric_value": f"check {key}.columns.value: it must map a numeric column",
    }
    return (
        f"{path}: column '{column}': none of the {n:,} rows is usable ({reason.replace('_', ' ')}; "
        f"e.g. {shown}); the column has the wrong type or the mapping is wrong: {hints[reason]}."
    )


def write_interactions(accepted: list[tuple[int, Path]], target: Path, previous: Path | None = None) -> dict[int, int]:
    """Write every accepted row once, in file and row order, to ``target``; count the duplicates.

    De-duplication is exact but goes through the 64-bit row hash written by :func:`sink_file`:
    the hash column (8 bytes a row, where ``unique`` keeps whole rows) is read and sorted to find
    the hashes seen more than once, the rows with those hashes (few) are compared
    exactly in memory, and a second streaming pass writes everything except the later copies.
    A hash collision between two different rows therefore never drops a row.

    Parameters
    ----------
    accepted
        ``(file index, accepted chunk file)`` pairs in file and row order; earlier rows win.
    target
        ``interactions.parquet``.
    previous
        An earlier ``interactions.parquet`` (for ``--append``); its rows come first and are
        never dropped (they are unique already).

    Returns
    -------
    dict
        Duplicates dropped per file index.
    """
    parts = []
    if previous is not None:
        parts.append(
            pl.scan_parquet(previous)
            .select(Columns.Interactions)
            .cast(_INTERACTION_SCHEMA)
            .with_columns(
                pl.struct(Columns.Interactions).hash(_HASH_SEED).alias(HASH), pl.lit(-1, pl.Int32).alias(FILE_IDX)
            )
        )
    for idx, path in accepted:
        parts.append(_scan_chunks(path).with_columns(pl.lit(idx, pl.Int32).alias(FILE_IDX)))
    if not parts:
        pl.DataFrame(schema=_INTERACTION_SCHEMA).write_parquet(target)
        return {}
    frame = pl.concat(parts, how="vertical").with_row_index("__i")
    # the hash column alone (8 bytes a row) sorted in memory: equal neighbours are the repeated
    # hashes. ~2x cheaper than a streaming group_by and ~4x cheaper than an in-memory one (5M rows).
    hashes = frame.select(HASH).collect()[HASH].sort()
    repeated = hashes.filter(hashes == hashes.shift(1)).unique()
    del hashes
    drop = pl.DataFrame(schema={"__i": pl.UInt32, FILE_IDX: pl.Int32})
    if repeated.len():
        candidates = frame.filter(pl.col(HASH).is_in(repeated.implode())).collect()
        firsts = candidates.unique(subset=Columns.Interactions, keep="first", maintain_order=True)
        drop = candidates.filter(~pl.col("__i").is_in(firsts["__i"].implode())).select("__i", FILE_IDX)
    keep = frame.filter(~pl.col("__i").is_in(drop["__i"].implode())) if drop.height else frame
    keep.select(Columns.Interactions).sink_parquet(target, statistics=True, **PARQUET_WRITE)
    return {int(k): int(v) for k, v in drop.group_by(FILE_IDX).agg(pl.len()).iter_rows()}


def write_rejected(rejected: list[tuple[str, list[Path]]], target: Path, previous: Path | None = None) -> int:
    """Write the rejected rows of the quarantined files (and ``previous`` rejects) to ``target``.

    Parameters
    ----------
    rejected
        ``(source file name, its rejected chunk files from`` :func:`sink_file` ``)`` pairs.
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
    for name, paths in rejected:
        parts.append(
            pl.scan_parquet(paths).select(pl.lit(name).alias(Columns.Source), "row", "column", "value", "reason")
        )
    frame = pl.concat(parts, how="vertical") if parts else pl.LazyFrame(schema=REJECTED_SCHEMA)
    frame.cast(REJECTED_SCHEMA).sink_parquet(target, compression="zstd", statistics=True)
    return pl.scan_parquet(target).select(pl.len()).collect().item()


def infer_text_types(frame: pl.DataFrame, exclude: Iterable[str] = (), decimal_comma: bool = False) -> pl.DataFrame:
    """Give text columns the narrowest type every non-empty value fits: Int64, Float64, Boolean or text.

    Decided over the whole column (not the first rows), and much faster than letting the CSV
    reader infer types, which parses the file twice.
    """
    skip = set(exclude)
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
            lowered = col.str.to_lowercase()
            if lowered.drop_nulls().is_in(["true", "false"]).all():
                casts.append((lowered == "true").alias(name))
    return frame.with_columns(casts) if casts else frame


@dataclass
class TableResult:
    """A catalogue or user table after ingest, with its accounting."""

    frame: pl.DataFrame
    stats: list[FileStats]
    rejected: pl.DataFrame
    duplicate_ids: int


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
    from recctl.data.readers import diagnose, expand_paths

    missing_reason = "missing_item_id" if id_name == Columns.Item else "missing_user_id"
    frames, stats, rejects = [], [], []
    for path in expand_paths(src.path, resolve, f"{key}.path"):
        fmt = detect_format(path, src.format)
        prepared = prepare_file(path, fmt, src.encoding, tmp_dir)
        try:
            lf = scan_file(
                prepared, fmt=fmt, delimiter=src.delimiter, encoding=src.encoding, null_values=src.null_values
            )
            wanted = {f"{key}.id_column": src.id_column}
            wanted.update({f"{key}.columns.{name}": raw for name, raw in src.columns.items()})
            schema = require_columns(lf, path, wanted, fmt=fmt, delimiter=src.delimiter)
            _check_types(path, schema, {f"{key}.id_column": src.id_column})
            mapping = src.columns or {c: c for c in schema if c not in (ROW, src.id_column)}
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
            if fmt in ("csv", "tsv"):
                selected = infer_text_types(
                    selected, exclude=(ROW, id_name, BAD_VALUE), decimal_comma=src.decimal_comma
                )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise diagnose(path, fmt, src.encoding, exc, delimiter=src.delimiter) from exc
        stat = FileStats(
            path=str(path), source=key, policy=src.on_error, read=selected.height, sha256=sha256_file(path)
        )
        if selected.height == 0:
            raise DataError(
                f"{path}: the file has a header but no data rows; export it again or remove it from {key}.path."
            )
        bad = selected.filter(pl.col(id_name).is_null())
        if bad.height == selected.height:
            raise DataError(
                f"{path}: column '{src.id_column}' ({key}.id_column) is empty on every row; check the mapping."
            )
        if bad.height and src.on_error == "fail":
            raise DataError(
                f"{path}: row {bad[ROW][0]}: column '{src.id_column}' = {bad[BAD_VALUE][0]!r}: "
                f"{missing_reason.replace('_', ' ')}. {key}.on_error is 'fail'; "
                "fix the file or set it to 'quarantine' or 'skip'."
            )
        if bad.height:
            stat.rejected[missing_reason] = bad.height
            if src.on_error == "quarantine":
                rejects.append(
                    bad.select(
                        pl.lit(str(path)).alias(Columns.Source),
                        pl.col(ROW).alias("row"),
                        pl.lit(src.id_column).alias("column"),
                        pl.col(BAD_VALUE).alias("value"),
                        pl.lit(missing_reason).alias("reason"),
                    )
                )
        stat.accepted = selected.height - bad.height
        stats.append(stat)
        frames.append(selected.filter(pl.col(id_name).is_not_null()).drop(BAD_VALUE))
    table = pl.concat(frames, how="diagonal_relaxed")
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
        frame=table, stats=stats, rejected=rejected.cast(REJECTED_SCHEMA), duplicate_ids=n_rows - table.height
    )
