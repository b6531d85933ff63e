"""Business rules on recommendation lists (the ``recommend.rules`` config section).

Rules come in three kinds, applied at three places:

* **Item rules** (the same for every user) become one boolean ``item_mask`` the ranking
  kernel applies before selection: allow list, deny list, out of stock, no price.
* **Per-user exclusions** (every item of the user's full history, or only items with the
  events named in ``exclude_events``) are built with the customers' histories
  (:mod:`recctl.lists.audience`).
* **List rules** re-rank or filter each list: per-category caps and MMR diversity. They need
  more candidates than K, so each source is asked for ``rules.candidates`` items per user.

This module only *resolves* the rules against the catalogue; the one place they are applied
to lists is :mod:`recctl.lists.fill`, whatever model or fallback offers an item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.config.recommend import RulesConfig
from recctl.errors import ConfigError

__all__ = ["ItemRules", "build_item_rules", "read_id_list"]

log = logging.getLogger(__name__)

#: dimensions of the item vectors MMR compares (wider feature matrices are projected)
_MMR_DIMS = 128


@dataclass
class ItemRules:
    """Item-level rules resolved against the catalogue (index space).

    Attributes
    ----------
    item_mask
        Boolean (n_items,) of recommendable items, or ``None`` when every item is allowed.
    cap_codes, cap
        Integer category code per item and the per-list maximum (``None``: no cap).
    mmr_lambda
        MMR trade-off (0 disables re-ranking).
    mmr_vectors
        L2-normalised dense item vectors whose dot product is the MMR similarity, or ``None``.
    mmr_codes
        Alternatively, item codes where equal codes mean similarity 1 (else 0).
    excluded
        Count of items excluded by each rule, for the stage summary.
    """

    item_mask: np.ndarray | None = None
    cap_codes: np.ndarray | None = None
    cap: int | None = None
    mmr_lambda: float = 0.0
    mmr_vectors: np.ndarray | None = None
    mmr_codes: np.ndarray | None = None
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def reranks(self) -> bool:
        """Whether list rules (caps, MMR) apply after selection."""
        return self.cap is not None or self.mmr_lambda > 0


def read_id_list(path: Path, key: str) -> list[str]:
    """Read item ids from a text file (one per line, ``#`` comments) or a CSV/Parquet file.

    A CSV or Parquet file needs an ``item_id`` column (or has a single column).

    Raises
    ------
    ConfigError
        If the file is missing or has no usable column (naming the YAML ``key``).
    """
    if not path.exists():
        raise ConfigError(f"{key}: file not found: {path}; give a file of item ids (relative to the config file).")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        try:
            frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
        except Exception as exc:  # polars raises several exception types for bad files
            raise ConfigError(f"{key}: cannot read {path}: {exc}") from exc
        if Columns.Item in frame.columns:
            col = Columns.Item
        elif frame.width == 1:
            col = frame.columns[0]
        else:
            raise ConfigError(
                f"{key}: {path} has columns {frame.columns}; it needs an '{Columns.Item}' column (or a single column)."
            )
        return [str(v).strip() for v in frame[col].drop_nulls().cast(pl.String).to_list() if str(v).strip()]
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


def _column(items: pl.DataFrame, column: str, key: str) -> pl.Series:
    if column not in items.columns:
        extra = sorted(c for c in items.columns if c not in (Columns.Item, Columns.ItemIdx))
        raise ConfigError(
            f"{key}: the catalogue has no column '{column}'; available: {', '.join(extra) or 'none'}. "
            "Map it under data.items.columns and re-run `recctl ingest` and `recctl preprocess`."
        )
    return items.sort(Columns.ItemIdx)[column]


def _truthy(series: pl.Series, key: str = "recommend.rules.in_stock_column") -> np.ndarray:
    """In-stock values to booleans: false words (false/0/no, nein, non, ... in the languages of
    :mod:`recctl.data.locale`) are out of stock; null (unknown) counts as in stock, and so do
    values that are neither a true nor a false word, with a warning naming them."""
    from recctl.data.locale import false_words, true_words

    if series.dtype == pl.Boolean:
        return series.fill_null(True).to_numpy()
    if series.dtype.is_numeric():
        return (series.fill_null(1) > 0).to_numpy()
    text = series.cast(pl.String).str.strip_chars().str.to_lowercase()
    no = false_words({""})
    unknown = text.filter(text.is_not_null() & ~text.is_in(list(no | true_words()))).unique().sort()
    if unknown.len():
        log.warning(
            "%s: %d item(s) have in-stock values that are neither a true nor a false word (%s); they are treated "
            "as in stock. Add the shop's words to data.items.true_values / false_values and re-run ingest.",
            key,
            int(text.is_in(unknown.implode()).sum()),
            ", ".join(repr(v) for v in unknown.head(5).to_list()),
        )
    return (~text.is_in(list(no)) | text.is_null()).to_numpy()


def _codes(series: pl.Series) -> np.ndarray:
    values = series.cast(pl.String).fill_null("").to_numpy()
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int64)


def build_item_rules(
    rules: RulesConfig,
    items: pl.DataFrame,
    *,
    resolve: Callable[[str], Path] = Path,
    item_features: sp.csr_matrix | None = None,
) -> ItemRules:
    """Resolve the item rules against the catalogue (``items.parquet`` of preprocess).

    Parameters
    ----------
    rules
        The ``recommend.rules`` section.
    items
        Catalogue with ``item_id``, ``item_idx`` and attribute columns.
    resolve
        Turns a path from the config into an absolute path (``cfg.resolve``).
    item_features
        Optional item feature matrix, for MMR similarity.

    Returns
    -------
    ItemRules

    Raises
    ------
    ConfigError
        For a rule naming a column the catalogue does not have, or an unreadable list file.
    """
    n_items = items.height
    ordered = items.sort(Columns.ItemIdx)
    ids = ordered[Columns.Item].cast(pl.String).to_numpy()
    mask = np.ones(n_items, dtype=bool)
    excluded: dict[str, int] = {}

    def apply(name: str, allowed: np.ndarray) -> None:
        excluded[name] = int((mask & ~allowed).sum())
        mask[:] &= allowed

    if rules.allow_list:
        allowed_ids = set(read_id_list(resolve(rules.allow_list), "recommend.rules.allow_list"))
        known = np.isin(ids, list(allowed_ids))
        missing = len(allowed_ids) - int(known.sum())
        if missing:
            log.warning("allow list: %d item id(s) are not in the catalogue (ignored)", missing)
        apply("allow_list", known)
    if rules.deny_list:
        denied = read_id_list(resolve(rules.deny_list), "recommend.rules.deny_list")
        apply("deny_list", ~np.isin(ids, denied))
    if rules.in_stock_column:
        apply("out_of_stock", _truthy(_column(ordered, rules.in_stock_column, "recommend.rules.in_stock_column")))
    if rules.require_price:
        price = _column(ordered, rules.price_column, "recommend.rules.price_column")
        if not price.dtype.is_numeric():
            price = price.cast(pl.String).str.replace_all(r"[^0-9.\-]", "").cast(pl.Float64, strict=False)
        values = price.cast(pl.Float64).fill_nan(None).fill_null(0.0).to_numpy()
        apply("no_price", values > 0)
    out = ItemRules(item_mask=None if mask.all() else mask, excluded=excluded, mmr_lambda=rules.diversity_lambda)
    if rules.category_cap is not None:
        out.cap_codes = _codes(_column(ordered, rules.category_cap.column, "recommend.rules.category_cap.column"))
        out.cap = rules.category_cap.max_per_list
    if rules.diversity_lambda > 0:
        if rules.diversity_column:
            out.mmr_codes = _codes(_column(ordered, rules.diversity_column, "recommend.rules.diversity_column"))
        elif item_features is not None and item_features.shape[0] == n_items:
            feats = sp.csr_matrix(item_features, dtype=np.float32)
            if feats.shape[1] > _MMR_DIMS:
                # wide (TF-IDF) features: a seeded Gaussian projection keeps cosines close
                # (Johnson-Lindenstrauss) and memory at n_items x 128 floats
                rng = np.random.default_rng(0)
                proj = rng.standard_normal((feats.shape[1], _MMR_DIMS)).astype(np.float32) / np.sqrt(_MMR_DIMS)
                dense = np.asarray(feats @ proj, dtype=np.float32)
            else:
                dense = feats.toarray()
            norms = np.linalg.norm(dense, axis=1, keepdims=True)
            out.mmr_vectors = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
        elif out.cap_codes is not None:
            out.mmr_codes = out.cap_codes
        else:
            raise ConfigError(
                "recommend.rules.diversity_lambda: MMR needs a notion of item similarity: set "
                "recommend.rules.diversity_column (e.g. category), or configure item features under "
                "preprocess.features."
            )
    return out
