"""Grow a fitted LightFM model's tables for new users and new items.

LightFM keeps one embedding row (and one bias) per *feature column* of its user and item
feature matrices, plus the optimiser state of each row (AdaGrad's accumulated squared
gradients in ``*_gradients``; AdaDelta's two running averages in ``*_gradients`` and
``*_momentum``). It cannot add rows by itself: ``fit_partial`` refuses a feature matrix with a
different number of columns. This module resizes all those arrays together.

Where the old rows go is described by a :class:`GrowPlan`, because it depends on how the
feature matrix is laid out: identity columns first then attribute features (``[I | F]``,
LightFM's own ``Dataset`` helper), attribute features first (``[F | I]``), or no identity
columns at all (pure feature model: nothing to grow, a new item is just a new feature row).
Old rows keep their values *and* their optimiser state, so every old user's and item's
score is unchanged by growing; only continued training changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = [
    "GrowPlan",
    "feature_centroid_init",
    "grow_lightfm",
    "grow_lightfm_side",
    "identity_plan",
    "random_init",
]

Side = Literal["user", "item"]


@dataclass(frozen=True)
class GrowPlan:
    """Where each old row of an embedding table lands in the grown table.

    Attributes
    ----------
    old_to_new
        ``old_to_new[r]`` is the position of old row ``r`` in the grown table.
    n_rows
        Number of rows of the grown table.
    new_rows
        Positions (sorted) of the rows that did not exist before, in the order of the new
        users / items they belong to.
    """

    old_to_new: np.ndarray
    n_rows: int
    new_rows: np.ndarray

    @property
    def is_noop(self) -> bool:
        """True when the table keeps its size and order."""
        return self.n_rows == len(self.old_to_new) and bool(np.all(self.old_to_new == np.arange(self.n_rows)))


def identity_plan(
    n_old: int, n_new: int, n_features: int, *, identity_first: bool = True, identity: bool = True
) -> GrowPlan:
    """Plan for a feature matrix made of per-id identity columns and attribute columns.

    Parameters
    ----------
    n_old, n_new
        Users (or items) the model knows, and how many are added after them.
    n_features
        Attribute feature columns (0 for a pure collaborative model).
    identity_first
        ``True`` for the ``[I | F]`` layout (identity columns, then features): the feature
        rows move down by ``n_new``. ``False`` for ``[F | I]``: rows keep their places.
    identity
        ``False`` when the model has no identity columns (features only): the table does
        not grow at all.

    Returns
    -------
    GrowPlan
    """
    if not identity:
        return GrowPlan(np.arange(n_features, dtype=np.int64), n_features, np.empty(0, np.int64))
    if identity_first:
        old_to_new = np.concatenate([np.arange(n_old), n_old + n_new + np.arange(n_features)]).astype(np.int64)
        new_rows = np.arange(n_old, n_old + n_new, dtype=np.int64)
    else:
        old_to_new = np.arange(n_features + n_old, dtype=np.int64)
        new_rows = np.arange(n_features + n_old, n_features + n_old + n_new, dtype=np.int64)
    return GrowPlan(old_to_new, n_old + n_new + n_features, new_rows)


def random_init(rng: np.random.RandomState, n_rows: int, no_components: int) -> np.ndarray:
    """LightFM's own initialisation: uniform in ``[-0.5, 0.5) / no_components``."""
    return ((rng.rand(n_rows, no_components) - 0.5) / no_components).astype(np.float32)


