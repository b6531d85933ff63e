"""What is evaluated: which users, which candidate items, what is excluded, how users and
items are grouped into segments.

Every model in one evaluation is scored under the same :class:`EvalProtocol`, so their
per-user metrics are paired and can be compared user by user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recctl.evaluation.metrics import relevant_target

__all__ = [
    "BAND_SHARES",
    "CANDIDATE_RULES",
    "EvalProtocol",
    "build_protocol",
    "candidate_mask",
    "history_segments",
    "item_popularity",
    "popularity_bands",
]

#: cumulative shares of training interactions that close the head and the torso
BAND_SHARES = (0.5, 0.8)

#: what each ``evaluate.candidates`` rule means, in the words the protocol states
CANDIDATE_RULES = {
    "all": "every catalogue item",
    "trained": "items with at least one training interaction",
    "allow_list": "the items of the allow-list",
}


def candidate_mask(
    rule: str, train: sp.spmatrix, allowed: np.ndarray | None = None
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The items models may rank under ``evaluate.candidates`` (``None`` = every item).

    Parameters
    ----------
    rule
        ``all``, ``trained`` (items with a training interaction) or ``allow_list``.
    train
        The training interactions (their columns are the catalogue).
    allowed
        ``allow_list``: item indices on the list (ids not in the catalogue already dropped).

    Returns
    -------
    (mask or None, dict)
        A boolean vector over the items, and its statement for the protocol.
    """
    n_items = train.shape[1]
    if rule == "all":
        mask = None
    elif rule == "trained":
        mask = np.asarray((sp.csr_matrix(train) > 0).sum(axis=0)).ravel() > 0
    elif rule == "allow_list":
        mask = np.zeros(n_items, bool)
        mask[np.asarray(allowed if allowed is not None else [], np.int64)] = True
    else:
        raise ValueError(f"unknown candidate rule '{rule}'; one of {', '.join(CANDIDATE_RULES)}")
    n = n_items if mask is None else int(mask.sum())
    return mask, {"rule": rule, "definition": CANDIDATE_RULES[rule], "n_items": n}


def item_popularity(train: sp.spmatrix) -> tuple[np.ndarray, int]:
    """Return (distinct training users per item, number of users with any training item)."""
    t = sp.csr_matrix(train)
    counts = np.asarray((t > 0).sum(axis=0)).ravel().astype(np.int64)
    return counts, int((np.diff(t.indptr) > 0).sum())


def popularity_bands(counts: np.ndarray, shares: tuple[float, float] = BAND_SHARES) -> np.ndarray:
    """Label each item ``head``, ``torso`` or ``tail`` by its share of training interactions.

    Items are sorted by count (descending, ties by lower index). The **head** is the most
    popular items that together hold the first ``shares[0]`` (50%) of all interactions, the
    **torso** the next ones up to ``shares[1]`` (80%), the **tail** the rest, including every
    item with no training interaction. An item belongs to the band in which its first
    interaction falls, so the head always holds at least one item when there is any count.

    Examples
    --------
    >>> popularity_bands(np.array([1, 10, 0, 5, 4])).tolist()
    ['tail', 'head', 'tail', 'torso', 'torso']
    """
    counts = np.asarray(counts, dtype=np.float64)
    labels = np.full(counts.shape, "tail", dtype=object)
    total = counts.sum()
    if total <= 0:
        return labels
    order = np.lexsort((np.arange(len(counts)), -counts))
    before = (np.cumsum(counts[order]) - counts[order]) / total  # share held by more popular items
    sorted_labels = np.where(before < shares[0], "head", np.where(before < shares[1], "torso", "tail"))
    sorted_labels[counts[order] <= 0] = "tail"
    labels[order] = sorted_labels
    return labels


