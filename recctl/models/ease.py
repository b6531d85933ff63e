"""EASE: the closed-form linear item-item model (Steck, 2019).

``B = I - P / diag(P)`` with ``P = (XᵀX + l2·I)⁻¹`` and ``diag(B) = 0``; a user's scores are
``x_u B``. One dense inversion over the items with training interactions (catalogue items
nobody touched have an all-zero Gram row and get no weight: leaving them out saves time and
keeps the matrix invertible whatever ``l2``).

The inversion runs in float32: a Cholesky factorisation (LAPACK ``spotrf``), the inverse of
the triangular factor (recursively, through BLAS triangular products) and ``P = L⁻ᵀ L⁻¹`` as
blocked matrix products over the triangle, in the Gram matrix's own memory: about ``n³`` flops
and ``4 n²`` bytes plus half that in temporaries (20,000 items: 1.6 + 0.8 GB). The previous
path (a float64 or float32 ``cho_solve`` against an identity matrix) cost ``2.3 n³`` flops and
three ``n x n`` matrices. Before
fitting, the memory it needs is compared with what the machine has available; when it would
not fit, a ``ConfigError`` says so and names the sparse alternatives.
"""

from __future__ import annotations

import logging
import os
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

__all__ = ["EASEConfig", "EASEModel", "available_memory", "ease_weights"]

log = logging.getLogger(__name__)

#: columns of the triangular product computed per block (a block of 1,024 columns of 20,000
#: rows is 80 MB)
_BLOCK = 1024


