"""The related-products file: K related items for every catalogue item, in the shapes shops import.

Built by the list builder's item path (:meth:`recctl.lists.ListBuilder.similar`) from the model
``export.related.model`` (item-kNN, EASE, LightFM embeddings, content...), its ``fallback``
models (more similarity, or popularity to fill with popular items), and the same item and list
rules as the nightly file (out of stock, deny list, caps, MMR). An item is never related to
itself; similarities at or below ``min_score`` (default 0: no evidence) are not "related".

Two layouts (``export.related.layouts``), published next to the nightly file:

* ``long`` (``<basename>_related_<date>.csv`` or ``.parquet``): ``sku, rank, related_sku,
  score, source``, one row per item and rank;
* ``sku_list`` (``<basename>_related_skus_<date>.csv``): ``sku,related_skus``, one row per
  catalogue item, its related SKUs in one cell joined by ``separator``: Magento's product
  import (``related_skus``, ``crosssell_skus``, ``upsell_skus`` columns, comma-separated) and
  WooCommerce's (``Cross-sells`` / ``Upsells``) take this shape; rename the columns with
  ``sku_column`` / ``list_column``.

CSV options for spreadsheets: ``delimiter`` (``;`` where the decimal separator is a comma),
``bom`` (Excel on Windows reads UTF-8 only with it), ``spreadsheet_safe`` (a cell starting with
``= + - @`` gets a leading ``'``, as in the nightly file; turn it off for an importer that takes
SKUs verbatim). Every file is validated after writing, by reading it back as an importer would.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.config.recommend import RelatedConfig
from recctl.data.positions import IdPositions
from recctl.lists import Lists, eligible_capacity, to_arrow
from recctl.rules import ItemRules

__all__ = [
    "RELATED_COLUMNS",
    "RelatedExpectations",
    "read_related",
    "related_frame",
    "validate_related",
    "write_related",
]

#: columns of the long layout
RELATED_COLUMNS = ["sku", "rank", "related_sku", "score", "source"]
_FORMULA = ("=", "+", "-", "@")


def related_frame(lists: Lists, item_ids: pl.Series) -> pl.DataFrame:
    """Long rows ``sku, rank, related_sku, score, source`` for lists whose row ``i`` is item ``i``."""
    table = to_arrow(lists, item_ids, item_ids)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.rename({"user_id": "sku", "item_id": "related_sku"}).select(RELATED_COLUMNS)


def _guard(value: str | None, on: bool) -> str | None:
    if on and value and value[0] in _FORMULA:
        return "'" + value
    return value


def _unguard(value: str) -> str:
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA else value


def _csv_bytes(header: list[str], rows: list[list[Any]], cfg: RelatedConfig) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=cfg.delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (("\ufeff" if cfg.bom else "") + buffer.getvalue()).encode("utf-8")


def write_related(
    frame: pl.DataFrame, item_ids: pl.Series, path: Path, layout: str, cfg: RelatedConfig, *, parquet: bool = False
) -> int:
    """Write one layout of the related-products file; returns its data rows.

    Parameters
    ----------
    frame
        Long rows from :func:`related_frame`.
    item_ids
        Every catalogue item (the ``sku_list`` layout has one row per item, empty lists too).
    path
        Destination (a temporary path; the caller renames it).
    layout
        ``long`` or ``sku_list``.
    cfg
        ``export.related``.
    parquet
        Write the long layout as Parquet (when the nightly file is Parquet).
    """
    ordered = frame.sort("sku", "rank")
    if layout == "long":
        if parquet:
            ordered.with_columns(pl.col("rank").cast(pl.Int32), pl.col("score").cast(pl.Float64)).write_parquet(
                path, compression="zstd"
            )
            return ordered.height
        safe = cfg.spreadsheet_safe
        rows = [
            [_guard(s, safe), r, _guard(t, safe), f"{sc:.6f}", _guard(src, safe)]
            for s, r, t, sc, src in ordered.iter_rows()
        ]
        path.write_bytes(_csv_bytes(RELATED_COLUMNS, rows, cfg))
        return len(rows)
    lists = ordered.group_by("sku", maintain_order=True).agg(pl.col("related_sku"))
    every = pl.DataFrame({"sku": item_ids.cast(pl.String)}).join(lists, on="sku", how="left").sort("sku")
    out = []
    for sku, related in every.iter_rows():
        joined = cfg.separator.join(related or [])
        out.append([_guard(sku, cfg.spreadsheet_safe), _guard(joined, cfg.spreadsheet_safe)])
    path.write_bytes(_csv_bytes([cfg.sku_column, cfg.list_column], out, cfg))
    return len(out)


def read_related(path: Path, layout: str, cfg: RelatedConfig, *, parquet: bool = False) -> pl.DataFrame:
    """Read a related file back into long rows (``sku, rank, related_sku``), as an importer would."""
    if layout == "long" and parquet:
        return pl.read_parquet(path).select("sku", "rank", "related_sku")
    text = path.read_bytes().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text), delimiter=cfg.delimiter)
    header = next(reader, [])
    rows: list[tuple[str, int, str]] = []
    if layout == "long":
        if header != RELATED_COLUMNS:
            raise ValueError(f"columns are {header}, the contract says {RELATED_COLUMNS}")
        for record in reader:
            rows.append((_unguard(record[0]), int(record[1]), _unguard(record[2])))
    else:
        if header != [cfg.sku_column, cfg.list_column]:
            raise ValueError(f"columns are {header}, the contract says {[cfg.sku_column, cfg.list_column]}")
        for record in reader:
            sku, cell = _unguard(record[0]), _unguard(record[1])
            if not cell:
                rows.append((sku, 0, ""))
                continue
            for rank, related in enumerate(cell.split(cfg.separator), start=1):
                rows.append((sku, rank, related))
    return pl.DataFrame(rows, schema={"sku": pl.String, "rank": pl.Int64, "related_sku": pl.String}, orient="row")


@dataclass
class RelatedExpectations:
    """What a related file must satisfy: every catalogue item once, K allowed items or all there are."""

    k: int
    item_ids: pl.Series
    rules: ItemRules
    filled: bool  # a fallback fills with popular items: short only when fewer are eligible


def validate_related(
    path: Path, layout: str, cfg: RelatedConfig, exp: RelatedExpectations, *, parquet: bool = False
) -> list[str]:
    """Check a written related file; one sentence per problem (empty when valid).

    Checks: header; every catalogue item present exactly once (``sku_list``) with ranks 1..n
    (``long``); at most K related items, none repeated, never the item itself, every one in
    the catalogue and allowed by the item rules, within the category cap; and, when a fallback
    fills, exactly K unless fewer are eligible.
    """
    try:
        frame = read_related(path, layout, cfg, parquet=parquet)
    except (ValueError, IndexError, OSError, pl.exceptions.PolarsError) as exc:
        return [f"{path.name}: cannot be read back: {exc}"]
    problems: list[str] = []
    ids = exp.item_ids.cast(pl.String)
    pairs = frame.filter(pl.col("rank") > 0)
    if layout == "sku_list":
        seen = frame.select("sku").unique()
        missing = pl.DataFrame({"sku": ids}).join(seen, on="sku", how="anti")
        if missing.height:
            problems.append(f"{missing.height} catalogue item(s) have no row (e.g. {missing['sku'].head(3).to_list()})")
        extra = seen.join(pl.DataFrame({"sku": ids}), on="sku", how="anti")
        if extra.height:
            problems.append(
                f"{extra.height} row(s) name an item not in the catalogue (e.g. {extra['sku'].head(3).to_list()})"
            )
        if frame.select("sku").unique().height != frame.filter(pl.col("rank") <= 1).height:
            problems.append("an item has more than one row")
    per_item = pairs.group_by("sku").agg(
        pl.len().alias("n"), pl.col("related_sku").n_unique().alias("u"), pl.col("rank").max().alias("max_rank")
    )
    bad = per_item.filter((pl.col("n") > exp.k) | (pl.col("u") != pl.col("n")) | (pl.col("max_rank") != pl.col("n")))
    if bad.height:
        problems.append(f"{bad.height} item(s) have more than {exp.k}, repeated or misnumbered related items")
    own = pairs.filter(pl.col("sku") == pl.col("related_sku"))
    if own.height:
        problems.append(f"{own.height} item(s) are related to themselves")
    at = IdPositions(ids).lookup(pairs["related_sku"])
    unknown = at < 0
    if unknown.any():
        shown = pairs["related_sku"].filter(pl.Series(unknown)).head(3).to_list()
        problems.append(f"{int(unknown.sum())} related SKU(s) are not in the catalogue (e.g. {shown})")
    known = pairs.filter(pl.Series(~unknown))
    idx = at[~unknown]
    if exp.rules.item_mask is not None and len(idx):
        denied = int((~np.asarray(exp.rules.item_mask)[idx]).sum())
        if denied:
            problems.append(f"{denied} related item(s) are excluded by the rules (deny/allow list, stock, price)")
    if exp.rules.cap is not None and exp.rules.cap_codes is not None and len(idx):
        cats = known.with_columns(pl.Series("__cat", np.asarray(exp.rules.cap_codes)[idx]))
        over = cats.group_by("sku", "__cat").len().filter(pl.col("len") > exp.rules.cap)
        if over.height:
            problems.append(f"{over['sku'].n_unique()} item(s) break the category cap of {exp.rules.cap}")
    if exp.filled:
        n_of = dict(per_item.select("sku", "n").iter_rows())
        short = [(i, s) for i, s in enumerate(ids.to_list()) if n_of.get(s, 0) < exp.k]
        if short:
            rows = np.array([i for i, _ in short], np.int64)
            own_rows = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)), shape=(len(rows), len(ids))
            )
            capacity = eligible_capacity(exp.rules, own_rows, len(rows), len(ids))
            wrong = [s for (_, s), c in zip(short, capacity, strict=True) if n_of.get(s, 0) != min(exp.k, int(c))]
            if wrong:
                problems.append(
                    f"{len(wrong)} item(s) have fewer than {exp.k} related items although more are eligible "
                    f"(e.g. {wrong[:3]})"
                )
    return problems
