"""Content-based recommendations from item features (categories, brands, tags, TF-IDF text).

Each item is its feature vector, scaled to unit length (optionally with an IDF weight per
feature so rare features count more than ubiquitous ones). A user's profile is the sum of
the vectors of the items they interacted with, weighted by the interaction weight; an item
scores the cosine between the profile and its vector. Items need no interactions to be
scored, so new catalogue items are recommended from day one.

Many items share the same features (same category, same brand), so their content scores
tie; ties are broken by a tiny popularity term (``popularity_tiebreak``), never enough to
reorder items with different content scores by more than that amount.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.models._similarity import binarize, fit_term_weights, l2_normalize_rows
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["ContentConfig", "ContentModel"]

#: item vectors are scored through a dense copy up to this many entries (64M = 256 MB)
_DENSE_MAX_ENTRIES = 1 << 26


class ContentConfig(ModelConfig):
    """Parameters of :class:`ContentModel`."""

    kind: Literal["content"] = "content"
    feature_weighting: Literal["none", "idf"] = Field(
        default="none", description="Weight features by inverse item frequency before normalising."
    )
    use_weights: bool = Field(default=True, description="Weight a user's items by interaction weight.")
    popularity_tiebreak: float = Field(
        default=1e-4,
        ge=0,
        le=1.0,
        description="Popularity prior added (0..this); tiny values only break ties.",
    )


@register("content")
class ContentModel(Recommender):
    """Content-based model on ``dataset.item_features`` (see the module docstring).

    Attributes
    ----------
    item_vectors_
        (n_items x n_features) unit-length item vectors.
    user_items_
        Training interactions the user profiles are built from.
    popularity_
        Item popularity in [0, 1], used only to break ties.
    """

    config_class = ContentConfig
    needs_item_features = True
    supports_cold_items = True
    supports_item_history = True
    supports_similar_items = True
    supports_incremental = True
    config: ContentConfig

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        cfg = self.config
        feats = sp.csr_matrix(dataset.item_features, dtype=np.float32)
        if cfg.feature_weighting == "idf":
            idf = np.maximum(fit_term_weights(feats, "tfidf").idf, 0.0).astype(np.float32)
            feats = sp.csr_matrix(feats @ sp.diags(idf), dtype=np.float32)
        self.item_vectors_ = l2_normalize_rows(feats)
        self.item_vectors_t_ = self.item_vectors_.T.tocsr()
        self.__dict__.pop("_dense_t", None)
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        self.user_items_ = x if cfg.use_weights else binarize(x)
        counts = np.asarray((x > 0).sum(axis=0)).ravel().astype(np.float64)
        self.popularity_ = (counts / max(counts.max(), 1.0)).astype(np.float32)
        if progress:
            progress(1.0)

    def _profile_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        profile = l2_normalize_rows(rows @ self.item_vectors_)
        dense_items = self._dense_item_vectors_t()
        if dense_items is not None:
            # BLAS on a dense (features x items) copy: ~20x faster than the sparse x sparse
            # product, whose output is nearly dense anyway
            scores = profile.toarray() @ dense_items
        else:
            scores = (profile @ self.item_vectors_t_).toarray().astype(np.float32)
        scores += self.config.popularity_tiebreak * self.popularity_[None, :]
        return scores

    def _dense_item_vectors_t(self) -> np.ndarray | None:
        """A dense copy of the item vectors (features x items) when it fits the budget."""
        n_features, n_items = self.item_vectors_t_.shape
        if n_features * n_items > _DENSE_MAX_ENTRIES:
            return None
        cached = self.__dict__.get("_dense_t")
        if cached is None:
            cached = np.ascontiguousarray(self.item_vectors_t_.toarray(), dtype=np.float32)
            self._dense_t = cached
        return cached

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_dense_t", None)  # a cache: rebuilt on first use, not worth storing
        return state

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._profile_scores(self.user_items_[user_idx])

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights if self.config.use_weights else np.ones_like(weights)
        row = sp.csr_matrix((w, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items))
        return self._profile_scores(row).ravel()

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        sims = (self.item_vectors_[item_idx] @ self.item_vectors_t_).toarray().astype(np.float32)
        return sims + self.config.popularity_tiebreak * self.popularity_[None, :]

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        # profiles are computed at scoring time from the stored interactions; refitting only
        # renormalises the (grown) feature matrix and recounts popularity: exact and cheap
        self._fit(dataset, progress)
