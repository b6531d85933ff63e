"""Join lookup tables onto raw interaction rows by key (a normalised export: order lines -> orders -> customers).

Shops often export order *lines* (order id, product, price) apart from *orders* (order id,
customer, time) and *customers* (customer id, the person behind several accounts). An
interaction source's ``lookups`` join such tables onto each raw row, in order, before the
columns are mapped, so ``columns.user_id`` may name a column of a lookup.

Rules, chosen so that every raw row stays accounted for:

* a left join: every interaction row is kept, in file order, exactly once; a key with no
  match leaves the looked-up columns empty, and the row is then rejected for what it lacks
  (``missing_user_id``, ``bad_timestamp``, ...) like any other;
* a lookup key must be unique in its table (several matches would multiply rows), and a
  looked-up column must not already exist (name the ones to bring in with ``columns``);
* keys are compared as canonical id text (:func:`~recctl.data.ingest.normalise_id`: stripped,
  ``17850.0`` = ``17850``), so a numeric key in a Parquet file matches the same key in a CSV.

Lookup tables are read into memory (they are tables, not event logs); the interaction file
itself still streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recctl.config.data import Lookup
from recctl.data.readers import (
    ROW,
    detect_format,
    diagnose_source,
    expand_paths,
    prepare_file,
    require_columns,
)
from recctl.errors import DataError

__all__ = ["JoinedLookup", "apply_lookups", "read_lookups"]

#: helper column holding the canonical join key (never in outputs)
_KEY = "__lookup_key"


@dataclass
class JoinedLookup:
    """A lookup table in memory, ready to join: the interaction key column and the table (``_KEY`` + columns)."""

    left_on: str
    table: pl.DataFrame


def _key(expr: pl.Expr) -> pl.Expr:
    from recctl.data.ingest import normalise_id  # ingest imports this module: import at call time

    return normalise_id(expr, numeric_ids=True)


def read_lookups(
    src_lookups: list[Lookup],
    interactions: pl.LazyFrame,
    path: Path,
    *,
    key: str,
    resolve: Callable[[str], Path],
    tmp_dir: Path,
) -> list[JoinedLookup]:
    """Read and check each lookup of a source against the interaction file ``path`` (scanned as ``interactions``).

    Parameters
    ----------
    src_lookups
        ``InteractionSource.lookups``.
    interactions
        The interaction file's scan (its columns are checked for the left keys and clashes).
    path
        The interaction file, for messages.
    key
        YAML key of the source (``data.interactions``).
    resolve
        ``cfg.resolve`` for the lookups' paths.
    tmp_dir
        Scratch for decompressed / transcoded copies.

    Raises
    ------
    DataError
        A lookup file that cannot be read, a missing key or column, a key that is not unique,
        or a looked-up column whose name is already taken.
    """
    columns = [c for c in interactions.collect_schema() if c != ROW]
    joined = []
    for i, lookup in enumerate(src_lookups):
        lkey = f"{key}.lookups.{i}"
        left_on = lookup.left_on or lookup.on
        if left_on not in columns:
            field = "left_on" if lookup.left_on else "on"
            raise DataError(
                f"{path}: column '{left_on}' ({lkey}.{field}) is not in the interaction file or an earlier lookup; "
                f"it has: {', '.join(columns[:30])}."
            )
        table = _read_table(lookup, lkey, resolve, tmp_dir)
        clash = [c for c in table.columns if c != _KEY and c in columns]
        if clash:
            raise DataError(
                f"{lkey}: column(s) {', '.join(clash)} of the lookup are already in {path.name}; "
                f"list the columns to bring in under {lkey}.columns."
            )
        repeated = table.filter(pl.col(_KEY).is_not_null() & pl.col(_KEY).is_duplicated())
        if repeated.height:
            raise DataError(
                f"{lkey}: key '{lookup.on}' is not unique in the lookup ({repeated[_KEY].n_unique():,} keys on "
                f"several rows, e.g. {repeated[_KEY][0]!r}); each interaction row must match at most one row. "
                "De-duplicate the table or join on a unique column."
            )
        joined.append(JoinedLookup(left_on=left_on, table=table))
        columns += [c for c in table.columns if c != _KEY]
    return joined


def _read_table(lookup: Lookup, lkey: str, resolve: Callable[[str], Path], tmp_dir: Path) -> pl.DataFrame:
    from recctl.data.ingest import scan_source

    frames = []
    for lpath in expand_paths(lookup.path, resolve, f"{lkey}.path"):
        fmt = detect_format(lpath, lookup.format)
        prepared = prepare_file(lpath, fmt, lookup.encoding, tmp_dir, delimiter=lookup.delimiter, sheet=lookup.sheet)
        scan = scan_source(prepared, fmt, lookup, shown=lpath)
        wanted = {f"{lkey}.on": lookup.on}
        wanted.update({f"{lkey}.columns.{j}": c for j, c in enumerate(lookup.columns or [])})
        schema = require_columns(scan, lpath, wanted, fmt=fmt, delimiter=lookup.delimiter)
        keep = lookup.columns or [c for c in schema if c not in (ROW, lookup.on)]
        try:
            frames.append(scan.select(_key(pl.col(lookup.on)).alias(_KEY), *keep).collect())
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise diagnose_source(lpath, fmt, lookup, exc, read_from=prepared, key=lkey) from exc
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def apply_lookups(lf: pl.LazyFrame, lookups: list[JoinedLookup]) -> pl.LazyFrame:
    """Left-join each lookup onto ``lf`` by its key, keeping every row once and in order."""
    for lookup in lookups:
        lf = (
            lf.with_columns(_key(pl.col(lookup.left_on)).alias(_KEY))
            .join(lookup.table.lazy(), on=_KEY, how="left", maintain_order="left")
            .drop(_KEY)
        )
    return lf
