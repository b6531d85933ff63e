"""Dense item vectors computed elsewhere (image or text embeddings) as item features.

A shop that has embedded its product photos or descriptions with some model gives recctl one
vector per item, in either of two layouts (``preprocess.features.item_embeddings``):

* a Parquet file with an id column and a column of float lists (``List``/``Array`` of floats),
  one row per item;
* an ``.npy`` file holding a 2-D float array plus an id file whose line ``i`` (a ``.txt``
  file, one id per line) or row ``i`` (a ``.parquet``/``.csv`` file with ``id_column``) names
  the item of array row ``i``.

The vectors become one dense block of the item feature matrix (``embedding:0`` ..
``embedding:<dim-1>``, group ``embedding``), so every model that reads item features uses
them: the content model (cosine of profiles), LightFM (item features) and sasrec
(``use_item_features``). Each vector is L2-normalised (``normalise``) and multiplied by
``weight``, which sets its share against the other feature blocks. Catalogue items without a
vector get zeros (counted and logged); vectors of ids not in the catalogue are ignored
(counted).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.config.preprocess import ItemEmbeddingsConfig
from recctl.data.positions import IdPositions
from recctl.errors import ConfigError, DataError

__all__ = ["embedding_feature_names", "load_item_embeddings", "read_embedding_file"]

log = logging.getLogger(__name__)

_KEY = "preprocess.features.item_embeddings"


def read_embedding_file(cfg: ItemEmbeddingsConfig, path: Path, ids_path: Path | None) -> tuple[list[str], np.ndarray]:
    """Read ids and vectors, checking shapes, ids and values.

    Parameters
    ----------
    cfg
        The ``item_embeddings`` config (column names).
    path
        The resolved ``.parquet`` or ``.npy`` file.
    ids_path
        The resolved id file (required for ``.npy``, ignored for Parquet).

    Returns
    -------
    (list of str, numpy.ndarray)
        The ids (as strings) and a float32 (n, dim) array, row ``i`` for id ``i``.

    Raises
    ------
    ConfigError
        A missing file, an unknown format, a missing id file or column (exit code 3).
    DataError
        Vectors of different lengths, empty or null vectors, non-finite values, duplicate ids,
        an id count that differs from the array's rows (exit code 4); the message names the
        file and the first offending row.
    """
    if not path.exists():
        raise ConfigError(f"{_KEY}.path: file not found: {path}; check the path (relative to the config file)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        ids, vectors = _read_parquet(cfg, path)
    elif suffix == ".npy":
        ids, vectors = _read_npy(cfg, path, ids_path)
    else:
        raise ConfigError(
            f"{_KEY}.path: {path.name}: unsupported format '{suffix}'; give a .parquet file with a "
            f"column of float lists, or an .npy array with `ids:` naming its id file"
        )
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {int(bad.sum())} vector(s) hold NaN or infinite values (first: row {row}, "
            f"id '{ids[row]}'); fix or drop them before preprocess"
        )
    _check_unique(ids, path)
    return ids, vectors


def _read_parquet(cfg: ItemEmbeddingsConfig, path: Path) -> tuple[list[str], np.ndarray]:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several exception types for unreadable files
        raise DataError(f"{path}: cannot read as Parquet: {exc}") from exc
    for role, column in (("id_column", cfg.id_column), ("vector_column", cfg.vector_column)):
        if column not in frame.columns:
            raise ConfigError(
                f"{_KEY}.{role}: column '{column}' is not in {path.name} (columns: {', '.join(frame.columns)})"
            )
    vec = frame[cfg.vector_column]
    if isinstance(vec.dtype, pl.Array):
        vec = vec.cast(pl.List(vec.dtype.inner))
    if not isinstance(vec.dtype, pl.List) or not vec.dtype.inner.is_numeric():
        raise DataError(
            f"{path}: column '{cfg.vector_column}' is {vec.dtype}, not a list of floats; write one "
            f"list of numbers per item (pyarrow list<float>)"
        )
    ids = frame[cfg.id_column].cast(pl.String).to_list()
    if any(i is None for i in ids):
        row = next(r for r, i in enumerate(ids) if i is None)
        raise DataError(f"{path}: column '{cfg.id_column}' has a missing id at row {row}")
    lengths = vec.list.len().fill_null(0).to_numpy()
    nulls = vec.list.eval(pl.element().is_null().any()).list.first().fill_null(True).to_numpy()
    dim = int(np.bincount(lengths).argmax()) if len(lengths) else 0
    bad = (lengths != dim) | (lengths == 0) | nulls
    if len(lengths) == 0 or dim == 0 or bad.any():
        row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        what = "no rows" if len(lengths) == 0 else f"row {row} (id '{ids[row]}') has {int(lengths[row])} value(s)"
        raise DataError(
            f"{path}: every vector in '{cfg.vector_column}' must have the same length with no missing "
            f"values; most have {dim}, but {what}"
            + (" or a missing value" if len(lengths) and nulls[row] else "")
            + f" ({int(bad.sum())} bad row(s) in all)"
        )
    vectors = np.asarray(vec.explode().to_numpy(), dtype=np.float32).reshape(len(ids), dim)
    return ids, vectors


def _read_npy(cfg: ItemEmbeddingsConfig, path: Path, ids_path: Path | None) -> tuple[list[str], np.ndarray]:
    if ids_path is None:
        raise ConfigError(f"{_KEY}.ids: an .npy array needs an id file (one id per row of the array); set `ids:`")
    if not ids_path.exists():
        raise ConfigError(f"{_KEY}.ids: file not found: {ids_path}; check the path (relative to the config file)")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for bad files
        raise DataError(f"{path}: cannot read as an .npy array: {exc}") from exc
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{path}: expected a 2-D array (items x dimensions), found shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{path}: expected numbers, found dtype {array.dtype}")
    ids = _read_ids(cfg, ids_path)
    if len(ids) != array.shape[0]:
        raise DataError(
            f"{ids_path}: {len(ids):,} id(s) for the {array.shape[0]:,} rows of {path.name}; "
            f"the id file needs exactly one id per array row, in the same order"
        )
    return ids, np.asarray(array, dtype=np.float32)


def _read_ids(cfg: ItemEmbeddingsConfig, ids_path: Path) -> list[str]:
    suffix = ids_path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        frame = pl.read_parquet(ids_path) if suffix == ".parquet" else pl.read_csv(ids_path, infer_schema=False)
        if cfg.id_column not in frame.columns:
            raise ConfigError(
                f"{_KEY}.id_column: column '{cfg.id_column}' is not in {ids_path.name} "
                f"(columns: {', '.join(frame.columns)})"
            )
        ids = frame[cfg.id_column].cast(pl.String).to_list()
    else:
        ids = ids_path.read_text(encoding="utf-8").splitlines()
        while ids and not ids[-1].strip():  # a trailing newline is not an id
            ids.pop()
        ids = [i.strip() for i in ids]
    empty = [r for r, i in enumerate(ids) if i is None or i == ""]
    if empty:
        raise DataError(f"{ids_path}: {len(empty)} empty id(s) (first at row {empty[0]}); one id per row")
    return ids


def _check_unique(ids: list[str], path: Path) -> None:
    series = pl.Series(ids)
    dupes = series.filter(series.is_duplicated())
    if dupes.len():
        first = dupes[0]
        rows = [r for r, i in enumerate(ids) if i == first][:3]
        raise DataError(
            f"{path}: {dupes.n_unique()} id(s) appear more than once (first: '{first}' at rows "
            f"{', '.join(map(str, rows))}); give one vector per item"
        )


def load_item_embeddings(
    cfg: ItemEmbeddingsConfig, path: Path, ids_path: Path | None, item_ids: pl.Series
) -> tuple[np.ndarray, dict[str, Any]]:
    """Align the vectors with the catalogue: row ``i`` is the vector of ``item_ids[i]``.

    Parameters
    ----------
    cfg
        The ``item_embeddings`` config.
    path, ids_path
        Resolved vector file and (for ``.npy``) id file.
    item_ids
        The shop's item ids in ``item_idx`` order.

    Returns
    -------
    (numpy.ndarray, dict)
        A float32 (n_items, dim) block (zeros for items without a vector; normalised and
        weighted as configured) and a summary (``dim``, ``n_vectors``, ``n_items_with_vector``,
        ``n_items_without_vector``, ``n_unknown_ids``).

    Raises
    ------
    DataError
        When no catalogue item has a vector (the ids do not match), besides the errors of
        :func:`read_embedding_file`.
    """
    ids, vectors = read_embedding_file(cfg, path, ids_path)
    if cfg.normalise:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    vectors *= np.float32(cfg.weight)
    catalogue = item_ids.cast(pl.String)
    rows = IdPositions(ids).lookup(catalogue)  # each catalogue item's row in the file (ids are unique there)
    found = rows >= 0
    if not found.any():
        raise DataError(
            f"{path}: none of its {len(ids):,} ids is a catalogue item id (file: '{ids[0]}', ...; "
            f"catalogue: '{catalogue[0] if len(catalogue) else ''}', ...); the ids must be written "
            f"exactly as the item ids of the interactions"
        )
    block = np.zeros((len(catalogue), vectors.shape[1]), dtype=np.float32)
    block[found] = vectors[rows[found]]
    n_unknown = len(ids) - int(found.sum())
    if (~found).any():
        log.warning(
            "item_embeddings: %d of %d catalogue items have no vector in %s; they get zeros "
            "(other feature blocks still describe them)",
            int((~found).sum()),
            len(catalogue),
            path.name,
        )
    summary = {
        "dim": int(vectors.shape[1]),
        "n_vectors": len(ids),
        "n_items_with_vector": int(found.sum()),
        "n_items_without_vector": int((~found).sum()),
        "n_unknown_ids": n_unknown,
    }
    return block, summary


def embedding_feature_names(dim: int) -> pl.DataFrame:
    """Feature names of the embedding block: ``embedding:0`` .. ``embedding:<dim-1>``."""
    return pl.DataFrame({"feature": [f"embedding:{i}" for i in range(dim)], "group": ["embedding"] * dim})
