"""Implicit-feedback ALS (Hu, Koren & Volinsky, 2008) through the ``implicit`` library.

Each interaction is a preference of 1 with confidence ``1 + alpha * x`` (``x`` the 0/1 or
weighted interaction); every other pair a preference of 0 with confidence 1. Alternating
least squares fits user and item factors; ``implicit`` solves each side with a conjugate
gradient in compiled code on ``num_threads`` threads. A user's scores are ``u · v_i``.

``implicit`` (0.7) takes the **user x item** CSR matrix (it transposed in versions before 0.5;
this module is written for the current orientation). BLAS is held to one thread during the
fit: ``implicit`` parallelises over users itself, and a threaded BLAS inside each of its threads
oversubscribes the cores (it warns about exactly that).

A visitor known only by a few items (``score_from_items``) gets the exact ALS user solve
against the fixed item factors: ``(YᵀY + Yₛᵀ(C - I)Yₛ + λI) u = Yₛᵀ C p``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.models._similarity import binarize
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["ALSConfig", "ALSModel"]


class ALSConfig(ModelConfig):
    """Parameters of :class:`ALSModel`."""

    kind: Literal["als"] = "als"
    factors: int = Field(default=64, ge=1, description="Latent factors per user and item.")
    regularization: float = Field(default=0.05, ge=0, description="L2 penalty on the factors (lambda).")
    alpha: float = Field(default=10.0, gt=0, description="Confidence of an interaction: 1 + alpha * x.")
    iterations: int = Field(default=15, ge=1, description="Alternating sweeps.")
    use_weights: bool = Field(default=False, description="Interaction weights (true) or 0/1 (false) as x.")
    num_threads: int = Field(
        default=-1, description="Threads of implicit's solver; -1 = all cores (trials then run one at a time)."
    )
    random_state: int | None = Field(default=None, description="Seed; the train stage fills in the experiment seed.")


def _implicit_als() -> Any:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:  # a core dependency; a broken install is the only way here
        from recctl.errors import MissingExtraError

        raise MissingExtraError("ALS (kind: als)", "als", "implicit") from None
    return AlternatingLeastSquares


@register("als")
class ALSModel(Recommender):
    """Implicit-feedback matrix factorisation (see the module docstring).

    Attributes
    ----------
    user_factors_, item_factors_
        float32 factor matrices, (n_users x factors) and (n_items x factors).
    """

    config_class = ALSConfig
    supports_item_history = True
    supports_similar_items = True
    config: ALSConfig

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        from threadpoolctl import threadpool_limits

        cfg = self.config
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        x = x if cfg.use_weights else binarize(x)
        with threadpool_limits(1, "blas"):  # implicit checks BLAS threads when built and when fitting
            model = _implicit_als()(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                num_threads=0 if cfg.num_threads == -1 else cfg.num_threads,
                random_state=cfg.random_state,
            )
            model.fit(x, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        if progress:
            progress(1.0)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        cfg = self.config
        y = self.item_factors_.astype(np.float64)
        a = y.T @ y + cfg.regularization * np.eye(y.shape[1])
        if len(item_idx):
            x = weights.astype(np.float64) if cfg.use_weights else np.ones(len(item_idx))
            conf = 1.0 + cfg.alpha * x
            ys = y[item_idx]
            a += ys.T @ ((conf - 1.0)[:, None] * ys)
            b = ys.T @ conf
            user = np.linalg.solve(a, b)
        else:
            user = np.zeros(y.shape[1])
        return (self.item_factors_ @ user.astype(np.float32)).astype(np.float32)

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors_, axis=1)
        unit = self.item_factors_ / np.maximum(norms, 1e-12)[:, None]
        return (unit[item_idx] @ unit.T).astype(np.float32)
