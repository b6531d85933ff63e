"""The nightly file a shop imports: formats, validation, atomic publishing, the latest pointer.

The contract (documented for integrators in ``docs/architecture.md``, "Serving and export"):

* **Formats.** ``csv`` (long: one row per user and rank), ``csv_wide`` (one row per user),
  ``jsonl`` (one JSON object per user) and ``parquet`` (long, typed).
* **Long columns, in this order:** ``user_id, rank, item_id, score, model, generated_at``,
  then ``source`` (unless ``export.include_source: false``) and ``variant`` (only under an
  A/B ``experiment``). Rows are sorted by ``user_id`` (byte order), then ``rank``.
* **Names.** ``<basename>_<YYYY-MM-DD>.<ext>`` (UTC date of the export) in
  ``export.directory``; ``<basename>_latest.json`` names the current file with its sha256,
  row and user counts; ``<basename>_latest.<ext>`` is a relative symlink to it (for
  consumers that follow symlinks; ``export.latest`` picks json, symlink or both).
* **Atomic and validated.** The file is written under a temporary name in the same
  directory, read back and validated (schema, K unique items per user with ranks 1..K, or
  every eligible item when fewer are eligible, every expected user present and no other, no
  excluded or rule-denied item, every item in the catalogue), and only then renamed into place. On failure
  :class:`~recctl.errors.ExportValidationError` (exit 7) is raised and the files already
  published (yesterday's, and the latest pointer) are untouched.
* **Spreadsheet safety.** In CSV formats a text cell starting with ``= + - @``, a tab or a
  carriage return is prefixed with ``'`` so a spreadsheet shows it as text instead of
  running it as a formula (OWASP "CSV injection"). JSON Lines and Parquet carry values
  unchanged. Numeric columns are written by recctl and are never formulas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl import clock
from recctl.artifacts import atomic_path, sha256_file, write_json_atomic
from recctl.columns import Columns
from recctl.config.recommend import ExportConfig
from recctl.data.positions import IdPositions
from recctl.errors import ExportValidationError
from recctl.workdir import Ledger, refuse_foreign

__all__ = [
    "EXTENSIONS",
    "FORMULA_PREFIXES",
    "SIDE_KINDS",
    "ExportExpectations",
    "PublishedFile",
    "ValidationReport",
    "dated_name",
    "export_columns",
    "neutralise_formulas",
    "move_pointer",
    "pointer_record",
    "prune_old",
    "publish",
    "read_pointer",
    "long_rows",
    "read_export",
    "sort_rows",
    "validate_date",
    "validate_export",
    "write_export",
    "write_side_file",
]

log = logging.getLogger(__name__)

EXTENSIONS = {"csv": "csv", "csv_wide": "csv", "jsonl": "jsonl", "parquet": "parquet"}
#: first characters that make a spreadsheet treat a cell as a formula
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_RE = r"^[=+\-@\t\r]"
_TEXT_COLUMNS = (Columns.User, Columns.Item, Columns.Model, Columns.Source, Columns.Variant)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: bytes read at a time when a written file is hashed and its line ends counted
_READ_CHUNK = 8 << 20
#: CSV rows written at a time (their generated_at column and neutralised cells exist per chunk)
_WRITE_CHUNK_ROWS = 1 << 18
#: (user, item) pairs looked up in the exclusions at a time
_PAIR_CHUNK = 1 << 18
#: rows grouped by user at a time when validating rows in user order
_GROUP_CHUNK_ROWS = 1 << 18


def export_columns(with_source: bool, with_variant: bool) -> list[str]:
    """The long-format columns, in file order."""
    cols = [Columns.User, Columns.Rank, Columns.Item, Columns.Score, Columns.Model, Columns.GeneratedAt]
    if with_source:
        cols.append(Columns.Source)
    if with_variant:
        cols.append(Columns.Variant)
    return cols


#: side files published next to the main file, by kind
SIDE_KINDS = ("assignments", "delta", "short_lists", "related", "related_skus")


def dated_name(cfg: ExportConfig, date: str, kind: str = "") -> str:
    """``<basename>[_<kind>]_<date>.<ext>`` for the configured format (assignments: always Parquet)."""
    ext = "parquet" if kind == "assignments" else EXTENSIONS[cfg.format]
    middle = f"_{kind}" if kind else ""
    return f"{cfg.basename}{middle}_{date}.{ext}"


def neutralise_formulas(frame: pl.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """Prefix text cells a spreadsheet would run as a formula with ``'``.

    Parameters
    ----------
    frame
        The rows to write.
    columns
        Text columns to treat (default: the id and name columns present).

    Returns
    -------
    polars.DataFrame

    Examples
    --------
    >>> import polars as pl
    >>> neutralise_formulas(pl.DataFrame({"item_id": ["=1+1", "ok", "-x"]}))["item_id"].to_list()
    ["'=1+1", 'ok', "'-x"]
    """
    cols = [c for c in (columns or _TEXT_COLUMNS) if c in frame.columns and frame.schema[c] == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_RE)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in cols
    )


def _unneutralise(frame: pl.DataFrame) -> pl.DataFrame:
    cols = [c for c in _TEXT_COLUMNS if c in frame.columns and frame.schema[c] == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(r"^'[=+\-@\t\r]")).then(pl.col(c).str.slice(1)).otherwise(pl.col(c)).alias(c)
        for c in cols
    )


def sort_rows(recs: pl.DataFrame) -> pl.DataFrame:
    """``recs`` in file order (``user_id`` in byte order, then ``rank``): ``recs`` itself when already so.

    The recommend stage writes its lists in that order, so normally nothing is copied: a sort
    would make a second copy of every list row (serve-export's memory is those rows).
    """
    return recs if _in_file_order(recs) else recs.sort([Columns.User, Columns.Rank])


def _in_file_order(recs: pl.DataFrame) -> bool:
    if recs.height < 2:
        return True
    users, ranks = recs[Columns.User], recs[Columns.Rank]
    if users.null_count() or ranks.null_count() or not ranks.dtype.is_integer() or not users.is_sorted():
        return False
    r = ranks.to_numpy()
    down = np.flatnonzero(r[1:] < r[:-1])  # a rank may fall only where the user changes
    return not len(down) or bool((users.gather(down) != users.gather(down + 1)).all())


def write_export(recs: pl.DataFrame, path: Path, cfg: ExportConfig, *, k: int, generated_at: str) -> int:
    """Write recommendations in the configured format; returns the number of rows (users for wide/jsonl).

    Parameters
    ----------
    recs
        Long recommendations (``recommendations.parquet`` of the recommend stage).
    path
        Destination (normally a temporary path from :func:`~recctl.artifacts.atomic_path`).
    cfg
        The ``export`` section.
    k
        List length (columns of the wide format).
    generated_at
        ISO 8601 UTC time the lists were generated.
    """
    return _write_long(long_rows(recs, cfg), path, cfg, k=k, generated_at=generated_at)


def long_rows(recs: pl.DataFrame, cfg: ExportConfig, generated_at: str | None = None) -> pl.DataFrame:
    """The long rows an export writes (its columns, sorted by user then rank), before any format.

    Without ``generated_at`` that column is left out: it is one value, which the writers add
    chunk by chunk as they write (as a column of every row it cost ~25 bytes per row at
    serve-export's peak). The rows share ``recs``' buffers when ``recs`` is in file order
    (:func:`sort_rows`).
    """
    cols = export_columns(cfg.include_source, Columns.Variant in recs.columns)
    rows = sort_rows(recs)
    if generated_at is None:
        return rows.select([c for c in cols if c != Columns.GeneratedAt])
    return rows.with_columns(pl.lit(generated_at).alias(Columns.GeneratedAt)).select(cols)


def _with_generated_at(rows: pl.DataFrame, generated_at: str | None, value: pl.Expr | None = None) -> pl.DataFrame:
    """``rows`` with the ``generated_at`` column after ``model`` (as ``value``, default the string)."""
    if Columns.GeneratedAt in rows.columns:
        return rows
    if generated_at is None:
        raise ValueError("the rows have no generated_at column and no generated_at value was given")
    cols = list(rows.columns)
    at = cols.index(Columns.Model) + 1
    column = (pl.lit(generated_at, pl.String) if value is None else value).alias(Columns.GeneratedAt)
    return rows.with_columns(column).select([*cols[:at], Columns.GeneratedAt, *cols[at:]])


def _write_long(long: pl.DataFrame, path: Path, cfg: ExportConfig, *, k: int, generated_at: str | None = None) -> int:
    with_variant = Columns.Variant in long.columns
    if cfg.format == "parquet":

        def stamp(text: pl.Expr) -> pl.Expr:
            return text.str.to_datetime(time_zone="UTC", time_unit="us")

        if Columns.GeneratedAt in long.columns:
            long = long.with_columns(stamp(pl.col(Columns.GeneratedAt)))
        typed = _with_generated_at(long, generated_at, stamp(pl.lit(generated_at, pl.String))).with_columns(
            pl.col(Columns.Rank).cast(pl.Int32), pl.col(Columns.Score).cast(pl.Float64)
        )
        # polars cuts row groups by the frame's chunks: one chunk, as a sorted frame always was,
        # keeps the file's bytes those of earlier versions (a copy while writing, Parquet only)
        typed.rechunk().write_parquet(path, compression="zstd", statistics=True)
        return typed.height
    if cfg.format == "csv":
        # in chunks: the generated_at column and the neutralised cells exist for one chunk at a
        # time (the bytes are those of one write_csv of all rows: polars formats cell by cell)
        with open(path, "wb") as handle:
            for start in range(0, max(long.height, 1), _WRITE_CHUNK_ROWS):
                chunk = _with_generated_at(long.slice(start, _WRITE_CHUNK_ROWS), generated_at)
                neutralise_formulas(chunk).write_csv(
                    handle, include_header=start == 0, float_precision=cfg.float_precision
                )
        return long.height
    long = _with_generated_at(long, generated_at)
    keys = [Columns.User, Columns.Model, Columns.GeneratedAt] + ([Columns.Variant] if with_variant else [])
    if cfg.format == "csv_wide":
        grouped = long.group_by(keys, maintain_order=True).agg(pl.col(Columns.Item), pl.col(Columns.Score))
        wide = grouped.select(
            Columns.User,
            *[pl.col(Columns.Item).list.get(i, null_on_oob=True).alias(f"item_{i + 1}") for i in range(k)],
            *[pl.col(Columns.Score).list.get(i, null_on_oob=True).alias(f"score_{i + 1}") for i in range(k)],
            *keys[1:],
        )
        item_cols = [f"item_{i + 1}" for i in range(k)]
        neutralise_formulas(wide, [Columns.User, Columns.Model, Columns.Variant, *item_cols]).write_csv(
            path, float_precision=cfg.float_precision
        )
        return wide.height
    # jsonl: one object per user, items best first
    fields = [Columns.Rank, Columns.Item, Columns.Score] + ([Columns.Source] if cfg.include_source else [])
    grouped = long.group_by(keys, maintain_order=True).agg(pl.struct(fields).alias("items"))
    grouped.select(Columns.User, *keys[1:], "items").write_ndjson(path)
    return grouped.height


def write_side_file(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    """A plain table next to the main file, in its format family (CSV text cells neutralised).

    ``short_lists`` (``user_id, n_items, n_eligible``: the users whose list holds fewer than K
    items because fewer are eligible) is written as CSV for the CSV formats, JSON Lines or
    Parquet otherwise; the A/B ``assignments`` always as Parquet.
    """
    if fmt == "parquet":
        frame.write_parquet(path, compression="zstd")
    elif fmt == "jsonl":
        frame.write_ndjson(path)
    else:
        neutralise_formulas(frame).write_csv(path)


def read_export(path: Path, fmt: str) -> pl.DataFrame:
    """Read an export file back into long rows (text cells un-neutralised), as a consumer would.

    Raises
    ------
    ExportValidationError
        If the file cannot be parsed in its format.
    """
    try:
        if fmt == "parquet":
            return pl.read_parquet(path)
        if fmt == "csv":
            frame = pl.read_csv(path, infer_schema=False)
            return _unneutralise(frame)
        if fmt == "csv_wide":
            frame = pl.read_csv(path, infer_schema=False)
            item_cols = sorted((c for c in frame.columns if re.fullmatch(r"item_\d+", c)), key=lambda c: int(c[5:]))
            keys = [c for c in frame.columns if not re.fullmatch(r"(item|score)_\d+", c)]
            parts = []
            for c in item_cols:
                r = int(c[5:])
                parts.append(
                    frame.select(
                        *keys,
                        pl.lit(str(r)).alias(Columns.Rank),
                        pl.col(c).alias(Columns.Item),
                        pl.col(f"score_{r}").alias(Columns.Score),
                    )
                )
            long = pl.concat(parts) if parts else pl.DataFrame()
            return _unneutralise(long.filter(pl.col(Columns.Item).is_not_null())) if parts else long
        frame = pl.read_ndjson(path)
        return frame.explode("items").unnest("items")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise ExportValidationError(f"{path}: the written {fmt} file cannot be read back: {exc}") from exc


def _ids(values: Any) -> pl.Series:
    """Ids as a polars String Series (Arrow strings: never widened to the longest id)."""
    if isinstance(values, pl.Series):
        return values.cast(pl.String)
    return pl.Series(list(values) if not isinstance(values, np.ndarray) else values.tolist(), dtype=pl.String)


@dataclass
class ExportExpectations:
    """What a valid export must satisfy (computed independently of the recommend stage).

    ``users``, ``user_ids`` and ``item_ids`` may be polars Series, lists or object arrays.
    A user may have fewer than ``k`` rows only when fewer than ``k`` items are eligible for
    them (``rules``' mask and cap, minus their ``exclusions``): then exactly that many.
    """

    k: int
    users: Any  # user ids that must each have a full list (k, or every eligible item)
    user_ids: Any  # rows of ``exclusions``: index -> user id
    item_ids: Any  # id map: index -> item id (catalogue)
    exclusions: sp.csr_matrix | None = None  # (n_users x n_items) items a user must not get
    item_mask: np.ndarray | None = None  # items anyone may get
    with_source: bool = True
    with_variant: bool = False
    cap_codes: np.ndarray | None = None  # category per item, with ``cap``: at most cap per list
    cap: int | None = None

    def __post_init__(self) -> None:
        self.users = _ids(self.users)
        self.user_ids = _ids(self.user_ids)
        self.item_ids = _ids(self.item_ids)

    def capacity(self, user_idx: np.ndarray) -> np.ndarray:
        """Most items a list may hold for these users (``-1`` index: a user without exclusions)."""
        from recctl.lists.fill import eligible_capacity
        from recctl.rules import ItemRules

        rules = ItemRules(item_mask=self.item_mask, cap_codes=self.cap_codes, cap=self.cap)
        n_items = len(self.item_ids)
        rows = None
        if self.exclusions is not None and len(user_idx):
            safe = np.where(user_idx >= 0, user_idx, 0)
            keep = sp.diags((user_idx >= 0).astype(np.float32), format="csr")
            rows = sp.csr_matrix(keep @ self.exclusions[safe])
            rows.eliminate_zeros()
        return eligible_capacity(rules, rows, len(user_idx), n_items)


@dataclass
class ValidationReport:
    """Result of :func:`validate_export`; ``problems`` is empty when the file is valid."""

    rows: int = 0
    users: int = 0
    short_users: int = 0
    problems: list[str] = field(default_factory=list)
    #: sha256 of the file, when validation read all of its bytes (so publishing need not again)
    sha256: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _expected_schema(fmt: str, exp: ExportExpectations) -> list[str]:
    long = export_columns(exp.with_source, exp.with_variant)
    if fmt in ("csv", "parquet"):
        return long
    keys = [Columns.Model, Columns.GeneratedAt] + ([Columns.Variant] if exp.with_variant else [])
    if fmt == "csv_wide":
        return [
            Columns.User,
            *[f"item_{i + 1}" for i in range(exp.k)],
            *[f"score_{i + 1}" for i in range(exp.k)],
            *keys,
        ]
    return [Columns.User, *keys, "items"]


def _header(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    if fmt in ("csv", "csv_wide"):
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n").split(",")
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    return list(json.loads(first)) if first.strip() else []


def _file_holds(
    path: Path, fmt: str, written: pl.DataFrame, report: ValidationReport, generated_at: str | None = None
) -> str | None:
    """Whether ``path`` is a complete serialisation of ``written`` (bytes only), else why not.

    A CSV file is read once, in chunks of ``_READ_CHUNK`` bytes (never whole: at 10M rows it is
    ~360 MB, which was serve-export's peak); its sha256 is then set on ``report``.
    ``generated_at`` is the value written on every row when ``written`` leaves that column out.
    """
    rows = written.height
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
        except Exception as exc:  # pyarrow raises several types for a damaged footer
            return f"the written parquet file cannot be read back: {exc}"
        if meta.num_rows != rows:
            return f"the written file holds {meta.num_rows} rows, {rows} were written"
        return None
    # CSV: a cell holding a line end or a quote is quoted, and may span lines: counting lines
    # then proves nothing, so such rows are checked by parsing the file back
    text_cols = [c for c, t in written.schema.items() if t == pl.String]
    awkward = bool(written.select(pl.any_horizontal(pl.col(text_cols).str.contains(r'["\r\n]')).any()).item())
    awkward |= generated_at is not None and any(ch in generated_at for ch in '"\r\n')
    if awkward:
        parsed = read_export(path, fmt)
        return None if parsed.height == rows else f"the written file holds {parsed.height} rows, {rows} were written"
    digest, lines, last = hashlib.sha256(), 0, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    report.sha256 = digest.hexdigest()
    if last != b"\n":
        return "the written file does not end with a line end (truncated?)"
    if lines != rows + 1:
        return f"the written file holds {lines - 1} rows, {rows} were written"
    return None


def validate_export(
    path: Path,
    fmt: str,
    exp: ExportExpectations,
    *,
    max_examples: int = 5,
    written: pl.DataFrame | None = None,
    generated_at: str | None = None,
) -> ValidationReport:
    """Check a written export file against the contract before it is published.

    Parameters
    ----------
    path
        The file as written.
    fmt
        Its format (``export.format``).
    exp
        Expectations: K, the users who must be present, id maps, exclusions, item mask.
    max_examples
        How many offending users / items to quote per problem.
    written
        The long rows (:func:`long_rows`) this process has just written to ``path`` as
        ``csv`` or ``parquet``: the contract is then checked on them rather than on the file
        parsed back, and the file itself by bytes (header, one line per row and a final line
        end for CSV; row count and columns from the footer for Parquet). Other formats, and
        ``written=None``, read the file back.
    generated_at
        The ``generated_at`` value written on every row, when ``written`` leaves that column
        out (:func:`long_rows` without it).

    Returns
    -------
    ValidationReport
        With one line per problem found (empty when valid).

    Notes
    -----
    The rows are checked in place: ids are turned into catalogue / customer indices as two
    integer arrays (no joined copies of the rows), so validating costs a few bytes per row
    beyond the rows themselves.
    """
    report = ValidationReport()
    header = _header(path, fmt)
    wanted = _expected_schema(fmt, exp)
    if header != wanted:
        report.problems.append(f"columns are {header}, the contract says {wanted}")
        return report
    if written is not None and fmt in ("csv", "parquet"):
        problem = _file_holds(path, fmt, written, report, generated_at)
        if problem is not None:
            report.problems.append(problem)
            return report
        frame = written
    else:
        frame = read_export(path, fmt)
    report.rows = frame.height
    if frame.height == 0:
        report.problems.append("the file has no rows")
        return report
    # casts of columns already of that type share their buffers (written rows: no copy)
    frame = frame.select(
        pl.col(Columns.User).cast(pl.String), pl.col(Columns.Item).cast(pl.String), Columns.Rank, Columns.Score
    )
    # written rows are checked in their own types (a cast would hold 8 bytes per row); text read back is cast
    rank = pl.col(Columns.Rank)
    rank = rank if frame.schema[Columns.Rank].is_integer() else rank.cast(pl.Int64, strict=False)
    score = pl.col(Columns.Score)
    score = score if frame.schema[Columns.Score].is_float() else score.cast(pl.Float64, strict=False)

    def examples(values: list[Any]) -> str:
        shown = ", ".join(map(str, values[:max_examples]))
        return shown + (", ..." if len(values) > max_examples else "")

    for col in (Columns.User, Columns.Item):
        n_null = frame[col].null_count() + int((frame[col].fill_null("") == "").sum())
        if n_null:
            report.problems.append(f"{n_null} row(s) have an empty {col}")
    bad_rank = frame.filter(rank.is_null() | (rank < 1) | (rank > exp.k))
    if bad_rank.height:
        report.problems.append(
            f"{bad_rank.height} row(s) have a rank outside 1..{exp.k} (e.g. users "
            f"{examples(bad_rank[Columns.User].unique(maintain_order=True).to_list())})"
        )
    n_bad_score = frame.select((score.is_null() | ~score.is_finite()).sum()).item()
    if n_bad_score:
        report.problems.append(f"{n_bad_score} row(s) have a missing or non-finite score")
    per_user = _per_user(
        frame,
        [
            pl.len().alias("n"),
            pl.col(Columns.Item).n_unique().alias("n_items"),
            rank.n_unique().alias("n_ranks"),
            rank.max().alias("max_rank"),
        ],
    )
    report.users = per_user.height
    user_positions = IdPositions(exp.user_ids)
    # a list holds k items, or every eligible item when fewer are eligible (a crawler's)
    short = per_user.filter(pl.col("n") < exp.k)
    if short.height:
        short = short.with_columns(pl.Series("_capacity", exp.capacity(user_positions.lookup(short[Columns.User]))))
    else:
        short = short.with_columns(pl.lit(0, pl.Int64).alias("_capacity"))
    allowed_n = pl.when(pl.col("n") < exp.k).then(pl.col("_capacity")).otherwise(exp.k)
    checked = per_user.join(short.select(Columns.User, "_capacity"), on=Columns.User, how="left")
    wrong = checked.filter(
        (pl.col("n") != allowed_n.fill_null(exp.k))
        | (pl.col("n_items") != pl.col("n"))
        | (pl.col("n_ranks") != pl.col("n"))
        | (pl.col("max_rank") != pl.col("n"))
    )
    if wrong.height:
        report.problems.append(
            f"{wrong.height} user(s) do not have exactly {exp.k} unique items with ranks 1..{exp.k} "
            "(or, when fewer are eligible, every eligible item) "
            f"(e.g. {examples([f'{u} ({n} rows)' for u, n in wrong.select(Columns.User, 'n').iter_rows()])})"
        )
    report.short_users = short.height
    expected = pl.DataFrame({Columns.User: exp.users})
    missing = expected.join(per_user, on=Columns.User, how="anti")
    if missing.height:
        # absent is right only for a user with no eligible item at all
        missing = missing.filter(pl.Series(exp.capacity(user_positions.lookup(missing[Columns.User])) > 0))
    if missing.height:
        report.problems.append(
            f"{missing.height} expected user(s) are missing (e.g. {examples(missing[Columns.User].to_list())})"
        )
    extra = per_user.join(expected, on=Columns.User, how="anti")[Columns.User].to_list()
    if extra:
        report.problems.append(
            f"{len(extra)} user(s) should not be in the file (unknown or held out; e.g. {examples(extra)})"
        )
    item_positions = IdPositions(exp.item_ids)
    item_idx = item_positions.lookup(frame[Columns.Item], dtype=item_positions.narrow_dtype)
    unknown = item_idx < 0
    if unknown.any():
        unknown_items = frame[Columns.Item].filter(pl.Series(unknown)).unique(maintain_order=True).to_list()
        report.problems.append(
            f"{len(unknown_items)} item id(s) are not in the catalogue (e.g. {examples(unknown_items)})"
        )
    if exp.item_mask is not None and not unknown.all():
        denied = ~exp.item_mask[np.where(unknown, 0, item_idx)] & ~unknown
        n_denied = int(denied.sum())
        if n_denied:
            report.problems.append(
                f"{n_denied} row(s) recommend an item the rules exclude (deny/allow list, stock, price; e.g. "
                f"{examples(frame[Columns.Item].filter(pl.Series(denied)).unique(maintain_order=True).to_list())})"
            )
        del denied
    if exp.exclusions is not None and exp.exclusions.nnz:
        # one look-up per run of a user's rows (the rows are in user order), repeated over the run
        runs = frame[Columns.User].rle().struct.unnest()
        user_idx = np.repeat(
            user_positions.lookup(runs["value"], dtype=user_positions.narrow_dtype), runs["len"].to_numpy()
        )
        del runs
        hit = np.zeros(frame.height, dtype=bool)
        for lo in range(0, frame.height, _PAIR_CHUNK):  # scipy's pair look-up makes per-pair temporaries
            u, i = user_idx[lo : lo + _PAIR_CHUNK], item_idx[lo : lo + _PAIR_CHUNK]
            known = np.flatnonzero((u >= 0) & (i >= 0))
            hit[lo + known] = np.asarray(exp.exclusions[u[known], i[known]]).ravel() != 0
        if hit.any():
            bad = frame.select(Columns.User, Columns.Item).filter(pl.Series(hit))
            report.problems.append(
                f"{int(hit.sum())} row(s) recommend an item the user already had (excluded events; e.g. "
                f"{examples([f'{a}->{b}' for a, b in bad.iter_rows()])})"
            )
    return report


def _per_user(frame: pl.DataFrame, aggs: list[pl.Expr]) -> pl.DataFrame:
    """``frame.group_by(user_id).agg(aggs)`` in user order, a chunk of users at a time when rows are so.

    One group-by over every row held ~90 bytes per row at once (2.5M rows: +220 MB, serve-export's
    peak); chunks cut at user boundaries give the same groups, in user order.
    """
    users = frame[Columns.User]
    n = frame.height
    if n <= _GROUP_CHUNK_ROWS or users.null_count() or not users.is_sorted():
        return frame.group_by(Columns.User).agg(aggs).sort(Columns.User)  # in user order either way
    parts, lo = [], 0
    while lo < n:
        hi = min(lo + _GROUP_CHUNK_ROWS, n)
        if hi < n:  # back to the first row of the user at hi (past it when one user fills the chunk)
            hi = int(users.search_sorted(users[hi], side="left"))
            if hi <= lo:
                hi = int(users.search_sorted(users[lo], side="right"))
        parts.append(frame.slice(lo, hi - lo).group_by(Columns.User, maintain_order=True).agg(aggs))
        lo = hi
    return pl.concat(parts)


@dataclass
class PublishedFile:
    """A file published into the export directory."""

    path: str
    sha256: str
    bytes: int
    rows: int
    users: int | None = None


def _make_readable(path: Path) -> Path:
    # temporary files are created 0600; a published file is read by the shop's import job,
    # often another account, so give it the usual 0644 (minus the process umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o644 & ~umask)
    return path


def _replace_symlink(link: Path, target_name: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link)  # atomic: readers see the old or the new target, never none


def publish(
    recs: pl.DataFrame,
    cfg: ExportConfig,
    directory: Path,
    exp: ExportExpectations,
    *,
    date: str,
    generated_at: str,
    extra: dict[str, pl.DataFrame] | None = None,
    pointer_extra: dict[str, Any] | None = None,
    prepared: dict[str, tuple[Path, int]] | None = None,
) -> tuple[PublishedFile, ValidationReport, list[PublishedFile]]:
    """Write, validate and atomically publish the export; then move the latest pointer.

    Parameters
    ----------
    recs
        Long recommendations from the recommend stage.
    cfg
        The ``export`` section.
    directory
        Where published files live.
    exp
        Validation expectations.
    date
        ``YYYY-MM-DD`` stamped into the file name.
    generated_at
        ISO time the lists were generated (the ``generated_at`` column).
    extra
        Side files to publish with the main one, by kind (``{"assignments": frame}``), each
        as ``<basename>_<kind>_<date>.<ext>``.
    pointer_extra
        More fields for the ``latest`` pointer (the version id).
    prepared
        Side files already written and validated by the caller under a temporary name in
        ``directory`` (the related-products files): final name -> (temporary path, rows).
        They are renamed into place only once the main file is, and deleted if it fails.

    Returns
    -------
    (main, report, side_files)

    Raises
    ------
    ExportValidationError
        The file broke the contract; nothing was published or changed in ``directory``.
    """
    try:
        return _publish(recs, cfg, directory, exp, date, generated_at, extra, pointer_extra, prepared or {})
    finally:
        for tmp, _ in (prepared or {}).values():  # renamed into place on success; leftovers on failure
            tmp.unlink(missing_ok=True)


def _publish(
    recs: pl.DataFrame,
    cfg: ExportConfig,
    directory: Path,
    exp: ExportExpectations,
    date: str,
    generated_at: str,
    extra: dict[str, pl.DataFrame] | None,
    pointer_extra: dict[str, Any] | None,
    prepared: dict[str, tuple[Path, int]],
) -> tuple[PublishedFile, ValidationReport, list[PublishedFile]]:
    validate_date(date)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / dated_name(cfg, date)
    ext = EXTENSIONS[cfg.format]
    # recctl replaces only files it published (the folder's ledger); a shop's own file of the
    # same name is refused before anything is written
    refuse_foreign(
        directory,
        [final.name, *(dated_name(cfg, date, kind) for kind in extra or {}), *prepared]
        + [f"{cfg.basename}_latest.json", f"{cfg.basename}_latest.{ext}"],
    )
    ledger = Ledger(directory)
    with atomic_path(final) as tmp:
        # the rows share recs' buffers (recs in file order) and carry no generated_at column:
        # one copy of the list rows for writing and validating (serve-export's memory)
        written = long_rows(recs, cfg)
        rows = _write_long(written, tmp, cfg, k=exp.k, generated_at=generated_at)
        report = validate_export(tmp, cfg.format, exp, written=written, generated_at=generated_at)
        del written
        if not report.ok:
            current = _current(directory, cfg)
            raise ExportValidationError(
                f"{final.name}: the export failed validation, nothing was published"
                f"{f' ({current} is still the latest file)' if current else ''}:\n  - " + "\n  - ".join(report.problems)
            )
        digest = report.sha256 or sha256_file(tmp)
        size = tmp.stat().st_size
        _make_readable(tmp)
    main = PublishedFile(str(final), digest, size, rows, report.users)
    ledger.record(final.name, sha256=digest)
    side: list[PublishedFile] = []
    for kind, frame in (extra or {}).items():
        side_path = directory / dated_name(cfg, date, kind)
        with atomic_path(side_path) as tmp:
            write_side_file(frame, tmp, "parquet" if kind == "assignments" else cfg.format)
            _make_readable(tmp)
        side.append(PublishedFile(str(side_path), sha256_file(side_path), side_path.stat().st_size, frame.height))
        ledger.record(side_path.name, sha256=side[-1].sha256)
    for name, (tmp, rows_written) in prepared.items():
        _make_readable(tmp)
        os.replace(tmp, directory / name)
        final_side = directory / name
        side.append(PublishedFile(str(final_side), sha256_file(final_side), final_side.stat().st_size, rows_written))
        ledger.record(name, sha256=side[-1].sha256)
    ledger.save()  # before the pointer moves: a kill after this leaves the new files owned
    pointer = pointer_record(
        cfg,
        exp,
        main,
        report,
        file=final.name,
        side_files={Path(s.path).name: s.sha256 for s in side},
        date=date,
        generated_at=generated_at,
        extra=pointer_extra,
    )
    # the pointer moves last: a reader following it always finds a complete, validated file
    if cfg.latest in ("json", "both"):
        _make_readable(write_json_atomic(directory / f"{cfg.basename}_latest.json", pointer))
        ledger.record(f"{cfg.basename}_latest.json")
    if cfg.latest in ("symlink", "both"):
        _replace_symlink(directory / f"{cfg.basename}_latest.{ext}", final.name)
        ledger.record(f"{cfg.basename}_latest.{ext}")
    for other in set(EXTENSIONS.values()) - {ext}:
        # a pointer of a previously configured format would name a stale file: drop it (if ours)
        ledger.remove(f"{cfg.basename}_latest.{other}")
    ledger.save()
    return main, report, side


def validate_date(date: str) -> None:
    """Refuse an export date that is not ``YYYY-MM-DD`` (:class:`ExportValidationError`)."""
    if not _DATE_RE.match(date):
        raise ExportValidationError(f"export date '{date}' is not YYYY-MM-DD.")


def pointer_record(
    cfg: ExportConfig,
    exp: ExportExpectations,
    main: PublishedFile,
    report: ValidationReport,
    *,
    file: str,
    side_files: dict[str, str],
    date: str,
    generated_at: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``<basename>_latest.json`` content naming a validated file (``file`` relative to the directory)."""
    return {
        "file": file,
        "sha256": main.sha256,
        "bytes": main.bytes,
        "rows": main.rows,
        "users": report.users,
        "k": exp.k,
        "format": cfg.format,
        "date": date,
        "generated_at": generated_at,
        "columns": _expected_schema(cfg.format, exp),
        "side_files": side_files,
        "short_lists": report.short_users,
        **(extra or {}),
    }


def read_pointer(directory: Path, cfg: ExportConfig) -> dict[str, Any] | None:
    """The ``<basename>_latest.json`` pointer of the file published now, or ``None``."""
    try:
        pointer = json.loads((directory / f"{cfg.basename}_latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return pointer if isinstance(pointer, dict) else None


def move_pointer(directory: Path, cfg: ExportConfig, pointer: dict[str, Any]) -> None:
    """Point ``<basename>_latest.json`` (and the symlink) at ``pointer["file"]``, atomically, pointer last."""
    if cfg.latest in ("json", "both"):
        _make_readable(write_json_atomic(directory / f"{cfg.basename}_latest.json", pointer))
    if cfg.latest in ("symlink", "both"):
        _replace_symlink(directory / f"{cfg.basename}_latest.{EXTENSIONS[cfg.format]}", pointer["file"])


def _current(directory: Path, cfg: ExportConfig) -> str | None:
    pointer = directory / f"{cfg.basename}_latest.json"
    try:
        return json.loads(pointer.read_text(encoding="utf-8")).get("file")
    except (OSError, ValueError):
        link = directory / f"{cfg.basename}_latest.{EXTENSIONS[cfg.format]}"
        return os.readlink(link) if link.is_symlink() else None


def prune_old(directory: Path, cfg: ExportConfig, keep: int) -> list[str]:
    """Delete dated export files beyond the newest ``keep`` (the latest file is never deleted).

    Only files the folder's ledger records with the same sha256 are deleted (recctl deletes
    nothing it did not write); others of the same name pattern are left and logged.
    """
    kinds = "|".join(f"_{kind}" for kind in SIDE_KINDS)
    pattern = re.compile(rf"^{re.escape(cfg.basename)}({kinds})?_(\d{{4}}-\d{{2}}-\d{{2}})\.[a-z]+$")
    by_date: dict[str, list[Path]] = {}
    for p in directory.iterdir():
        m = pattern.match(p.name)
        if m and not p.is_symlink():
            by_date.setdefault(m.group(2), []).append(p)
    current = _current(directory, cfg)
    ledger = Ledger(directory)
    removed: list[str] = []
    foreign: list[str] = []
    for date in sorted(by_date, reverse=True)[keep:]:
        for p in by_date[date]:
            if p.name != current:
                (removed if ledger.remove(p.name) else foreign).append(p.name)
    ledger.save()
    if foreign:
        log.warning("%s: export.keep left %d file(s) recctl did not publish: %s", directory, len(foreign), foreign[:5])
    return removed


def today_utc() -> str:
    """Today's date in UTC as ``YYYY-MM-DD``."""
    return clock.today()


def published_dict(files: list[PublishedFile]) -> list[dict[str, Any]]:
    """Plain data for a manifest summary."""
    return [asdict(f) for f in files]
