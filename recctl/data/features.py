"""Item and user feature matrices for hybrid and content models, from catalogue columns.

Feature kinds (``preprocess.features``):

* categorical: one-hot, named ``<column>=<value>``;
* multi-valued (``A|B|C``): one column per distinct value, ``<column>=<value>``;
* numeric: quantile buckets over the catalogue, ``<column>:q<k>of<n>``; missing values get no
  bucket;
* text: TF-IDF over lower-cased tokens, runs of Unicode letters and digits (``Größe`` stays one
  token; Cyrillic, Greek, Arabic... catalogues get features too; stop words and 1-character
  tokens dropped),
  keeping the ``text_max_vocab`` tokens with the highest document frequency among those in at
  least ``text_min_df`` rows; idf is ``ln((1 + n) / (1 + df)) + 1``, each row's text block is
  L2-normalised; named ``<column>:<token>``.

Rows are aligned with ``item_idx`` / ``user_idx``; a matrix is saved as ``<kind>_features.npz``
(scipy CSR, float32) with ``<kind>_feature_names.parquet`` (``feature, group`` in column order).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recctl.artifacts import atomic_path, write_parquet_atomic
from recctl.config.preprocess import FeaturesConfig
from recctl.data.locale import TOKEN_PATTERN, looks_decimal_comma
from recctl.errors import ConfigError

if TYPE_CHECKING:  # scipy is imported where a matrix is built: preprocess without features never loads it
    import scipy.sparse as sp

__all__ = ["STOP_WORDS", "FeatureBlock", "build_features", "item_feature_spec", "save_features"]

#: One block of a feature matrix: ``(kind, column, parameter)``, the parameter being the
#: separator of a multi-valued column, the bucket count of a numeric one, else None.
FeatureBlock = tuple[str, str, "int | str | None"]

STOP_WORDS = frozenset("a an and are as at be by for from has in is it its of on or our the to with this that".split())
_ROW = "__idx"

log = logging.getLogger(__name__)


def _blocks_categorical(frame: pl.DataFrame, column: str) -> tuple[pl.DataFrame, str]:
    values = pl.col(column).cast(pl.String).str.strip_chars()
    pairs = frame.select(_ROW, values.alias("__v")).filter(pl.col("__v").is_not_null() & (pl.col("__v") != ""))
    return pairs.select(
        _ROW, (pl.lit(f"{column}=") + pl.col("__v")).alias("__f"), pl.lit(1.0).alias("__w")
    ), "categorical"


def _blocks_multi(frame: pl.DataFrame, column: str, sep: str) -> tuple[pl.DataFrame, str]:
    values = pl.col(column).cast(pl.String).str.split(sep)
    pairs = (
        frame.select(_ROW, values.alias("__v"))
        .explode("__v")
        .with_columns(pl.col("__v").str.strip_chars())
        .filter(pl.col("__v").is_not_null() & (pl.col("__v") != ""))
        .unique()
    )
    return pairs.select(
        _ROW, (pl.lit(f"{column}=") + pl.col("__v")).alias("__f"), pl.lit(1.0).alias("__w")
    ), "multi_valued"


def _blocks_numeric(frame: pl.DataFrame, column: str, n_buckets: int, key: str) -> tuple[pl.DataFrame, str]:
    number = pl.col(column).cast(pl.Float64, strict=False)
    values = frame.select(_ROW, number.alias("__x")).filter(pl.col("__x").is_not_null() & pl.col("__x").is_finite())
    _warn_unparsed(frame[column], values.height, column, key)
    if values.height == 0:
        return pl.DataFrame(schema={_ROW: pl.UInt32, "__f": pl.String, "__w": pl.Float64}), "numeric"
    # interior quantile edges; duplicates collapse (a column with few distinct values gets fewer buckets)
    qs = np.linspace(0, 1, n_buckets + 1)[1:-1]
    edges = np.unique(np.quantile(values["__x"].to_numpy(), qs)) if len(qs) else np.array([])
    bucket = np.searchsorted(edges, values["__x"].to_numpy(), side="right")
    n = len(edges) + 1
    names = [f"{column}:q{b + 1}of{n}" for b in bucket]
    return values.select(_ROW).with_columns(pl.Series("__f", names), pl.lit(1.0).alias("__w")), "numeric"


def _warn_unparsed(raw: pl.Series, n_parsed: int, column: str, key: str) -> None:
    """Warn when values of a numeric feature column are not numbers (they get no bucket, silently otherwise)."""
    present = raw.drop_nulls()
    if raw.dtype == pl.String:
        present = present.filter(present.str.strip_chars().str.len_bytes() > 0)
    missed = present.len() - n_parsed
    if missed <= 0:
        return
    bad = present.filter(present.cast(pl.Float64, strict=False).is_null()) if raw.dtype == pl.String else present
    examples = ", ".join(repr(v) for v in bad.head(3).to_list())
    fix = (
        "they use a decimal comma: set `data.items.decimal_comma: true` and re-run ingest"
        if looks_decimal_comma(bad.cast(pl.String))
        else "check the column, or list it under item_categorical instead"
    )
    log.warning(
        "%s.item_numeric_buckets.%s: %s of %s values are not numbers (e.g. %s) and get no feature; %s.",
        key,
        column,
        f"{missed:,}",
        f"{present.len():,}",
        examples,
        fix,
    )


def _blocks_text(frame: pl.DataFrame, column: str, max_vocab: int, min_df: int) -> tuple[pl.DataFrame, str]:
    tokens = (
        frame.select(
            _ROW, pl.col(column).cast(pl.String).str.to_lowercase().str.extract_all(TOKEN_PATTERN).alias("__t")
        )
        .explode("__t")
        .filter(
            pl.col("__t").is_not_null() & (pl.col("__t").str.len_chars() > 1) & ~pl.col("__t").is_in(list(STOP_WORDS))
        )
    )
    tf = tokens.group_by(_ROW, "__t").agg(pl.len().cast(pl.Float64).alias("__tf"))
    df = tf.group_by("__t").agg(pl.len().alias("__df")).filter(pl.col("__df") >= min_df)
    # the vocabulary cap keeps the most common tokens; ties broken alphabetically for stability
    vocab = df.sort(["__df", "__t"], descending=[True, False]).head(max_vocab)
    n_docs = frame.height
    weighted = tf.join(vocab, on="__t").with_columns(
        (pl.col("__tf") * (((1.0 + n_docs) / (1.0 + pl.col("__df"))).log() + 1.0)).alias("__w")
    )
    weighted = weighted.with_columns((pl.col("__w") / (pl.col("__w") ** 2).sum().over(_ROW).sqrt()).alias("__w"))
    return weighted.select(_ROW, (pl.lit(f"{column}:") + pl.col("__t")).alias("__f"), "__w"), "text"


def item_feature_spec(cfg: FeaturesConfig) -> list[FeatureBlock]:
    """The item feature blocks a config asks for, as ``(kind, column, parameter)``."""
    spec: list[FeatureBlock] = [("categorical", c, None) for c in cfg.item_categorical]
    spec += [("multi_valued", c, sep) for c, sep in cfg.item_multi_valued.items()]
    spec += [("numeric", c, n) for c, n in cfg.item_numeric_buckets.items()]
    spec += [("text", c, None) for c in cfg.item_text]
    return spec


def build_features(
    table: pl.DataFrame, spec: Sequence[FeatureBlock], *, key: str, max_vocab: int = 2000, min_df: int = 2
) -> tuple[sp.csr_matrix, pl.DataFrame]:
    """Build a CSR feature matrix whose row ``i`` describes ``table`` row ``i``.

    Parameters
    ----------
    table
        Rows in index order (``items.parquet`` sorted by ``item_idx``).
    spec
        Blocks from :func:`item_feature_spec` (or ``("categorical", column, None)`` for users).
    key
        YAML key for error messages (``preprocess.features``).

    Returns
    -------
    (scipy.sparse.csr_matrix, polars.DataFrame)
        The float32 matrix and its column names (``feature, group``), features sorted within
        each block so the layout is stable.

    Raises
    ------
    ConfigError
        If a configured column is not in the table.
    """
    import scipy.sparse as sp

    frame = table.with_row_index(_ROW)
    for kind, column, _ in spec:
        if column not in table.columns:
            raise ConfigError(
                f"{key}: {kind} feature column '{column}' is not in the ingested table (columns: "
                f"{', '.join(c for c in table.columns if not c.endswith('_idx'))}); map it under data.*.columns."
            )
    blocks: list[pl.DataFrame] = []
    groups: list[str] = []
    for kind, column, param in spec:
        if kind == "categorical":
            block, group = _blocks_categorical(frame, column)
        elif kind == "multi_valued":
            block, group = _blocks_multi(frame, column, str(param))
        elif kind == "numeric":
            if not isinstance(param, int):  # item_feature_spec gives the bucket count
                raise TypeError(f"{key}: numeric feature '{column}' needs a bucket count, got {param!r}")
            block, group = _blocks_numeric(frame, column, param, key)
        else:
            block, group = _blocks_text(frame, column, max_vocab, min_df)
        blocks.append(block.with_columns(pl.col(_ROW).cast(pl.UInt32)))
        groups.append(group)
    names: list[pl.DataFrame] = []
    offset = 0
    rows, cols, vals = [], [], []
    for block, group in zip(blocks, groups, strict=True):
        # numeric bucket names sort by bucket number, not as text (q10of10 after q9of10)
        feats = block.select("__f").unique()
        feats = feats.sort(pl.col("__f").str.extract(r"q(\d+)of").cast(pl.Int32, strict=False), "__f")
        feats = feats.with_row_index("__c", offset=offset)
        joined = block.join(feats, on="__f")
        rows.append(joined[_ROW].to_numpy())
        cols.append(joined["__c"].to_numpy())
        vals.append(joined["__w"].to_numpy())
        names.append(feats.select(pl.col("__f").alias("feature"), pl.lit(group).alias("group")))
        offset += feats.height
    n_rows = table.height
    if offset == 0:
        return sp.csr_matrix((n_rows, 0), dtype=np.float32), pl.DataFrame(
            schema={"feature": pl.String, "group": pl.String}
        )
    matrix = sp.csr_matrix(
        (
            np.concatenate(vals).astype(np.float32),
            (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)),
        ),
        shape=(n_rows, offset),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix, pl.concat(names)


def save_features(directory: Path, prefix: str, matrix: sp.csr_matrix, names: pl.DataFrame) -> list[Path]:
    """Write ``<prefix>_features.npz`` and ``<prefix>_feature_names.parquet`` atomically."""
    import scipy.sparse as sp

    npz = directory / f"{prefix}_features.npz"
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        sp.save_npz(fh, matrix.tocsr(), compressed=True)
    parquet = write_parquet_atomic(names, directory / f"{prefix}_feature_names.parquet")
    return [npz, parquet]
