"""Business rules on recommendation lists (the ``recommend.rules`` config section).

Rules come in three kinds, applied at three places:

* **Item rules** (the same for every user) become one boolean ``item_mask`` the ranking
  kernel applies before selection: allow list, deny list, out of stock, no price.
* **Per-user exclusions** become a sparse (users x items) matrix the kernel masks: every
  item the user interacted with (train and test events: production lists use the full
  history), or only items with the events named in ``exclude_events`` (e.g. purchased but
  not merely viewed).
* **List rules** re-rank or filter each user's candidates after selection: per-category caps
  and MMR diversity. They need more candidates than K, so the kernel is asked for
  ``rules.candidates`` items per user.

Finally :func:`backfill` tops short lists up to exactly K from the fallback chain, keeping
caps, skipping duplicates, and recording which model (``source``) gave each item.
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
from recctl.data.dataset import interactions_matrix
from recctl.errors import ArtifactError, ConfigError, DataError

__all__ = [
    "ItemRules",
    "apply_list_rules",
    "backfill",
    "build_exclusions",
    "build_item_rules",
    "candidate_count",
    "read_id_list",
]

log = logging.getLogger(__name__)

#: dimensions of the item vectors MMR compares (wider feature matrices are projected)
_MMR_DIMS = 128
_FALSE = {"false", "0", "no", "n", "f", "out", "out_of_stock", ""}


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


def candidate_count(rules: RulesConfig, k: int, n_items: int) -> int:
    """How many items to select per user before list rules cut the list to ``k``."""
    if not rules.needs_candidates:
        return k
    wanted = rules.candidates or 3 * k + 20
    return int(min(max(wanted, k), n_items))


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


def _truthy(series: pl.Series) -> np.ndarray:
    """In-stock values to booleans: false/0/no are out of stock; null (unknown) counts as in stock."""
    if series.dtype == pl.Boolean:
        return series.fill_null(True).to_numpy()
    if series.dtype.is_numeric():
        return (series.fill_null(1) > 0).to_numpy()
    text = series.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (~text.is_in(list(_FALSE)) | text.is_null()).to_numpy()


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


def build_exclusions(
    rules: RulesConfig, preprocess_dir: Path, n_users: int, n_items: int, *, exclude_seen: bool = True
) -> sp.csr_matrix | None:
    """Items each user must not get: their full history (train + test), or only some events.

    Parameters
    ----------
    rules
        ``recommend.rules``; ``exclude_events`` narrows the exclusion to those event types.
    preprocess_dir
        ``<workdir>/preprocess``.
    n_users, n_items
        Matrix shape.
    exclude_seen
        ``recommend.exclude_seen``; ``False`` returns ``None`` (nothing excluded).

    Returns
    -------
    scipy.sparse.csr_matrix or None
        (n_users x n_items); stored entries are excluded.

    Raises
    ------
    ConfigError
        If ``exclude_events`` names an event that never occurs in the data.
    ArtifactError
        If the preprocess outputs needed are missing.
    """
    if not exclude_seen:
        return None
    d = Path(preprocess_dir)
    if rules.exclude_events is None:
        frames = []
        for split in ("train", "test"):
            path = d / f"{split}.parquet"
            if not path.exists():
                raise ArtifactError(f"{path}: missing; run `recctl preprocess CONFIG` first.")
            frames.append(pl.read_parquet(path, columns=[Columns.UserIdx, Columns.ItemIdx]))
        frame = pl.concat(frames)
    else:
        path = d / "events.parquet"
        if not path.exists():
            raise ArtifactError(
                f"{path}: missing; recommend.rules.exclude_events needs the per-event file; "
                "re-run `recctl preprocess CONFIG`."
            )
        events = pl.read_parquet(path, columns=[Columns.UserIdx, Columns.ItemIdx, Columns.Event])
        present = set(events[Columns.Event].unique().cast(pl.String).to_list())
        unknown = [e for e in rules.exclude_events if e not in present]
        if unknown:
            raise ConfigError(
                f"recommend.rules.exclude_events: event(s) {unknown} never occur in the data; events present: "
                f"{', '.join(sorted(present)) or 'none'}."
            )
        frame = events.filter(pl.col(Columns.Event).is_in(rules.exclude_events)).select(
            Columns.UserIdx, Columns.ItemIdx
        )
    if frame.height == 0:
        return interactions_matrix(frame, n_users, n_items)
    rows, cols = frame[Columns.UserIdx], frame[Columns.ItemIdx]
    if rows.max() >= n_users or cols.max() >= n_items or rows.min() < 0 or cols.min() < 0:
        raise DataError(
            f"{d}: interaction indices out of range of users.parquet / items.parquet; re-run `recctl preprocess`."
        )
    # only the pattern matters (masked items); weights are dropped so every entry is 1
    return interactions_matrix(frame.select(Columns.UserIdx, Columns.ItemIdx), n_users, n_items)


def _similarity(rules: ItemRules, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity of items ``a`` (n, p) to items ``b`` (n, q) per row -> (n, p, q)."""
    if rules.mmr_vectors is not None:
        va, vb = rules.mmr_vectors[a], rules.mmr_vectors[b]
        return np.einsum("npd,nqd->npq", va, vb)
    codes = rules.mmr_codes
    return (codes[a][:, :, None] == codes[b][:, None, :]).astype(np.float32)