def history_segments(n_train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Group users by the length of their training history.

    ``new``: no training item (a cold user). Others split at the 1/3 and 2/3 quantiles of
    the history length of the non-new users into ``short`` (<= q1/3), ``medium`` and
    ``long`` (> q2/3). With few distinct lengths a band may be empty.

    Returns
    -------
    (labels, thresholds)
        One label per user, and ``{"short_max": ..., "long_min": ...}`` in items.
    """
    n_train = np.asarray(n_train)
    labels = np.full(n_train.shape, "medium", dtype=object)
    warm = n_train > 0
    labels[~warm] = "new"
    if not warm.any():
        return labels, {"short_max": None, "long_min": None}
    q1, q2 = np.quantile(n_train[warm], [1 / 3, 2 / 3], method="lower")
    labels[warm & (n_train <= q1)] = "short"
    labels[warm & (n_train > q2)] = "long"
    return labels, {"short_max": int(q1), "long_min": int(q2) + 1}


@dataclass
class EvalProtocol:
    """The evaluation setup shared by every model, stated in ``metrics.json`` and the report.

    Attributes
    ----------
    split
        Name of the held-out split scored (``test``; tuning uses ``valid``).
    users
        Indices of the evaluated users: those with at least one relevant held-out item.
    target
        Cleaned relevance matrix (weight > 0, excluded items removed), all users' rows.
    exclude
        Items masked out of each user's ranking (training items), or ``None``.
    ks, metrics
        Cut-offs and metric names.
    """

    split: str
    users: np.ndarray
    target: sp.csr_matrix
    exclude: sp.csr_matrix | None
    ks: list[int]
    metrics: list[str]
    n_users_total: int
    n_items: int
    n_test_users: int
    n_test_pairs: int
    n_test_pairs_seen: int
    popularity: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    n_popularity_users: int = 0
    bands: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=object))
    user_segments: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=object))
    segment_thresholds: dict[str, Any] = field(default_factory=dict)
    candidates: np.ndarray | None = field(repr=False, default=None)
    candidate_info: dict[str, Any] = field(
        default_factory=lambda: {"rule": "all", "definition": "every catalogue item"}
    )
    n_test_pairs_not_candidates: int = 0
    split_info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Plain-data statement of the protocol (for ``metrics.json`` and the CLI)."""
        exclusion = "items the user interacted with in train" if self.exclude is not None else "none"
        band_counts = {b: int((self.bands == b).sum()) for b in ("head", "torso", "tail")}
        return {
            "split": self.split,
            "users": "users with at least one relevant test item (weight > 0) that is not excluded",
            "n_users_evaluated": int(len(self.users)),
            "n_users_total": self.n_users_total,
            "n_users_with_test_items": self.n_test_users,
            "candidate_items": f"{self.candidate_info['definition']} "
            f"({self.candidate_info.get('n_items', self.n_items):,} of {self.n_items:,}) minus the excluded ones",
            "candidates": self.candidate_info,
            "n_items": self.n_items,
            "n_test_pairs_not_candidates": self.n_test_pairs_not_candidates,
            "excluded": exclusion,
            "n_test_pairs": self.n_test_pairs,
            "n_test_pairs_excluded": self.n_test_pairs_seen,
            **({"splits": self.split_info} if self.split_info else {}),
            "relevance": "binary: test weight > 0; graded (ndcg_graded): gain = test weight",
            "ks": self.ks,
            "metrics": self.metrics,
            "ties": "broken by lower item index in the ranking; AUC counts ties as 1/2",
            "popularity_bands": {
                "definition": f"items by training users, most popular first: head = first "
                f"{BAND_SHARES[0]:.0%} of interactions, "
                f"torso = up to {BAND_SHARES[1]:.0%}, tail = rest",
                "n_items": band_counts,
            },
            "user_segments": {
                "definition": "training history length (items) of the evaluated users: new = 0; "
                "short <= its 1/3 quantile; long > its 2/3 quantile; medium between",
                **self.segment_thresholds,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """Alias of :meth:`describe`."""
        return self.describe()


def build_protocol(
    target: sp.spmatrix,
    train: sp.spmatrix,
    ks: list[int],
    metrics: list[str],
    *,
    split: str = "test",
    exclude_seen: bool = True,
    candidates: str = "all",
    allowed: np.ndarray | None = None,
    split_info: dict[str, Any] | None = None,
) -> EvalProtocol:
    """Fix the users, candidate items and exclusions every model is evaluated under.

    Parameters
    ----------
    target
        ``(n_users, n_items)`` held-out interactions.
    train
        ``(n_users, n_items)`` training interactions (popularity, history length, exclusion).
    ks, metrics
        Cut-offs and metric names.
    split
        Name of the held-out split, for the record.
    exclude_seen
        Mask training items out of the ranking (and out of the relevant set).
    candidates, allowed
        Which items models may rank (see :func:`candidate_mask`). Relevant held-out items
        outside the candidates stay in the relevant set: a model that cannot reach them pays
        for it, and the protocol counts them.
    split_info
        How the splits were made (the preprocess summary's ``split``), stated in the protocol.
    """
    train = sp.csr_matrix(train)
    raw = sp.csr_matrix(target)
    if raw.shape != train.shape:
        raise ValueError(f"target has shape {raw.shape}, train {train.shape}")
    exclude = train if exclude_seen else None
    positives = relevant_target(raw)
    clean = relevant_target(raw, exclude)
    users = np.nonzero(np.diff(clean.indptr) > 0)[0].astype(np.int64)
    mask, cand_info = candidate_mask(candidates, train, allowed)
    outside = 0 if mask is None else int((~mask[clean.indices]).sum())
    counts, n_pop_users = item_popularity(train)
    n_train = np.diff(train.indptr)
    # thresholds come from the evaluated users, so each segment holds about a third of them
    segments = np.full(raw.shape[0], "", dtype=object)
    segments[users], thresholds = history_segments(n_train[users])
    return EvalProtocol(
        split=split,
        users=users,
        target=clean,
        exclude=exclude,
        ks=list(ks),
        metrics=list(metrics),
        n_users_total=int(raw.shape[0]),
        n_items=int(raw.shape[1]),
        n_test_users=int((np.diff(positives.indptr) > 0).sum()),
        n_test_pairs=int(positives.nnz),
        n_test_pairs_seen=int(positives.nnz - clean.nnz),
        popularity=counts,
        n_popularity_users=n_pop_users,
        bands=popularity_bands(counts),
        user_segments=segments,
        segment_thresholds=thresholds,
        candidates=mask,
        candidate_info=cand_info,
        n_test_pairs_not_candidates=outside,
        split_info=dict(split_info or {}),
    )
