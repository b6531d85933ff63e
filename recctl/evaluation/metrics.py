"""Ranking metrics, vectorised over users (numpy / scipy.sparse, no per-user Python loop).

The input is a matrix of top-K item indices per user (``-1`` pads a list shorter than K) and a
sparse target matrix whose rows are aligned with it; every metric is computed for all users at
once from a ``(n_users, K)`` matrix of hits and gains. Definitions, formulas and edge cases are
written down in ``docs/metrics.md``; the short version:

* a user is evaluated only if their target row has at least one relevant item (weight > 0);
* precision divides by K even when the list is shorter (a short list is not rewarded);
* MAP divides AP@K by ``min(|rel|, K)``; NDCG's ideal list has ``min(|rel|, K)`` relevant items;
* ties were already broken by the ranking (the shared kernel puts the lower item index first);
  AUC, computed from full scores, counts a tie between a positive and a negative as 1/2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.metric_registry import METRICS, metric_names

__all__ = [
    "ACCURACY_METRICS",
    "ALL_METRICS",
    "BEYOND_ACCURACY_METRICS",
    "DEFAULT_METRICS",
    "EvalResult",
    "auc_from_scores",
    "evaluate_model",
    "evaluate_rankings",
    "metric_key",
    "relevant_target",
]

#: metrics computed from the ranking and the test items, per user and per K
ACCURACY_METRICS = tuple(n for n in metric_names(accuracy=True) if METRICS[n].has_k)
#: metrics about the lists themselves (need item popularity or features, not test items)
BEYOND_ACCURACY_METRICS = metric_names(accuracy=False)
#: every metric name (recctl.metric_registry); ``auc`` is computed from full scores and has no K
ALL_METRICS = tuple(METRICS)
DEFAULT_METRICS = ("precision", "recall", "f1", "map", "ndcg")
#: aggregate-only metrics (one number over all lists, no per-user value)
_AGGREGATE = metric_names(per_user=False)


def metric_key(metric: str, k: int | None) -> str:
    """Return the column / dict key of a metric at K: ``"ndcg@10"``, or ``"auc"`` (no K)."""
    return metric if metric == "auc" or k is None else f"{metric}@{k}"


@dataclass
class EvalResult:
    """The outcome of evaluating one ranking (or model) against a target.

    Attributes
    ----------
    mean
        ``metric@k`` -> mean over evaluated users (NaN-valued users, e.g. AUC of a user with
        no negative item, are left out of that metric's mean); aggregate metrics such as
        ``coverage@k`` are one number over all lists.
    per_user
        One row per evaluated user: ``user_idx`` and one float column per per-user metric@k.
    n_users
        Number of evaluated users (target row with at least one relevant item).
    n_skipped
        Rows given that were not evaluated because their target row had no relevant item.
    ks, metrics
        The cut-offs and metric names that were asked for.
    items
        The top-K item matrix of the evaluated users (rows aligned with ``per_user``).
    """

    mean: dict[str, float]
    per_user: pl.DataFrame
    n_users: int
    n_skipped: int
    ks: list[int]
    metrics: list[str]
    items: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.int64))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data summary (means and counts) for JSON."""
        return {
            "n_users": self.n_users,
            "n_skipped": self.n_skipped,
            "ks": self.ks,
            "metrics": self.metrics,
            "mean": {k: _json_float(v) for k, v in self.mean.items()},
        }


def _json_float(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _check_metrics(metrics: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(metrics))
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
    return names


def _check_ks(ks: Iterable[int] | int) -> list[int]:
    values = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not values or any(int(k) < 1 for k in values):
        raise ValueError(f"ks must be positive integers, got {values}")
    return sorted({int(k) for k in values})


def relevant_target(target: sp.spmatrix, exclude: sp.spmatrix | None = None) -> sp.csr_matrix:
    """Return the target as clean CSR: only entries with weight > 0, minus excluded items.

    Items in ``exclude`` (the user's training items, when seen items are filtered out of
    the ranking) can never be recommended, so they are not counted as relevant either:
    keeping them would lower every model's recall by the same unreachable amount.
    """
    t = sp.csr_matrix(target, dtype=np.float64, copy=True)
    t.sum_duplicates()
    t.data[t.data <= 0] = 0.0
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        if ex.shape != t.shape:
            raise ValueError(f"exclude has shape {ex.shape}, target {t.shape}")
        # zero the target where exclude is non-zero (elementwise, stays sparse)
        seen = t.multiply(ex != 0).tocsr()
        t = (t - seen).tocsr()
    t.eliminate_zeros()
    t.sort_indices()
    return t


def _lookup_gains(target: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Gain (target weight) of every ranked item, 0 where not relevant or padding.

    Rows of ``target`` and ``items`` are aligned. One ``searchsorted`` over the flattened
    ``row * n_items + col`` keys of the (row-major, sorted) CSR matrix answers all lookups.
    """
    n, n_items = target.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(target.indptr))
    keys = rows * n_items + target.indices.astype(np.int64)
    valid = items >= 0
    query = np.arange(n, dtype=np.int64)[:, None] * n_items + np.where(valid, items, 0)
    if keys.size == 0:
        return np.zeros(items.shape, np.float64)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    found = valid & (keys[pos] == query)
    return np.where(found, target.data[pos], 0.0)


def _ideal_graded_dcg(target: sp.csr_matrix, k: int, discount: np.ndarray) -> np.ndarray:
    """Per-row DCG of the ideal list: the row's K largest weights in descending order."""
    n = target.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(target.indptr))
    order = np.lexsort((-target.data, rows))  # row-major, weight descending within a row
    data = target.data[order]
    pos = np.arange(len(data)) - target.indptr[rows]  # rows are already sorted
    use = pos < k
    return np.bincount(rows[use], weights=data[use] * discount[pos[use]], minlength=n)


def _validate_items(items: np.ndarray, n_items: int) -> np.ndarray:
    items = np.asarray(items)
    if items.ndim != 2:
        raise ValueError(f"items must be a 2-d (n_users, K) array, got shape {items.shape}")
    items = items.astype(np.int64, copy=False)
    if items.size and (items.max() >= n_items or items.min() < -1):
        raise ValueError(f"item indices must be in [0, {n_items}) or -1 for padding")
    if items.shape[1] > 1:
        srt = np.sort(items, axis=1)
        if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
            raise ValueError("a ranking lists the same item twice; each list must hold distinct items")
    return items


def evaluate_rankings(
    items: np.ndarray,
    target: sp.spmatrix,
    ks: Sequence[int] | int,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    users: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    n_popularity_users: int | None = None,
    item_features: sp.spmatrix | None = None,
    head_items: np.ndarray | None = None,
    auc: np.ndarray | None = None,
) -> EvalResult:
    """Score top-K lists against a target, for every K in ``ks`` and every metric.

    Parameters
    ----------
    items
        ``(n_rows, K)`` int array of item indices, best first; ``-1`` pads short lists. K may be
        smaller than ``max(ks)``: missing positions count as empty.
    target
        ``(n_rows, n_items)`` sparse matrix aligned with ``items``; an entry > 0 is relevant and
        its value is the gain of graded NDCG. Remove excluded items first
        (:func:`relevant_target`).
    ks
        Cut-offs.
    metrics
        Names from :data:`ALL_METRICS` (``auc`` needs the ``auc`` argument).
    users
        User indices of the rows (stored in ``per_user.user_idx``); default ``0..n_rows-1``.
    item_popularity
        Per-item count of training users; needed by ``novelty`` and ``popularity_bias``.
    n_popularity_users
        Number of users the popularity counts are over (novelty's denominator); default the
        largest count.
    item_features
        ``(n_items, n_features)`` sparse features; needed by ``diversity``.
    head_items
        Boolean mask of the "head" (most popular) items for ``popularity_bias``; by default
        computed from ``item_popularity`` (see :func:`recctl.evaluation.protocol.popularity_bands`).
    auc
        Per-row AUC already computed from full scores (see :func:`auc_from_scores`).

    Returns
    -------
    EvalResult
        Rows whose target has no relevant item are skipped (counted in ``n_skipped``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> target = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=float))
    >>> res = evaluate_rankings(np.array([[1, 2], [3, 0]]), target, [2], ["precision", "recall"])
    >>> res.mean["precision@2"], res.mean["recall@2"]
    (0.5, 0.75)
    """
    metrics = _check_metrics(metrics)
    ks = _check_ks(ks)
    target = sp.csr_matrix(target)
    n_rows, n_items = target.shape
    items = _validate_items(items, n_items)
    if items.shape[0] != n_rows:
        raise ValueError(f"items has {items.shape[0]} rows but target has {n_rows}")
    users = np.arange(n_rows, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    if len(users) != n_rows:
        raise ValueError(f"users has {len(users)} entries, expected {n_rows}")
    if "auc" in metrics and auc is None:
        raise ValueError("metric 'auc' needs per-row AUC from full scores; use evaluate_model or auc_from_scores")

    target = relevant_target(target)
    n_rel_all = np.diff(target.indptr)
    keep = n_rel_all > 0
    n_skipped = int((~keep).sum())
    if n_skipped:
        target = target[keep]
        items, users = items[keep], users[keep]
        auc = auc[keep] if auc is not None else None
    n = items.shape[0]
    kmax = max(ks)
    if items.shape[1] < kmax:  # a list shorter than the largest K: the rest is empty
        items = np.pad(items, ((0, 0), (0, kmax - items.shape[1])), constant_values=-1)
    items = items[:, :kmax]

    gains = _lookup_gains(target, items)
    hits = gains > 0
    n_rel = np.diff(target.indptr).astype(np.float64)
    cum_hits = np.cumsum(hits, axis=1)
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_discount = np.cumsum(discount)
    real = items >= 0
    list_len = np.cumsum(real, axis=1)

    columns: dict[str, np.ndarray] = {}
    mean_extra: dict[str, float] = {}
    needs_pop = {"novelty", "popularity_bias"} & set(metrics)
    if needs_pop and item_popularity is None:
        raise ValueError(f"{sorted(needs_pop)} need item_popularity (training users per item)")
    if "diversity" in metrics and item_features is None:
        raise ValueError("'diversity' needs item_features (an n_items x n_features matrix)")
    # popularity information, only when a metric that reads it was asked for
    info = _item_info(item_popularity, n_popularity_users, head_items, n_items) if needs_pop else {}
    unit_features = _unit_rows(item_features) if "diversity" in metrics else None

    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            hk = cum_hits[:, k - 1].astype(np.float64)
            precision = hk / k
            recall = hk / n_rel
            for m in metrics:
                key = metric_key(m, k)
                if m == "precision":
                    columns[key] = precision
                elif m == "recall":
                    columns[key] = recall
                elif m == "f1":
                    denom = precision + recall
                    columns[key] = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
                elif m == "map":
                    prec_at_r = cum_hits[:, :k] / ranks[:k]
                    columns[key] = (prec_at_r * hits[:, :k]).sum(axis=1) / np.minimum(n_rel, k)
                elif m == "ndcg":
                    dcg = (hits[:, :k] * discount[:k]).sum(axis=1)
                    ideal = cum_discount[np.minimum(n_rel, k).astype(np.int64) - 1]
                    columns[key] = dcg / ideal
                elif m == "ndcg_graded":
                    dcg = (gains[:, :k] * discount[:k]).sum(axis=1)
                    columns[key] = dcg / _ideal_graded_dcg(target, k, discount)
                elif m == "mrr":
                    first = np.argmax(hits[:, :k], axis=1)
                    columns[key] = np.where(hits[:, :k].any(axis=1), 1.0 / (first + 1.0), 0.0)
                elif m == "hit_rate":
                    columns[key] = (hk > 0).astype(np.float64)
                elif m == "user_coverage":
                    columns[key] = (list_len[:, k - 1] >= k).astype(np.float64)
                elif m == "coverage":
                    shown = items[:, :k][real[:, :k]]
                    mean_extra[key] = float(np.unique(shown).size / n_items) if n_items else float("nan")
                elif m == "novelty":
                    info_k = np.where(real[:, :k], info["self_information"][np.maximum(items[:, :k], 0)], 0.0)
                    columns[key] = info_k.sum(axis=1) / list_len[:, k - 1]
                elif m == "popularity_bias":
                    head_k = real[:, :k] & info["head"][np.maximum(items[:, :k], 0)]
                    columns[key] = head_k.sum(axis=1) / list_len[:, k - 1]
                elif m == "diversity":
                    columns[key] = _intra_list_diversity(items[:, :k], unit_features, n_items)
            if "auc" in metrics and "auc" not in columns:
                columns["auc"] = np.asarray(auc, dtype=np.float64)

    ordered = [metric_key(m, k) for m in metrics if m != "auc" and m not in _AGGREGATE for k in ks]
    if "auc" in metrics:
        ordered.insert(0, "auc")
    per_user = pl.DataFrame(
        {Columns.UserIdx: users, **{key: columns[key] for key in ordered}},
        schema={Columns.UserIdx: pl.Int64, **dict.fromkeys(ordered, pl.Float64)},
    )
    mean = {key: _nanmean(columns[key]) for key in ordered}
    mean.update(mean_extra)
    # present means in the order metrics x ks were asked for
    order = [metric_key(m, k) for m in metrics for k in ([None] if m == "auc" else ks)]
    mean = {key: mean[key] for key in order if key in mean}
    return EvalResult(
        mean=mean,
        per_user=per_user,
        n_users=n,
        n_skipped=n_skipped,
        ks=ks,
        metrics=metrics,
        items=items,
    )


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _item_info(
    popularity: np.ndarray | None, n_users: int | None, head: np.ndarray | None, n_items: int
) -> dict[str, np.ndarray]:
    from recctl.evaluation.protocol import popularity_bands

    pop = np.asarray(popularity, dtype=np.float64)
    if pop.shape != (n_items,):
        raise ValueError(f"item_popularity has shape {pop.shape}, expected ({n_items},)")
    total_users = float(n_users if n_users is not None else max(pop.max(initial=0.0), 1.0))
    # Laplace-smoothed share of users who interacted with the item: finite for unseen items
    share = (pop + 1.0) / (total_users + 1.0)
    if head is None:
        head = popularity_bands(pop) == "head"
    return {"self_information": -np.log2(share), "head": np.asarray(head, dtype=bool)}


def _unit_rows(features: sp.spmatrix) -> sp.csr_matrix:
    f = sp.csr_matrix(features, dtype=np.float64)
    norms = np.sqrt(np.asarray(f.multiply(f).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ f)


def _intra_list_diversity(items: np.ndarray, unit: sp.csr_matrix, n_items: int) -> np.ndarray:
    """Mean pairwise cosine distance of each list's items, from one sparse product.

    With unit feature vectors f_i, the sum of cosines over pairs i < j of a list equals
    ``(||sum_i f_i||^2 - sum_i ||f_i||^2) / 2``, so one (lists x items) @ (items x features)
    product gives every list's pairwise similarity without forming the pairs.
    """
    if unit.shape[0] != n_items:
        raise ValueError(f"item_features has {unit.shape[0]} rows, expected {n_items}")
    n, k = items.shape
    real = items >= 0
    rows = np.repeat(np.arange(n), k)[real.ravel()]
    cols = items.ravel()[real.ravel()]
    membership = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n_items))
    summed = membership @ unit
    sq_sum = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    self_sim = membership @ np.asarray(unit.multiply(unit).sum(axis=1)).ravel()
    length = real.sum(axis=1).astype(np.float64)
    pairs = length * (length - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_sim = (sq_sum - self_sim) / 2 / pairs
    return np.where(pairs > 0, 1.0 - mean_sim, np.nan)


def auc_from_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    target: sp.csr_matrix,
    exclude: sp.spmatrix | None = None,
    *,
    batch_size: int = 1024,
) -> np.ndarray:
    """Per-user ROC AUC over the candidate items, from full score rows.

    AUC_u = P(score(positive) > score(negative)), ties counted 1/2, where positives are the
    user's relevant target items and negatives every other candidate item (all items minus
    ``exclude``). It is the Mann-Whitney U statistic divided by ``n_pos * n_neg``; a user with
    no negative item gets NaN.

    Parameters
    ----------
    score_fn
        Maps user indices to a dense ``(len(users), n_items)`` score block (``model.score``).
    users
        User indices (rows of ``target`` / ``exclude`` are indexed by them).
    target
        Relevant items, already cleaned by :func:`relevant_target` (excluded items removed).
    exclude
        Items that are not candidates for each user (their training items).
    batch_size
        Users scored per block at most (memory ``batch_size x n_items`` doubles; lowered so
        a block stays near 4 million cells on large catalogues).
    """
    from scipy.stats import rankdata

    users = np.asarray(users, dtype=np.int64)
    target = sp.csr_matrix(target)
    n_items = target.shape[1]
    ex = sp.csr_matrix(exclude) if exclude is not None else None
    out = np.empty(len(users), np.float64)
    lowest, highest = np.finfo(np.float64).min / 4, np.finfo(np.float64).max / 4
    # ranking a block holds a few float64 copies of it: keep a block near 4M cells (~32 MB)
    batch_size = max(1, min(batch_size, 4_000_000 // max(n_items, 1)))
    for start in range(0, len(users), batch_size):
        block = users[start : start + batch_size]
        scores = np.nan_to_num(np.asarray(score_fn(block), dtype=np.float64), nan=lowest, neginf=lowest, posinf=highest)
        n_ex = np.zeros(len(block))
        if ex is not None:
            ex_rows = ex[block]
            ex_rows.eliminate_zeros()
            r = np.repeat(np.arange(len(block)), np.diff(ex_rows.indptr))
            scores[r, ex_rows.indices] = -np.inf  # below every candidate: ranks shift by n_ex
            n_ex = np.diff(ex_rows.indptr).astype(np.float64)
        ranks = rankdata(scores, method="average", axis=1)
        pos = target[block]
        r = np.repeat(np.arange(len(block)), np.diff(pos.indptr))
        n_pos = np.diff(pos.indptr).astype(np.float64)
        rank_sum = np.bincount(r, weights=ranks[r, pos.indices] - n_ex[r], minlength=len(block))
        n_neg = n_items - n_ex - n_pos
        u_stat = rank_sum - n_pos * (n_pos + 1) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + len(block)] = np.where((n_pos > 0) & (n_neg > 0), u_stat / (n_pos * n_neg), np.nan)
    return out


def evaluate_model(
    model: Any,
    target: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    ks: Sequence[int] | int = (10,),
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    users: np.ndarray | None = None,
    batch_size: int = 4096,
    n_jobs: int = 1,
    item_popularity: np.ndarray | None = None,
    item_features: sp.spmatrix | None = None,
    head_items: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    item_mask: np.ndarray | None = None,
) -> EvalResult:
    """Rank items with a fitted model and score the lists against a target split.

    Parameters
    ----------
    model
        A fitted :class:`recctl.models.base.Recommender`.
    target
        ``(n_users, n_items)`` matrix of the held-out split (``valid`` for tuning, ``test``
        for evaluation); entries > 0 are relevant, their values are graded-NDCG gains.
    exclude
        ``(n_users, n_items)`` items each user may not be recommended (the training split);
        they are masked out of the ranking and removed from the relevant set.
    ks, metrics
        Cut-offs and metric names (see :data:`ALL_METRICS`).
    users
        User indices to evaluate; default every user with at least one relevant item. Users
        without a relevant item are skipped either way.
    batch_size, n_jobs
        Passed to the batched top-K kernel.
    item_popularity
        Training users per item, for novelty / popularity bias; default counted from
        ``exclude`` (the training matrix).
    item_features
        For intra-list diversity.
    head_items
        Boolean mask of head items for popularity bias (default: see :func:`evaluate_rankings`).
    progress
        Called with the number of users ranked so far.
    item_mask
        Boolean vector of the candidate items (``evaluate.candidates``); ``None`` ranks all.

    Returns
    -------
    EvalResult
    """
    metrics = _check_metrics(metrics)
    ks = _check_ks(ks)
    clean = relevant_target(target, exclude)
    n_rel = np.diff(clean.indptr)
    if users is None:
        users = np.nonzero(n_rel > 0)[0]
    else:
        users = np.asarray(users, dtype=np.int64)
        users = users[n_rel[users] > 0]
    n_pop_users = None
    if item_popularity is None and exclude is not None and {"novelty", "popularity_bias"} & set(metrics):
        train = sp.csr_matrix(exclude)
        item_popularity = np.asarray((train > 0).sum(axis=0)).ravel()
        n_pop_users = int((np.diff(train.indptr) > 0).sum())
    # item_mask only when set: duck-typed models (adapters in tests, notebooks) need not take it
    masked = {} if item_mask is None else {"item_mask": item_mask}
    top = model.recommend(
        users, max(ks), exclude=exclude, batch_size=batch_size, n_jobs=n_jobs, progress=progress, **masked
    )
    auc = None
    if "auc" in metrics:
        auc = auc_from_scores(model.score, users, clean, exclude, batch_size=min(batch_size, 1024))
    return evaluate_rankings(
        top.items,
        clean[users],
        ks,
        metrics,
        users=users,
        item_popularity=item_popularity,
        n_popularity_users=n_pop_users,
        item_features=item_features,
        head_items=head_items,
        auc=auc,
    )
