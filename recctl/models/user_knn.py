"""User-user collaborative filtering: "people like you also liked".

A user's ``neighbors`` most similar users (cosine with shrinkage over their item vectors,
optionally TF-IDF / BM25 weighted) vote for items with their similarity as the weight.

The neighbours are found when a block of users is scored, not precomputed at fit time: the
work per user is the same, fit stays cheap, the model never stores an ``n_users x n_users``
matrix, and an anonymous visitor (a list of items) or a grown dataset is handled exactly by
the same code path.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.models._similarity import binarize, fit_term_weights, row_norms
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["UserKNNConfig", "UserKNNModel"]


class UserKNNConfig(ModelConfig):
    """Parameters of :class:`UserKNNModel`."""

    kind: Literal["user_knn"] = "user_knn"
    neighbors: int = Field(default=50, ge=1, description="Neighbours per user.")
    shrink: float = Field(
        default=0.0, ge=0, description="Cosine shrinkage: sim = dot / (|a||b| + shrink)."
    )
    weighting: Literal["none", "tfidf", "bm25"] = Field(
        default="none", description="Weighting of user vectors."
    )
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    use_weights: bool = Field(
        default=True, description="Interaction weights (true) or 0/1 (false)."
    )


@register("user_knn")
class UserKNNModel(Recommender):
    """User-user kNN (see the module docstring).

    Attributes
    ----------
    user_items_
        Training interactions (what neighbours vote with).
    vectors_
        Weighted user vectors used for similarity, and ``norms_`` their lengths.
    """

    config_class = UserKNNConfig
    supports_item_history = True
    supports_incremental = True
    config: UserKNNConfig

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        cfg = self.config
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        self.user_items_ = x if cfg.use_weights else binarize(x)
        self.term_weights_ = fit_term_weights(
            self.user_items_, cfg.weighting, cfg.bm25_k1, cfg.bm25_b
        )
        self.vectors_ = self.term_weights_.transform(self.user_items_)
        self.vectors_t_ = self.vectors_.T.tocsr()
        self.norms_ = row_norms(self.vectors_).astype(np.float32)
        if progress:
            progress(1.0)

    def _neighbour_scores(self, query: sp.csr_matrix, self_idx: np.ndarray | None) -> np.ndarray:
        sims = (query @ self.vectors_t_).toarray()
        qn = row_norms(query).astype(np.float32)
        denom = qn[:, None] * self.norms_[None, :] + np.float32(self.config.shrink)
        np.divide(sims, denom, out=sims, where=denom > 0)
        if self_idx is not None:
            sims[np.arange(len(self_idx)), self_idx] = 0.0
        n_users = sims.shape[1]
        keep = min(self.config.neighbors, n_users)
        if keep < n_users:
            cols = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
            vals = np.take_along_axis(sims, cols, axis=1)
        else:
            cols, vals = np.broadcast_to(np.arange(n_users), sims.shape), sims
        vals = np.where(vals > 0, vals, 0.0).astype(np.float32)
        rows = np.repeat(np.arange(len(sims)), cols.shape[1])
        neigh = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=sims.shape)
        return (neigh @ self.user_items_).toarray().astype(np.float32)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._neighbour_scores(self.vectors_[user_idx], user_idx)

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights if self.config.use_weights else np.ones_like(weights)
        row = sp.csr_matrix(
            (w, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items)
        )
        return self._neighbour_scores(self.term_weights_.transform(row), None).ravel()

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        # fitting only stores (weighted) vectors; redoing it on the grown data is exact and cheap
        self._fit(dataset, progress)