class EASEConfig(ModelConfig):
    """Parameters of :class:`EASEModel`."""

    kind: Literal["ease"] = "ease"
    l2: float = Field(default=500.0, gt=0, description="L2 regularisation added to the Gram diagonal.")
    max_items: int = Field(
        default=50000,
        ge=1,
        description="Refuse catalogues with more trained items than this (the memory check applies below it too).",
    )
    use_weights: bool = Field(default=False, description="Interaction weights (true) or 0/1 (false).")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _lower_inverse(low: np.ndarray) -> int:
    """Invert a lower-triangular matrix in place, recursively through matrix products; LAPACK's info.

    ``[[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [-C⁻¹ B A⁻¹, C⁻¹]]``: the off-diagonal block is two
    triangular matrix products (BLAS ``strmm``), which run at matrix-product speed, where
    OpenBLAS's ``strtri`` ran 2-4x slower on the same matrices (measured at 4,000 items: 5.1 s
    against 1.4 s); small blocks go to ``strtri``.
    """
    n = low.shape[0]
    if n <= 256:
        inv, info = scipy.linalg.lapack.strtri(low, lower=1)
        low[...] = inv
        return int(info)
    h = n // 2
    info = _lower_inverse(low[:h, :h]) or _lower_inverse(low[h:, h:])
    if info:
        return info
    off = scipy.linalg.blas.strmm(1.0, low[:h, :h], low[h:, :h], side=1, lower=1)  # B A⁻¹
    low[h:, :h] = scipy.linalg.blas.strmm(-1.0, low[h:, h:], off, side=0, lower=1)  # -C⁻¹ B A⁻¹
    return 0


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's ``B`` from a dense float32 Gram matrix, computed in ``gram``'s memory (it is consumed).

    Raises
    ------
    ConfigError
        When ``gram + l2 I`` is not positive definite in float32 (``l2`` too small for the scale).
    """
    n = gram.shape[0]
    gram[np.diag_indices(n)] += np.float32(l2)
    # a C-ordered symmetric matrix is its own transpose: hand LAPACK the Fortran-ordered view so it
    # works in place; its lower triangle is the matrix's upper one, equal by symmetry
    work = gram.T
    chol, info = scipy.linalg.lapack.spotrf(work, lower=1, clean=1, overwrite_a=1)
    if info == 0:
        info = _lower_inverse(chol)
    if info != 0:
        raise ConfigError(
            f"ease: XᵀX + l2·I is not positive definite in float32 (LAPACK info {info}): l2={l2:g} is too small "
            "for the scale of the interactions. Raise models.<name>.l2 (typical values 10-5,000)."
        )
    inv = chol  # L⁻¹, lower triangular
    # P = L⁻ᵀ L⁻¹ by column blocks: P[:, J] needs the rows of L⁻¹ from J's first row down (the
    # rest are zero); each block's product is finished before it overwrites L⁻¹'s upper triangle
    # and its own diagonal block, which later blocks never read
    for j0 in range(0, n, _BLOCK):
        j1 = min(n, j0 + _BLOCK)
        inv[:j1, j0:j1] = inv[j0:, :j1].T @ inv[j0:, j0:j1]
    for j0 in range(0, n, _BLOCK):  # mirror the upper triangle into the lower one
        j1 = min(n, j0 + _BLOCK)
        inv[j1:, j0:j1] = inv[j0:j1, j1:].T
    precision = inv
    diag = np.diag(precision).copy()
    precision /= -diag[None, :]
    precision[np.diag_indices(n)] = 0.0
    return precision


@register("ease")
class EASEModel(Recommender):
    """EASE linear autoencoder (see the module docstring).

    Attributes
    ----------
    weights_
        Dense (n_active x n_active) float32 item-item weight matrix over ``active_``, zero diagonal.
    active_
        Indices of the items with training interactions (the rows / columns of ``weights_``).
    """

    config_class = EASEConfig
    supports_item_history = True
    supports_similar_items = True
    config: EASEConfig

    def _matrix(self, dataset: Dataset) -> sp.csr_matrix:
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        return x if self.config.use_weights else binarize(x)

    def _check_size(self, n: int) -> None:
        cfg = self.config
        need = n * n * 6 + 2 * n * _BLOCK * 4 + (256 << 20)
        free = available_memory()
        gib = need / 2**30
        if n > cfg.max_items or (free is not None and need > free):
            why = (
                f"above models.<name>.max_items={cfg.max_items}"
                if n > cfg.max_items
                else f"more than the {(free or 0) / 2**30:.1f} GiB available"
            )
            raise ConfigError(
                f"ease: {n:,} items have training interactions; EASE inverts a dense {n:,} x {n:,} float32 matrix, "
                f"about {gib:.1f} GiB, {why}. Use kind: rp3beta or kind: item_knn (sparse, top-N neighbours) or "
                "kind: als (factors) for this catalogue, raise preprocess.min_item_interactions, or run on a "
                "machine with more memory (and raise max_items)."
            )

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        if np.float32(self.config.l2) == 0:
            raise ConfigError(
                f"ease: l2={self.config.l2:g} is 0 in float32 (the precision EASE inverts in); raise "
                "models.<name>.l2 (typical values 10-5,000)."
            )
        x = self._matrix(dataset)
        active = np.flatnonzero(np.diff(x.tocsc().indptr) > 0)
        self._check_size(len(active))
        xa = x[:, active].tocsr()
        gram = np.ascontiguousarray((xa.T @ xa).toarray(), dtype=np.float32)
        self.weights_ = ease_weights(gram, self.config.l2)
        self.active_ = active.astype(np.int64)
        self.user_items_ = xa
        if progress:
            progress(1.0)

    def _expand(self, block: np.ndarray) -> np.ndarray:
        out = np.zeros((block.shape[0], self.n_items), np.float32)
        out[:, self.active_] = block
        return out

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._expand(np.asarray(self.user_items_[user_idx] @ self.weights_, dtype=np.float32))

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights if self.config.use_weights else np.ones_like(weights)
        pos = np.searchsorted(self.active_, item_idx)
        known = (pos < len(self.active_)) & (self.active_[np.minimum(pos, len(self.active_) - 1)] == item_idx)
        row = sp.csr_matrix(
            (w[known], (np.zeros(int(known.sum()), np.int64), pos[known])), shape=(1, len(self.active_))
        )
        return self._expand(np.asarray(row @ self.weights_, dtype=np.float32)).ravel()

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        # row i of B: how strongly having item i predicts each other item (0 for untrained items)
        out = np.zeros((len(item_idx), self.n_items), np.float32)
        pos = np.searchsorted(self.active_, item_idx)
        known = (pos < len(self.active_)) & (self.active_[np.minimum(pos, len(self.active_) - 1)] == item_idx)
        out[np.ix_(np.flatnonzero(known), self.active_)] = self.weights_[pos[known]]
        return out