def _mmr(items: np.ndarray, scores: np.ndarray, k: int, rules: ItemRules) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal marginal relevance over each row's candidates (vectorised over rows).

    Relevance is min-max normalised per row, so ``mmr_lambda`` means the same for any model's
    score scale: each step takes ``argmax (1 - lambda) * rel - lambda * max_sim(selected)``.
    """
    n, m = items.shape
    valid = items >= 0
    safe = np.where(valid, items, 0)
    lo = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        span = np.where(hi > lo, hi - lo, 1.0)
        rel = np.where(valid, (scores - np.where(np.isfinite(lo), lo, 0.0)) / span, -np.inf).astype(np.float32)
    sim = _similarity(rules, safe, safe)  # (n, m, m)
    lam = rules.mmr_lambda
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf, np.float32)
    max_sim = np.zeros((n, m), np.float32)
    taken = ~valid
    rows = np.arange(n)
    for r in range(min(k, m)):
        obj = np.where(taken, -np.inf, (1 - lam) * rel - lam * max_sim)
        pick = obj.argmax(axis=1)
        ok = ~taken[rows, pick]
        out_items[rows[ok], r] = items[rows[ok], pick[ok]]
        out_scores[rows[ok], r] = scores[rows[ok], pick[ok]]
        taken[rows, pick] = True
        max_sim = np.maximum(max_sim, sim[rows, pick, :])
    return out_items, out_scores


def _cap(items: np.ndarray, scores: np.ndarray, k: int, rules: ItemRules) -> tuple[np.ndarray, np.ndarray]:
    """Keep items in order while their category count stays within the cap; first ``k`` kept."""
    n, m = items.shape
    codes = rules.cap_codes
    n_codes = int(codes.max()) + 1 if len(codes) else 1
    counts = np.zeros((n, n_codes), np.int32)
    keep = np.zeros((n, m), bool)
    kept = np.zeros(n, np.int32)
    rows = np.arange(n)
    for r in range(m):
        item = items[:, r]
        valid = (item >= 0) & (kept < k)
        cat = codes[np.where(item >= 0, item, 0)]
        ok = valid & (counts[rows, cat] < rules.cap)
        counts[rows[ok], cat[ok]] += 1
        kept += ok
        keep[:, r] = ok
    return _compact(items, scores, keep, k)


def _compact(items: np.ndarray, scores: np.ndarray, keep: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = items.shape[0]
    # stable order of kept entries per row: sort by (not kept) keeps kept ones first, in order
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out_items = np.take_along_axis(items, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    kept = np.take_along_axis(keep, order, axis=1)
    out_items = np.where(kept, out_items, -1)
    out_scores = np.where(kept, out_scores, -np.inf).astype(np.float32)
    if out_items.shape[1] < k:
        pad = k - out_items.shape[1]
        out_items = np.pad(out_items, ((0, 0), (0, pad)), constant_values=-1)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return out_items.reshape(n, k), out_scores.reshape(n, k)


def apply_list_rules(items: np.ndarray, scores: np.ndarray, k: int, rules: ItemRules) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank (MMR) and cap each row's candidates, returning at most ``k`` per row.

    Parameters
    ----------
    items, scores
        (n, m) candidates best first, ``-1`` padded (a :class:`~recctl.ranking.TopK` block).
    k
        List length.
    rules
        Resolved item rules.

    Returns
    -------
    (items, scores)
        (n, k), ``-1`` / ``-inf`` padded where too few candidates pass.
    """
    if rules.mmr_lambda > 0 and len(items):
        items, scores = _mmr(items, scores, items.shape[1], rules)
    if rules.cap is not None and len(items):
        return _cap(items, scores, k, rules)
    return _compact(items, scores, items >= 0, k)


def backfill(
    items: np.ndarray,
    scores: np.ndarray,
    sources: np.ndarray,
    rows: np.ndarray,
    cand_items: np.ndarray,
    cand_scores: np.ndarray,
    source_code: int,
    rules: ItemRules,
) -> None:
    """Append candidates to short lists in place until each has ``k`` items.

    Candidates already in the list, or that would break a category cap, are skipped; the
    appended items get ``source_code`` in ``sources``. Only rows with short lists are passed,
    so the Python loop runs over few users.

    Parameters
    ----------
    items, scores, sources
        (n, k) lists being built (``-1`` padded), modified in place.
    rows
        Row numbers (into ``items``) of the short lists, aligned with ``cand_items``.
    cand_items, cand_scores
        (len(rows), m) candidates from one fallback model, best first.
    source_code
        Code of that fallback model in the caller's list of sources.
    rules
        For the category cap.
    """
    k = items.shape[1]
    for j, r in enumerate(rows):
        have = int((items[r] >= 0).sum())
        if have >= k:
            continue
        present = set(items[r, :have].tolist())
        counts: dict[int, int] = {}
        if rules.cap is not None:
            for it in items[r, :have]:
                c = int(rules.cap_codes[it])
                counts[c] = counts.get(c, 0) + 1
        for it, sc in zip(cand_items[j].tolist(), cand_scores[j].tolist(), strict=True):
            if it < 0 or it in present:
                continue
            if rules.cap is not None:
                c = int(rules.cap_codes[it])
                if counts.get(c, 0) >= rules.cap:
                    continue
                counts[c] = counts.get(c, 0) + 1
            items[r, have], scores[r, have], sources[r, have] = it, sc, source_code
            present.add(it)
            have += 1
            if have == k:
                break