def feature_centroid_init(
    old_embeddings: np.ndarray,
    old_features: sp.spmatrix,
    new_features: sp.spmatrix,
    old_biases: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initialise new rows from old rows that share their features.

    For every attribute feature ``f`` the centroid ``c_f`` is the weighted mean embedding of
    the old items carrying ``f``; a new item starts at the weighted mean of the centroids of
    its features (and likewise for the bias). A new "red Nike shoe" thus starts among red
    things, Nike things and shoes, which is what a collaborative model without feature
    embeddings can know about it before anyone interacts with it.

    Parameters
    ----------
    old_embeddings
        (n_old, d) embeddings of the known items (or users).
    old_features
        (n_old, f) attribute features of the known items.
    new_features
        (n_new, f) attribute features of the new items (same columns).
    old_biases
        (n_old,) biases of the known items, if any.

    Returns
    -------
    (embeddings, biases, covered)
        ``(n_new, d)`` float32 embeddings, ``(n_new,)`` float32 biases and a boolean mask of
        the new rows that had at least one known feature (the others are zeros: the caller
        initialises them some other way).
    """
    old_f = sp.csr_matrix(old_features, dtype=np.float64)
    new_f = sp.csr_matrix(new_features, dtype=np.float64)
    if old_f.shape[1] != new_f.shape[1]:
        raise ValueError(f"feature columns differ: {old_f.shape[1]} known vs {new_f.shape[1]} new")
    mass = np.asarray(abs(old_f).sum(axis=0)).ravel()  # weight of each feature among old rows
    inv = np.divide(1.0, mass, out=np.zeros_like(mass), where=mass > 0)
    # (f, d) centroid of each feature; features no old row has stay zero
    centroids = sp.diags(inv) @ (abs(old_f).T @ old_embeddings.astype(np.float64))
    usable = abs(new_f) @ sp.diags((mass > 0).astype(np.float64))
    row_mass = np.asarray(usable.sum(axis=1)).ravel()
    covered = row_mass > 0
    norm = sp.diags(np.divide(1.0, row_mass, out=np.zeros_like(row_mass), where=covered))
    emb = np.asarray(norm @ (usable @ centroids), dtype=np.float32)
    if old_biases is None:
        bias = np.zeros(new_f.shape[0], np.float32)
    else:
        bias_centroid = inv * (abs(old_f).T @ old_biases.astype(np.float64))
        bias = np.asarray(norm @ (usable @ bias_centroid), dtype=np.float32).ravel()
    return emb, bias, covered


def _grow_array(old: np.ndarray, plan: GrowPlan, fill: np.ndarray | float) -> np.ndarray:
    shape = (plan.n_rows, *old.shape[1:])
    out = np.empty(shape, dtype=old.dtype)
    new_mask = np.ones(plan.n_rows, bool)
    new_mask[plan.old_to_new] = False
    out[plan.old_to_new] = old
    if isinstance(fill, np.ndarray):
        out[plan.new_rows] = fill.astype(old.dtype, copy=False)
        extra = np.setdiff1d(np.nonzero(new_mask)[0], plan.new_rows)
        out[extra] = 0
    else:
        out[new_mask] = fill
    return out


def grow_lightfm_side(
    model: object,
    side: Side,
    plan: GrowPlan,
    *,
    embeddings: np.ndarray | None = None,
    biases: np.ndarray | None = None,
    rng: np.random.RandomState | None = None,
) -> None:
    """Resize one side's embedding and bias tables (and optimiser state) in place.

    Parameters
    ----------
    model
        A fitted ``lightfm.LightFM``.
    side
        ``"user"`` or ``"item"``.
    plan
        Where the old rows go (see :func:`identity_plan`).
    embeddings
        ``(len(plan.new_rows), d)`` initial embeddings of the new rows; default LightFM's
        small random initialisation (drawn from ``rng``).
    biases
        Initial biases of the new rows; default 0, as LightFM initialises them.
    rng
        Random state for the default initialisation (default: the model's own).

    Notes
    -----
    New rows get fresh optimiser state: with AdaGrad the accumulated squared gradients start
    at 1 (as ``LightFM._initialize`` does), so a new row learns at the full learning rate
    while old rows keep their damped steps; with AdaDelta both accumulators start at 0.
    """
    table = getattr(model, f"{side}_embeddings")
    if table is None:
        raise ValueError("grow a fitted LightFM model (its embeddings are None)")
    if len(plan.old_to_new) != table.shape[0]:
        raise ValueError(f"{side} table has {table.shape[0]} rows but the grow plan describes {len(plan.old_to_new)}")
    if plan.is_noop:
        return
    n_new, d = len(plan.new_rows), table.shape[1]
    if embeddings is None:
        embeddings = random_init(rng or model.random_state, n_new, d)  # type: ignore[attr-defined]
    if embeddings.shape != (n_new, d):
        raise ValueError(f"expected {(n_new, d)} initial {side} embeddings, got {embeddings.shape}")
    bias_init = np.zeros(n_new, np.float32) if biases is None else np.asarray(biases, np.float32)
    adagrad = getattr(model, "learning_schedule", "adagrad") == "adagrad"
    accum = 1.0 if adagrad else 0.0
    setattr(model, f"{side}_embeddings", _grow_array(table, plan, embeddings))
    setattr(model, f"{side}_biases", _grow_array(getattr(model, f"{side}_biases"), plan, bias_init))
    for name in (f"{side}_embedding_gradients", f"{side}_bias_gradients"):
        setattr(model, name, _grow_array(getattr(model, name), plan, accum))
    for name in (f"{side}_embedding_momentum", f"{side}_bias_momentum"):
        setattr(model, name, _grow_array(getattr(model, name), plan, 0.0))


def grow_lightfm(
    model: object,
    *,
    user_plan: GrowPlan | None = None,
    item_plan: GrowPlan | None = None,
    item_embeddings: np.ndarray | None = None,
    item_biases: np.ndarray | None = None,
    user_embeddings: np.ndarray | None = None,
    rng: np.random.RandomState | None = None,
) -> None:
    """Grow both sides of a fitted ``lightfm.LightFM`` in place (see :func:`grow_lightfm_side`)."""
    if user_plan is not None:
        grow_lightfm_side(model, "user", user_plan, embeddings=user_embeddings, rng=rng)
    if item_plan is not None:
        grow_lightfm_side(model, "item", item_plan, embeddings=item_embeddings, biases=item_biases, rng=rng)
