"""EASE: the closed-form linear item-item model (Steck, 2019).

``B = I - P / diag(P)`` with ``P = (XᵀX + l2·I)⁻¹`` and ``diag(B) = 0``; a user's scores are
``x_u B``. One dense ``n_items x n_items`` inversion: a strong baseline for catalogues up to
tens of thousands of items. Above ``max_items`` the model refuses to fit, with a message
naming the sparse alternatives, instead of running the machine out of memory.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.errors import ConfigError
from recctl.models._similarity import binarize
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["EASEConfig", "EASEModel"]

log = logging.getLogger(__name__)

#: below this many items the inversion runs in float64 (exact); above, float32 halves memory
_FLOAT64_MAX_ITEMS = 2000


class EASEConfig(ModelConfig):
    """Parameters of :class:`EASEModel`."""

    kind: Literal["ease"] = "ease"
    l2: float = Field(default=500.0, gt=0, description="L2 regularisation added to the Gram diagonal.")
    max_items: int = Field(default=20000, ge=1, description="Refuse catalogues larger than this.")
    use_weights: bool = Field(default=False, description="Interaction weights (true) or 0/1 (false).")


@register("ease")
class EASEModel(Recommender):
    """EASE linear autoencoder (see the module docstring).

    Attributes
    ----------
    weights_
        Dense (n_items x n_items) float32 item-item weight matrix, zero diagonal.
    """

    config_class = EASEConfig
    supports_item_history = True
    supports_similar_items = True
    config: EASEConfig

    def _matrix(self, dataset: Dataset) -> sp.csr_matrix:
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        return x if self.config.use_weights else binarize(x)

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        cfg = self.config
        n = dataset.n_items
        if n > cfg.max_items:
            gib = n * n * 4 * 3 / 2**30
            raise ConfigError(
                f"ease: the catalogue has {n} items, above models.<name>.max_items="
                f"{cfg.max_items}; EASE inverts a dense {n} x {n} matrix (about {gib:.1f} GiB "
                "of memory). Use kind: item_knn (sparse, top-N neighbours) or kind: lightfm "
                "for this catalogue, or raise max_items if the machine has the memory."
            )
        x = self._matrix(dataset)
        dtype = np.float64 if n <= _FLOAT64_MAX_ITEMS else np.float32
        gram = (x.T @ x).toarray().astype(dtype)
        gram[np.diag_indices(n)] += cfg.l2
        # the Gram matrix plus a positive diagonal is symmetric positive definite: Cholesky
        # inversion is twice as fast as a general inverse and numerically stable
        factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        precision = scipy.linalg.cho_solve(factor, np.eye(n, dtype=dtype), overwrite_b=True, check_finite=False)
        weights = precision / (-np.diag(precision))[None, :]
        weights[np.diag_indices(n)] = 0.0
        self.weights_ = np.ascontiguousarray(weights, dtype=np.float32)
        self.user_items_ = x
        if progress:
            progress(1.0)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_items_[user_idx] @ self.weights_, dtype=np.float32)

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights if self.config.use_weights else np.ones_like(weights)
        row = sp.csr_matrix((w, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items))
        return np.asarray(row @ self.weights_, dtype=np.float32).ravel()

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        # row i of B: how strongly having item i predicts each other item
        return self.weights_[item_idx].astype(np.float32)
