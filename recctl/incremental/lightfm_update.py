"""Update a fitted :class:`~recctl.models.lightfm_model.LightFMModel` with a grown dataset.

Three steps, each cheap compared with a full retrain:

1. **Grow** the LightFM tables for the users and items appended at the end of the index
   (:mod:`recctl.incremental.grow`). New rows start where the model can place them best:
   in a hybrid model a new item's own (identity) embedding starts at zero, so it is
   represented by its features exactly as LightFM scores a cold item; in a pure
   collaborative model a new item starts at the centroid of the known items sharing its
   catalogue features (:func:`~recctl.incremental.grow.feature_centroid_init`), and at
   LightFM's small random initialisation when it has no known feature.
2. **Fold in** every user with new events: solve the user's vector with the item side fixed
   (:func:`~recctl.incremental.foldin.fold_in_users`), and write it back into the user's
   identity row so that training can continue from it.
3. **Continue training** (``lightfm_mode: fit_partial``): a few epochs of LightFM's own
   ``fit_partial`` on the changed users' whole histories plus a *replay* sample of unchanged
   users' histories (``replay_ratio`` old pairs per changed pair), so that item embeddings
   move toward the new data without forgetting the old. ``lightfm_mode: fold_in`` stops
   after step 2 and leaves every item embedding untouched.

The result is an approximation of a full retrain; :mod:`recctl.incremental.drift` measures
how close it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.incremental.foldin import FoldInConfig, fold_in_users
from recctl.incremental.grow import (
    GrowPlan,
    feature_centroid_init,
    grow_lightfm_side,
    identity_plan,
    random_init,
)

__all__ = ["LightFMUpdateSettings", "update_lightfm"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LightFMUpdateSettings:
    """How :func:`update_lightfm` updates a model (mirrors the ``update:`` config section)."""

    mode: Literal["fit_partial", "fold_in"] = "fit_partial"
    epochs: int = 5
    replay_ratio: float = 1.0
    fold_in: FoldInConfig = FoldInConfig()
    seed: int = 0


def _side_plan(n_old: int, n_total: int, features: sp.csr_matrix | None, identity: bool) -> GrowPlan:
    """The grow plan of one side (``features`` None: a model without features on that side)."""
    if features is not None:
        return identity_plan(n_old, n_total - n_old, features.shape[1], identity_first=True, identity=identity)
    return identity_plan(n_old, n_total - n_old, 0)


def _item_plan(model: Any, grown: Dataset) -> GrowPlan:
    # _check_grown refused a model that uses features the grown dataset lacks
    features = grown.item_features if model.config.item_features else None
    return _side_plan(model.n_items, grown.n_items, features, model.config.identity_features)


def _user_plan(model: Any, grown: Dataset) -> GrowPlan:
    features = grown.user_features if model.config.user_features else None
    return _side_plan(model.n_users, grown.n_users, features, model.config.identity_features)


def _check_grown(model: Any, grown: Dataset) -> None:
    from recctl.errors import ArtifactError

    if grown.n_users < model.n_users or grown.n_items < model.n_items:
        raise ArtifactError(
            f"the update dataset has {grown.n_users} users / {grown.n_items} items but the model "
            f"was trained on {model.n_users} / {model.n_items}; the model does not belong to "
            "this workdir. Re-run `recctl train`."
        )
    for side, flag, feats in (
        ("item", model.config.item_features, grown.item_features),
        ("user", model.config.user_features, grown.user_features),
    ):
        if flag and feats is None:
            raise ArtifactError(
                f"lightfm model uses {side} features but the update dataset has none; "
                "re-run `recctl preprocess` "
                "and `recctl train`."
            )


def _new_item_init(
    model: Any, grown: Dataset, plan: GrowPlan, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    lfm, n_old = model.lightfm_, model.n_items
    n_new, d = len(plan.new_rows), lfm.no_components
    if model.config.item_features:
        # hybrid: identity embedding 0 -> the new item is its features, like any cold item
        return np.zeros((n_new, d), np.float32), np.zeros(n_new, np.float32)
    emb, bias = random_init(rng, n_new, d), np.zeros(n_new, np.float32)
    if grown.item_features is not None and n_new:
        f_emb, f_bias, covered = feature_centroid_init(
            lfm.item_embeddings[:n_old],
            grown.item_features[:n_old],
            grown.item_features[n_old:],
            lfm.item_biases[:n_old],
        )
        emb[covered], bias[covered] = f_emb[covered], f_bias[covered]
    return emb, bias


def _feature_matrices(model: Any, grown: Dataset) -> None:
    from recctl.models.lightfm_model import _feature_matrix

    cfg = model.config
    model._item_feat = (
        _feature_matrix(grown.n_items, grown.item_features, cfg.identity_features, cfg.normalize_features)
        if cfg.item_features
        else None
    )
    model._user_feat = (
        _feature_matrix(grown.n_users, grown.user_features, cfg.identity_features, cfg.normalize_features)
        if cfg.user_features
        else None
    )


def _write_user_vectors(model: Any, users: np.ndarray, vectors: np.ndarray) -> int:
    """Store solved *total* user vectors in the users' identity rows; returns how many."""
    lfm, cfg = model.lightfm_, model.config
    if not cfg.user_features:
        lfm.user_embeddings[users] = vectors
        return len(users)
    if not cfg.identity_features:
        return 0  # a features-only user has no row of its own to move
    feat = sp.csr_matrix(model._user_feat[users])
    w_id = np.asarray(feat[np.arange(len(users)), users]).ravel()
    # vector = w_id * own_row + (the feature part); solve for own_row
    feature_part = np.asarray(feat @ lfm.user_embeddings) - w_id[:, None] * lfm.user_embeddings[users]
    ok = w_id > 0
    lfm.user_embeddings[users[ok]] = ((vectors[ok] - feature_part[ok]) / w_id[ok, None]).astype(np.float32)
    return int(ok.sum())


