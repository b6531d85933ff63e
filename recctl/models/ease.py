"""EASE: the closed-form linear item-item model (Steck, 2019).

``B = I - P / diag(P)`` with ``P = (XᵀX + l2·I)⁻¹`` and ``diag(B) = 0``; a user's scores are
``x_u B``. One dense inversion over the items with training interactions (catalogue items
nobody touched have an all-zero Gram row and get no weight: leaving them out saves time and
keeps the matrix invertible whatever ``l2``).

The inversion runs in float32, in the dense Gram matrix's own memory (``4 n²`` bytes; 20,000
items: 1.6 GB, no other ``n x n`` array; the sparse product it is made from is counted at up to
half that): a Cholesky factorisation, the inverse of the triangular factor and ``P = L⁻ᵀ L⁻¹``,
each a recursive block algorithm whose work is triangular solves, triangular products and
symmetric rank-k updates on large blocks, at matrix-product speed: about ``n³`` flops in all.
The block routines are called in place on sub-blocks through :mod:`recctl.models._blas`
(scipy's wrappers copy every sub-block, and OpenBLAS's own ``spotrf`` ran at about 40% of
matrix-product speed on 6,000 items). ``python -m benchmarks.bench_ease`` times it against the
previous paths.
Before fitting, the memory it needs is compared with what the machine has available; when it
would not fit, a ``ConfigError`` says so and names the sparse alternatives.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.errors import ConfigError
from recctl.models import _blas
from recctl.models._similarity import binarize
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["EASEConfig", "EASEModel", "available_memory", "ease_weights"]

log = logging.getLogger(__name__)

#: columns mirrored per block (a block of 1,024 columns of 20,000 rows is 80 MB)
_BLOCK = 1024
#: the inversion's speed assumed by tune's budget (a 2-core machine under some load does 1-2e11)
_FLOPS_PER_S = 1e11
#: blocks at most this large go to LAPACK's own routine in the recursive algorithms
_LEAF = 512


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
    recency_half_life: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Score a trained user's history by recency: the item of their k-th most recent event (k = 0 for the "
            "latest) weighs 0.5^(k / recency_half_life); 0 = every item alike. Needs per-event timestamps."
        ),
    )


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


def _split(n: int) -> int:
    """Where a recursive block algorithm splits ``n`` rows: about half, on a multiple of 64 when that large."""
    h = n // 2
    return h // 64 * 64 if h >= 64 else h


def _cholesky(a: np.ndarray) -> int:
    """Lower Cholesky factor of ``a`` in place, recursively; LAPACK's ``info`` (0 = positive definite).

    ``[[A, ·], [B, C]] = L Lᵀ`` with ``L = [[L₁, 0], [B L₁⁻ᵀ, L₂]]``, ``L₂ = chol(C - B L₁⁻ᵀ L₁⁻¹ Bᵀ)``:
    one triangular solve and one symmetric rank-k update per level, both at matrix-product speed
    on large blocks (OpenBLAS's ``spotrf`` ran at about 40% of it on 6,000 items).
    """
    n = a.shape[0]
    if n <= _LEAF:
        return _blas.potrf(a)
    h = _split(n)
    info = _cholesky(a[:h, :h])
    if info:
        return info
    _blas.trsm("R", "T", 1.0, a[:h, :h], a[h:, :h])
    _blas.syrk("N", -1.0, a[h:, :h], 1.0, a[h:, h:])
    info = _cholesky(a[h:, h:])
    return info + h if info else 0


def _lower_inverse(a: np.ndarray) -> int:
    """Invert a lower-triangular matrix in place, recursively; LAPACK's ``info``.

    ``[[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [-C⁻¹ B A⁻¹, C⁻¹]]``: two triangular solves with the blocks
    before they are inverted.
    """
    n = a.shape[0]
    if n <= _LEAF:
        return _blas.trtri(a)
    h = _split(n)
    _blas.trsm("R", "N", 1.0, a[:h, :h], a[h:, :h])  # B A⁻¹
    _blas.trsm("L", "N", -1.0, a[h:, h:], a[h:, :h])  # -C⁻¹ B A⁻¹
    return _lower_inverse(a[:h, :h]) or _lower_inverse(a[h:, h:])


def _gram_of_inverse(a: np.ndarray) -> int:
    """``Lᵀ L`` of the lower-triangular ``a`` into its lower triangle, in place, recursively.

    With ``L = [[A, 0], [B, C]]``: ``Lᵀ L = [[AᵀA + BᵀB, ·], [CᵀB, CᵀC]]``, computed in that order
    so every block is read before it is overwritten.
    """
    n = a.shape[0]
    if n <= _LEAF:
        return _blas.lauum(a)
    h = _split(n)
    info = _gram_of_inverse(a[:h, :h])
    _blas.syrk("T", 1.0, a[h:, :h], 1.0, a[:h, :h])
    _blas.trmm("L", "T", 1.0, a[h:, h:], a[h:, :h])
    return info or _gram_of_inverse(a[h:, h:])


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's ``B`` from a dense float32 Gram matrix, computed in ``gram``'s memory (it is consumed).

    Raises
    ------
    ConfigError
        When ``gram + l2 I`` is not positive definite in float32 (``l2`` too small for the scale).
    """
    n = gram.shape[0]
    if gram.dtype != np.float32 or not gram.flags.c_contiguous:
        raise TypeError("ease_weights needs a C-ordered float32 Gram matrix")
    gram[np.diag_indices(n)] += np.float32(l2)
    # a C-ordered symmetric matrix is its own transpose: the Fortran-ordered view is the same
    # matrix, and the in-place routines work on its lower triangle (the C-ordered upper one)
    work = gram.T
    info = _cholesky(work) or _lower_inverse(work)
    if info != 0:
        raise ConfigError(
            f"ease: XᵀX + l2·I is not positive definite in float32 (LAPACK info {info}): l2={l2:g} is too small "
            "for the scale of the interactions. Raise models.<name>.l2 (typical values 10-5,000)."
        )
    _gram_of_inverse(work)  # P = L⁻ᵀ L⁻¹ = (XᵀX + l2·I)⁻¹ in the C-ordered upper triangle
    precision = gram
    for j0 in range(0, n, _BLOCK):  # mirror the upper triangle into the lower one
        j1 = min(n, j0 + _BLOCK)
        precision[j1:, j0:j1] = precision[j0:j1, j1:].T
        square = precision[j0:j1, j0:j1]
        below = np.tril_indices(j1 - j0, -1)
        square[below] = square.T[below]
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

    def __setstate__(self, state: dict[str, Any]) -> None:
        # files written before the in-place inversion hold Fortran-ordered weights, which
        # `csr @ weights` copies whole on every scoring call (seconds per block at 20k items):
        # one C-ordered copy at load makes old files score like new ones
        self.__dict__.update(state)
        weights = state.get("weights_")
        if isinstance(weights, np.ndarray) and not weights.flags.c_contiguous:
            self.weights_ = np.ascontiguousarray(weights)

    @classmethod
    def estimate_fit_seconds(cls, config: ModelConfig, dataset: Dataset) -> float | None:
        """About ``n³`` float32 flops at :data:`_FLOPS_PER_S`, ``n`` = items with training interactions."""
        n = int(np.count_nonzero(np.bincount(dataset.interactions.indices, minlength=dataset.n_items)))
        return 1.0 + n**3 / _FLOPS_PER_S

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
        dense = (xa.T @ xa).toarray()  # Fortran-ordered (the product is CSC): symmetric, so its
        gram = dense.T if dense.flags.f_contiguous else dense  # transpose is the C-ordered Gram, no copy
        self.weights_ = ease_weights(gram, self.config.l2)
        self.active_ = active.astype(np.int64)
        self.user_items_ = self._recency(dataset, xa, active) if self.config.recency_half_life > 0 else xa
        if progress:
            progress(1.0)

    def _recency(self, dataset: Dataset, xa: sp.csr_matrix, active: np.ndarray) -> sp.csr_matrix:
        """``xa`` with each user's items weighted by how recent their last event is (see the config)."""
        from recctl.columns import Columns

        events = dataset.events
        if events is None or not events.height:
            log.warning(
                "ease: recency_half_life needs per-event timestamps (events.parquet); the histories are scored "
                "unweighted. Re-run `recctl preprocess` to write events.parquet."
            )
            return xa
        # each (user, item) at its last event; events with equal timestamps keep their file order
        frame = (
            events.select(Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp)
            .sort([Columns.UserIdx, Columns.Timestamp], maintain_order=True)
            .unique(subset=[Columns.UserIdx, Columns.ItemIdx], keep="last", maintain_order=True)
        )
        users = frame[Columns.UserIdx].to_numpy().astype(np.int64)
        items = frame[Columns.ItemIdx].to_numpy().astype(np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        ends = np.r_[starts[1:], len(users)]
        lengths = ends - starts
        age = np.repeat(ends, lengths) - 1 - np.arange(len(users))  # 0 for each user's latest item
        weight = np.power(0.5, age / self.config.recency_half_life).astype(np.float32)
        pos = np.searchsorted(active, items)
        known = (pos < len(active)) & (active[np.minimum(pos, len(active) - 1)] == items)
        recency = sp.csr_matrix((weight[known], (users[known], pos[known])), shape=xa.shape, dtype=np.float32)
        return sp.csr_matrix(xa.multiply(recency), dtype=np.float32)

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
        pos = np.searchsorted(self.active_, item_idx)
        known = (pos < len(self.active_)) & (self.active_[np.minimum(pos, len(self.active_) - 1)] == item_idx)
        if len(self.active_) == self.n_items and known.all():  # every item trained: B's rows as they are
            return np.asarray(self.weights_[pos], np.float32)  # (a copy: the caller masks in place)
        out = np.zeros((len(item_idx), self.n_items), np.float32)
        out[np.ix_(np.flatnonzero(known), self.active_)] = self.weights_[pos[known]]
        return out
