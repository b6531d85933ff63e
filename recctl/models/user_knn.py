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
from recctl.models._similarity import (
    DEFAULT_BLOCK_ENTRIES,
    binarize,
    fit_term_weights,
    row_norms,
    sparse_row_topn,
)
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["UserKNNConfig", "UserKNNModel"]


class UserKNNConfig(ModelConfig):
    """Parameters of :class:`UserKNNModel`."""

    kind: Literal["user_knn"] = "user_knn"
    neighbors: int = Field(default=50, ge=1, description="Neighbours per user.")
    shrink: float = Field(default=0.0, ge=0, description="Cosine shrinkage: sim = dot / (|a||b| + shrink).")
    weighting: Literal["none", "tfidf", "bm25"] = Field(default="none", description="Weighting of user vectors.")
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    use_weights: bool = Field(default=True, description="Interaction weights (true) or 0/1 (false).")


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
        self.term_weights_ = fit_term_weights(self.user_items_, cfg.weighting, cfg.bm25_k1, cfg.bm25_b)
        self.vectors_ = self.term_weights_.transform(self.user_items_)
        self.vectors_t_ = self.vectors_.T.tocsr()
        self.norms_ = row_norms(self.vectors_).astype(np.float32)
        if progress:
            progress(1.0)

    def _neighbour_scores(self, query: sp.csr_matrix, self_idx: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        n_users = self.vectors_.shape[0]
        qn = row_norms(query).astype(np.float32)
        out = np.empty((query.shape[0], self.n_items), np.float32)
        # sub-blocks bound the sparse similarity block to about DEFAULT_BLOCK_ENTRIES entries
        step = max(1, DEFAULT_BLOCK_ENTRIES // max(n_users, 1))
        for start in range(0, query.shape[0], step):
            sl = slice(start, start + step)
            neigh = sparse_row_topn(
                query[sl] @ self.vectors_t_,
                cfg.neighbors,
                row_norms=qn[sl],
                col_norms=self.norms_,
                shrink=cfg.shrink,
                self_cols=None if self_idx is None else self_idx[sl],
            )
            out[sl] = (neigh @ self.user_items_).toarray()
        return out

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._neighbour_scores(self.vectors_[user_idx], user_idx)

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights if self.config.use_weights else np.ones_like(weights)
        row = sp.csr_matrix((w, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items))
        return self._neighbour_scores(self.term_weights_.transform(row), None).ravel()

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        # fitting only stores (weighted) vectors; redoing it on the grown data is exact and cheap
        self._fit(dataset, progress)
