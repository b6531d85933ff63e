"""Breakdowns of the per-user metrics: by user segment and by item popularity band.

* **User segments** (history length): each model's mean of each metric over the evaluated
  users of a segment (``new``, ``short``, ``medium``, ``long``; see
  :func:`recctl.evaluation.protocol.history_segments`).
* **Item popularity bands**: recall and hit rate restricted to the relevant items of one band
  (``head`` / ``torso`` / ``tail``, see :func:`~recctl.evaluation.protocol.popularity_bands`):
  a user counts in a band when they have a relevant item in it, and only those items count.
  This shows whether a model finds the long-tail items a user wanted, or only the hits.
* **Popularity distribution of recommendations**: the share of recommended items that falls
  in each band and in each popularity decile of the catalogue.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.evaluation.metrics import evaluate_rankings

__all__ = ["BANDS", "SEGMENTS", "band_breakdown", "recommendation_popularity", "segment_breakdown"]

SEGMENTS = ("new", "short", "medium", "long")
BANDS = ("head", "torso", "tail")


def segment_breakdown(per_user: pl.DataFrame, labels: np.ndarray, metric_columns: list[str]) -> list[dict[str, Any]]:
    """Mean of each metric per user segment, for one model.

    Parameters
    ----------
    per_user
        The model's per-user metrics (``user_idx`` + metric columns).
    labels
        Segment label of every user index (aligned with user indices, not rows).
    metric_columns
        Metric columns to average.

    Returns
    -------
    list of dict
        ``{"segment", "n_users", <metric>: mean}`` for each non-empty segment, in
        :data:`SEGMENTS` order.
    """
    frame = per_user.with_columns(pl.Series("segment", labels[per_user[Columns.UserIdx].to_numpy()].astype(str)))
    out = []
    for segment in SEGMENTS:
        part = frame.filter(pl.col("segment") == segment)
        if part.height == 0:
            continue
        row: dict[str, Any] = {"segment": segment, "n_users": part.height}
        for col in metric_columns:
            values = part[col].to_numpy()
            values = values[~np.isnan(values)]
            row[col] = float(values.mean()) if values.size else None
        out.append(row)
    return out


def band_breakdown(items: np.ndarray, target_rows: sp.csr_matrix, bands: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Recall@k and hit rate@k on the relevant items of each popularity band.

    Parameters
    ----------
    items
        ``(n_users, K)`` top-K lists of the evaluated users.
    target_rows
        Their relevant items (rows aligned with ``items``).
    bands
        Band label of every item.
    k
        Cut-off.
    """
    out = []
    target_rows = sp.csr_matrix(target_rows)
    for band in BANDS:
        in_band = (bands == band).astype(np.float64)
        restricted = sp.csr_matrix(target_rows @ sp.diags(in_band))
        restricted.eliminate_zeros()
        if restricted.nnz == 0:
            out.append({"band": band, "n_users": 0, f"recall@{k}": None, f"hit_rate@{k}": None})
            continue
        res = evaluate_rankings(items, restricted, [k], ["recall", "hit_rate"])
        out.append({"band": band, "n_users": res.n_users, **res.mean})
    return out


def recommendation_popularity(
    items: np.ndarray, popularity: np.ndarray, bands: np.ndarray, n_bins: int = 10
) -> dict[str, Any]:
    """Where in the popularity distribution a model's recommendations fall.

    Returns
    -------
    dict
        ``bands``: share of recommended items (padding excluded) in head / torso / tail;
        ``deciles``: share in each tenth of the catalogue sorted by popularity (decile 1 =
        the 10% most popular items); ``n_recommendations``.
    """
    shown = items[items >= 0]
    n = shown.size
    band_share = {b: (float((bands[shown] == b).sum() / n) if n else 0.0) for b in BANDS}
    n_items = len(popularity)
    order = np.lexsort((np.arange(n_items), -np.asarray(popularity)))
    rank = np.empty(n_items, np.int64)
    rank[order] = np.arange(n_items)
    decile = np.minimum(rank * n_bins // max(n_items, 1), n_bins - 1)
    counts = np.bincount(decile[shown], minlength=n_bins)
    return {
        "bands": band_share,
        "deciles": (counts / n).tolist() if n else [0.0] * n_bins,
        "n_recommendations": int(n),
    }
