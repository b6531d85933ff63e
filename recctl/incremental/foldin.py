"""Fold users into a trained factor model with the item side held fixed.

A user with a handful of new events does not need the whole model retrained: with the item
embeddings ``Y`` and biases ``b`` fixed, the user's vector ``x`` is a small problem of its own
(``d`` unknowns). Three solvers, all vectorised over a batch of users:

* ``mean`` — the weighted mean direction of the user's items, scaled to the typical length
  of the model's user vectors (what ``LightFMModel.fold_in`` does for anonymous users);
* ``ls`` — implicit-feedback least squares (the user step of iALS): minimise
  ``sum_i c_ui (p_ui - x.y_i)^2 + reg |x|^2`` with ``p_ui = 1`` for interacted items,
  0 otherwise, and confidence ``c_ui = 1 + alpha * w_ui``. Closed form, exact for that
  objective, deterministic. The Gram matrix ``Y'Y`` is shared by every user; each user adds
  only the outer products of its own positives.
* ``warp`` — a few hundred steps of pairwise SGD on that user only (WARP-style: the
  hardest of several sampled negatives), started from the ``mean`` vector. It optimises the
  ranking objective LightFM itself was trained with, including the item biases, so the
  folded-in vector lives on the model's own score scale.

Measured on two synthetic shops (users with 3 or 8 known events, items from a LightFM WARP
model, recall@10 of their other events): ``warp`` 0.55-0.60, ``mean`` 0.57-0.60, a full
retrain 0.54-0.59, ``ls`` 0.45-0.50 (it ignores the item biases, which carry popularity).
``warp`` is the default because it also works when the mean direction is a poor summary
(a user with two unrelated tastes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["FoldInConfig", "fold_in_users"]


@dataclass(frozen=True)
class FoldInConfig:
    """Parameters of :func:`fold_in_users`.

    Attributes
    ----------
    method
        ``mean`` (weighted mean direction of the user's items), ``ls`` (closed-form least
        squares) or ``warp`` (pairwise SGD started from ``mean``).
    reg
        L2 regularisation: relative to the trace of ``Y'Y / d`` for ``ls`` (scale-free), on
        the user vector for ``warp``.
    alpha
        Confidence per unit of interaction weight (``ls``).
    steps, learning_rate, n_negatives
        ``warp``: SGD steps per user, step size, negatives sampled per step.
    chunk
        Users solved together (memory ~ ``chunk * d * d`` floats).
    user_norm
        ``mean`` / ``warp``: typical norm of the model's user vectors; the mean direction
        is scaled to it (default: the mean norm of the item vectors).
    seed
        Random seed (``warp`` sampling).
    """

    method: Literal["mean", "ls", "warp"] = "warp"
    reg: float = 0.2
    alpha: float = 10.0
    steps: int = 300
    learning_rate: float = 0.05
    n_negatives: int = 10
    chunk: int = 512
    seed: int = 0
    user_norm: float | None = None


def fold_in_users(
    interactions: sp.spmatrix,
    item_embeddings: np.ndarray,
    item_biases: np.ndarray | None = None,
    *,
    base: np.ndarray | None = None,
    config: FoldInConfig | None = None,
) -> np.ndarray:
    """Solve user vectors with the item side fixed.

    Parameters
    ----------
    interactions
        (n_users, n_items) weights of each user's interactions (rows may be empty; an empty
        row gets the ``base`` vector, or zeros).
    item_embeddings
        (n_items, d) item representations (for a hybrid model, the features-summed ones).
    item_biases
        (n_items,) item biases (used by ``warp``; ``ls`` ranks without them).
    base
        (n_users, d) part of the user vector that is fixed (e.g. the sum of the user's
        attribute-feature embeddings); the solver returns the *total* vector.
    config
        Solver parameters.

    Returns
    -------
    numpy.ndarray
        (n_users, d) float32 user representations.
    """
    cfg = config or FoldInConfig()
    X = sp.csr_matrix(interactions, dtype=np.float64)
    Y = np.asarray(item_embeddings, dtype=np.float64)
    if X.shape[1] != Y.shape[0]:
        raise ValueError(f"interactions have {X.shape[1]} item columns, embeddings {Y.shape[0]} rows")
    b = np.zeros(Y.shape[0]) if item_biases is None else np.asarray(item_biases, np.float64)
    base_arr = np.zeros((X.shape[0], Y.shape[1])) if base is None else np.asarray(base, np.float64)
    if cfg.method == "ls":
        x = _solve_ls(X, Y, base_arr, cfg)
    elif cfg.method in ("mean", "warp"):
        x = _mean_direction(X, Y, base_arr, cfg.user_norm)
        if cfg.method == "warp":
            x = _refine_warp(X, Y, b, x, cfg)
    else:
        raise ValueError(f"unknown fold-in method '{cfg.method}'; use 'mean', 'ls' or 'warp'")
    empty = np.diff(X.indptr) == 0
    x[empty] = base_arr[empty]
    return x.astype(np.float32)


def _mean_direction(X: sp.csr_matrix, Y: np.ndarray, base: np.ndarray, user_norm: float | None) -> np.ndarray:
    sums = np.asarray(abs(X).sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    mean = np.asarray(sp.diags(inv) @ X @ Y)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    target = user_norm if user_norm is not None else float(np.linalg.norm(Y, axis=1).mean())
    return base + np.divide(mean * target, norms, out=np.zeros_like(mean), where=norms > 0)


def _solve_ls(X: sp.csr_matrix, Y: np.ndarray, base: np.ndarray, cfg: FoldInConfig) -> np.ndarray:
    n_users, d = X.shape[0], Y.shape[1]
    gram = Y.T @ Y
    # regularisation scaled by the average eigenvalue of Y'Y, so `reg` means the same thing
    # whatever the embedding scale and catalogue size
    lam = cfg.reg * max(np.trace(gram) / d, 1e-12)
    out = np.zeros((n_users, d))
    for start in range(0, n_users, cfg.chunk):
        rows = X[start : start + cfg.chunk]
        if rows.nnz == 0:
            continue
        conf = rows.copy()
        conf.data = cfg.alpha * np.maximum(conf.data, 0.0)  # c - 1
        items = np.unique(conf.indices)
        Ys = Y[items]
        local = sp.csr_matrix(
            (conf.data, np.searchsorted(items, conf.indices), conf.indptr),
            shape=(conf.shape[0], len(items)),
        )
        # per-user sum of (c-1) * y y' over its positives, through one sparse x dense product
        outer = (Ys[:, :, None] * Ys[:, None, :]).reshape(len(items), d * d)
        A = (local @ outer).reshape(-1, d, d) + gram + lam * np.eye(d)
        ones = local.copy()
        ones.data = ones.data + 1.0  # c = 1 + alpha * w; target p = 1 on positives
        rhs = ones @ Ys
        # solve for the part not explained by the fixed base: target - base.y
        rhs -= np.einsum("nij,nj->ni", A - lam * np.eye(d), base[start : start + rows.shape[0]])
        out[start : start + rows.shape[0]] = (
            base[start : start + rows.shape[0]] + np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
        )
    return out


def _refine_warp(X: sp.csr_matrix, Y: np.ndarray, b: np.ndarray, x: np.ndarray, cfg: FoldInConfig) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed)
    n_users, n_items = X.shape
    counts = np.diff(X.indptr)
    active = np.nonzero(counts > 0)[0]
    if len(active) == 0 or n_items < 2:
        return x
    x = x.copy()
    # keys of (user, item) positives, sorted, to reject sampled "negatives" the user has
    keys = np.sort(np.repeat(np.arange(n_users, dtype=np.int64), counts) * n_items + X.indices)
    acc = np.ones(len(active))  # AdaGrad accumulators, one per user
    starts, lengths = X.indptr[active], counts[active]
    for _ in range(cfg.steps):
        pos = X.indices[starts + (rng.random(len(active)) * lengths).astype(np.int64)]
        negs = rng.integers(0, n_items, size=(len(active), cfg.n_negatives))
        is_pos = np.isin(active[:, None] * n_items + negs, keys)
        xa = x[active]
        s_neg = np.einsum("nd,nkd->nk", xa, Y[negs]) + b[negs]
        s_neg[is_pos] = -np.inf
        hard = np.argmax(s_neg, axis=1)
        neg = negs[np.arange(len(active)), hard]
        valid = np.isfinite(s_neg[np.arange(len(active)), hard])
        diff = np.einsum("nd,nd->n", xa, Y[pos] - Y[neg]) + b[pos] - b[neg]
        # logistic (BPR) gradient on the hardest pair: zero once the pair is well ordered
        g = np.where(valid, 1.0 / (1.0 + np.exp(np.clip(diff, -30, 30))), 0.0)
        grad = g[:, None] * (Y[pos] - Y[neg]) - cfg.reg * xa
        acc += (grad**2).sum(axis=1)
        x[active] = xa + cfg.learning_rate * grad / np.sqrt(acc)[:, None]
    return x
