"""The drift guard: how far is an incrementally updated model from a full retrain?

An update is an approximation of what a full retrain on the same data would give. The guard
measures the gap two ways and applies a rule to it:

* **quality** — one ranking metric (e.g. ``ndcg@10``) of both models on the same held-out
  target (the test split), and the relative drop of the updated model;
* **agreement** — how much the two models' top-K lists overlap for the same users: mean
  Jaccard@K (set overlap) and mean rank-biased overlap (RBO, top-weighted, ``p = 0.9``).

Overlap needs a yardstick. A stochastic model (LightFM) retrained with another seed on the
*same* data does not give the same lists either: on the sample shop two such retrains share
only about a third of their top-10. So, when a ``reference`` model is given (a second full
retrain with another seed), the overlap is judged relative to that seed-to-seed overlap
(``overlap_ratio``: 1.0 means "as close to the retrain as retraining again would be");
deterministic models (popularity, item-kNN) are judged on the raw Jaccard.

The rule (:class:`DriftRule`) says a full retrain is needed when the metric drops by more than
``max_metric_drop`` (relative) or the overlap (ratio) falls under ``min_overlap``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["DriftReport", "DriftRule", "compare_models", "jaccard_at_k", "rbo_at_k"]


def _matches(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # (n, K, K) boolean: a[i, r] == b[i, s], padding (-1) never matches
    return (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)


def jaccard_at_k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard overlap of two top-K item matrices (``-1`` padding ignored).

    Two empty lists overlap fully (1.0).

    Examples
    --------
    >>> jaccard_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])).round(3).tolist()
    [0.5]
    """
    a, b = np.asarray(a), np.asarray(b)
    inter = _matches(a, b).sum(axis=(1, 2))
    union = (a >= 0).sum(axis=1) + (b >= 0).sum(axis=1) - inter
    return np.divide(inter, union, out=np.ones(len(a)), where=union > 0)


def rbo_at_k(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Per-row extrapolated rank-biased overlap of two top-K lists (Webber et al., 2010).

    ``RBO_ext = X_K / K * p^K + (1 - p) / p * sum_{d<=K} X_d / d * p^d`` where ``X_d`` is the
    overlap of the first ``d`` items. Identical lists score 1, disjoint lists 0; agreement at
    the top weighs more than agreement further down.

    Examples
    --------
    >>> float(rbo_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 3]]))[0])
    1.0
    """
    a, b = np.asarray(a), np.asarray(b)
    k = a.shape[1]
    if k == 0:
        return np.ones(len(a))
    cum = _matches(a, b).cumsum(axis=1).cumsum(axis=2)
    depth = np.arange(1, k + 1)
    overlap = cum[:, depth - 1, depth - 1]  # X_d for d = 1..K
    weights = p**depth
    return overlap[:, -1] / k * p**k + (1 - p) / p * (overlap / depth * weights).sum(axis=1)


@dataclass(frozen=True)
class DriftRule:
    """When an update is too far from a full retrain.

    Attributes
    ----------
    metric
        ``name@k`` of the quality metric compared on the test split (e.g. ``ndcg@10``).
    max_metric_drop
        Largest acceptable relative drop, ``(retrained - updated) / retrained``.
    min_overlap
        Smallest acceptable mean Jaccard@K between the two models' lists, relative to the
        seed-to-seed overlap when a reference retrain is given.
    """

    metric: str = "ndcg@10"
    max_metric_drop: float = 0.05
    min_overlap: float = 0.8


@dataclass
class DriftReport:
    """The gap between an updated and a retrained model (see the module docstring)."""

    model: str
    metric: str
    updated: float
    retrained: float
    relative_drop: float
    jaccard: float
    rbo: float
    reference_jaccard: float | None
    overlap_ratio: float
    k: int
    n_users_compared: int
    n_users_evaluated: int
    retrain_needed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _parse_metric(metric: str) -> tuple[str, int]:
    from recctl.metric_registry import parse_metric_at_k

    return parse_metric_at_k(metric, objective=True)


def compare_models(
    name: str,
    updated: Any,
    retrained: Any,
    *,
    exclude: sp.spmatrix,
    target: sp.spmatrix,
    rule: DriftRule,
    users: np.ndarray,
    overlap_k: int = 10,
    reference: Any = None,
    n_jobs: int = 1,
) -> DriftReport:
    """Compare an updated model with a full retrain on the same data.

    Parameters
    ----------
    name
        Model name (for the report).
    updated, retrained
        Fitted :class:`~recctl.models.base.Recommender` objects over the same index space.
    exclude
        (n_users, n_items) items the users have seen (masked from both rankings).
    target
        (n_users, n_items) held-out interactions for the quality metric.
    rule
        The thresholds.
    users
        Users whose top-K lists are compared (e.g. changed users plus a random sample).
    overlap_k
        K of the overlap measures.
    reference
        Optional second full retrain with another seed: the yardstick of the overlap.
    n_jobs
        Threads for the top-K kernel.

    Returns
    -------
    DriftReport
    """
    from recctl.evaluation.metrics import evaluate_model, metric_key

    metric, k = _parse_metric(rule.metric)
    users = np.asarray(users, np.int64)
    a = updated.recommend(users, overlap_k, exclude=exclude, n_jobs=n_jobs).items
    b = retrained.recommend(users, overlap_k, exclude=exclude, n_jobs=n_jobs).items
    jac = float(jaccard_at_k(a, b).mean()) if len(users) else 1.0
    rbo = float(rbo_at_k(a, b).mean()) if len(users) else 1.0
    ref_jac = None
    ratio = jac
    if reference is not None:
        c = reference.recommend(users, overlap_k, exclude=exclude, n_jobs=n_jobs).items
        ref_jac = float(jaccard_at_k(b, c).mean()) if len(users) else 1.0
        ratio = jac / ref_jac if ref_jac > 0 else 1.0
    key = metric_key(metric, k)
    res_u = evaluate_model(updated, target, exclude, ks=[k], metrics=[metric], n_jobs=n_jobs)
    res_r = evaluate_model(retrained, target, exclude, ks=[k], metrics=[metric], n_jobs=n_jobs)
    upd, ret = float(res_u.mean.get(key, float("nan"))), float(res_r.mean.get(key, float("nan")))
    drop = (ret - upd) / ret if ret > 0 else 0.0
    reasons = []
    if drop > rule.max_metric_drop:
        reasons.append(f"{key} dropped {drop:.1%} vs a full retrain (limit {rule.max_metric_drop:.1%})")
    if ratio < rule.min_overlap:
        shown = f"{jac:.3f}" if ref_jac is None else f"{jac:.3f} ({ratio:.2f} of the seed-to-seed {ref_jac:.3f})"
        reasons.append(f"top-{overlap_k} Jaccard overlap {shown} < {rule.min_overlap}")
    return DriftReport(
        model=name,
        metric=key,
        updated=upd,
        retrained=ret,
        relative_drop=drop,
        jaccard=jac,
        rbo=rbo,
        reference_jaccard=ref_jac,
        overlap_ratio=ratio,
        k=overlap_k,
        n_users_compared=len(users),
        n_users_evaluated=res_u.n_users,
        retrain_needed=bool(reasons),
        reasons=reasons,
    )