def _training_pairs(
    grown: Dataset, changed: np.ndarray, ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Users to train on: every changed user, plus unchanged users replayed whole."""
    counts = np.diff(grown.interactions.indptr)
    n_changed_pairs = int(counts[changed].sum())
    mask = counts > 0
    mask[changed] = False
    pool = rng.permutation(np.nonzero(mask)[0])
    target = ratio * n_changed_pairs
    if target <= 0 or len(pool) == 0:
        return np.sort(changed), 0
    # whole users (not single pairs), so WARP never samples a replayed user's own positive
    # as a negative; take users until the replayed pairs reach the target
    n_take = int(np.searchsorted(np.cumsum(counts[pool]), target) + 1)
    replay = pool[:n_take]
    return np.sort(np.concatenate([changed, replay])), len(replay)


def update_lightfm(
    model: Any,
    grown: Dataset,
    changed_users: np.ndarray,
    settings: LightFMUpdateSettings,
    *,
    progress: Any = None,
) -> dict[str, Any]:
    """Grow, fold in and (optionally) continue training a LightFM model, in place.

    Parameters
    ----------
    model
        A fitted ``LightFMModel`` trained on the first ``model.n_users`` users and
        ``model.n_items`` items of ``grown``.
    grown
        The dataset after the batch: old users and items at their old indices, new ones
        appended; ``interactions`` holds old and new events.
    changed_users
        Indices of users with new events (new users included).
    settings
        Update settings.
    progress
        Optional callback with the fraction done.

    Returns
    -------
    dict
        What was done: new users / items, users folded in, epochs, training pairs.
    """
    _check_grown(model, grown)
    rng_np = np.random.RandomState(settings.seed)
    rng = np.random.default_rng(settings.seed)
    n_old_users, n_old_items = model.n_users, model.n_items
    item_plan, user_plan = _item_plan(model, grown), _user_plan(model, grown)
    item_emb, item_bias = _new_item_init(model, grown, item_plan, rng_np)
    grow_lightfm_side(model.lightfm_, "item", item_plan, embeddings=item_emb, biases=item_bias)
    user_emb = (
        np.zeros((len(user_plan.new_rows), model.lightfm_.no_components), np.float32)
        if model.config.user_features
        else None
    )
    grow_lightfm_side(model.lightfm_, "user", user_plan, embeddings=user_emb, rng=rng_np)

    x = sp.csr_matrix(grown.interactions, dtype=np.float32)
    x.eliminate_zeros()
    model.n_users, model.n_items = grown.n_users, grown.n_items
    model.item_counts_ = np.asarray((x > 0).sum(axis=0)).ravel()
    model.user_counts_ = np.asarray((x > 0).sum(axis=1)).ravel()
    _feature_matrices(model, grown)
    model._refresh_representations()
    if progress:
        progress(0.1)

    changed = np.unique(np.asarray(changed_users, np.int64))
    changed = changed[model.user_counts_[changed] > 0]
    fold_cfg = FoldInConfig(**{**settings.fold_in.__dict__, "user_norm": model.user_norm_, "seed": settings.seed})
    base = None
    if model.config.user_features and model._user_feat is not None:
        # the part of a user's vector that comes from its attribute features stays fixed
        base = np.asarray(model._user_feat[changed] @ model.lightfm_.user_embeddings)
        w_id = np.asarray(model._user_feat[changed][np.arange(len(changed)), changed]).ravel()
        base -= w_id[:, None] * model.lightfm_.user_embeddings[changed]
    vectors = fold_in_users(x[changed], model.item_repr_, model.item_bias_, base=base, config=fold_cfg)
    n_folded = _write_user_vectors(model, changed, vectors)
    model._refresh_representations()
    if progress:
        progress(0.3)

    info: dict[str, Any] = {
        "mode": settings.mode,
        "exact": False,
        "n_new_users": int(grown.n_users - n_old_users),
        "n_new_items": int(grown.n_items - n_old_items),
        "n_changed_users": int(len(changed)),
        "n_folded_in": n_folded,
        "epochs": 0,
        "n_train_users": 0,
        "n_replay_users": 0,
        "n_train_pairs": 0,
    }
    if settings.mode == "fit_partial" and settings.epochs > 0 and len(changed):
        users, n_replay = _training_pairs(grown, changed, settings.replay_ratio, rng)
        sub = x[users].tocoo()
        rows = users[sub.row]
        model._pos = sp.coo_matrix((np.ones(sub.nnz, np.float32), (rows, sub.col)), shape=x.shape)
        model._weights = None
        if model.config.use_weights and model.config.loss != "warp-kos" and x.nnz:
            # the same rescaling as a full fit: weights divided by the mean over *all* pairs
            model._weights = (sub.data / x.data.mean()).astype(np.float32)
        model._rng = rng
        for epoch in range(settings.epochs):
            model._run_epoch()
            if progress:
                progress(0.3 + 0.7 * (epoch + 1) / settings.epochs)
        model._drop_training_state()
        info.update(
            epochs=settings.epochs,
            n_train_users=int(len(users)),
            n_replay_users=int(n_replay),
            n_train_pairs=int(sub.nnz),
        )
    log.info("lightfm update: %s", info)
    return info
