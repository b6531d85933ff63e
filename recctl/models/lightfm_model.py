"""LightFM: factorisation (WARP, BPR, logistic, WARP-kOS) and the hybrid with features.

**Interactions and weights.** LightFM reads the *sign* of an interaction as the label
(logistic) or as "positive" (WARP, BPR, WARP-kOS), and a separate ``sample_weight`` as how
much each positive counts. So the model is fitted on the 0/1 matrix of (user, item) pairs
and, with ``use_weights: true``, the dataset's aggregated weights go in ``sample_weight``,
rescaled to mean 1 so that the learning rate keeps its meaning whatever the event weights
are. The weight matrix is built from the same COO arrays as the interactions, because
LightFM requires them to be aligned entry by entry. WARP-kOS has no sample weights in
LightFM: there the weights are ignored. The logistic loss needs negatives; implicit data
has none, so ``negatives`` unobserved items per positive are sampled afresh every epoch
(seeded, so still repeatable).

**Hybrid.** ``item_features: true`` (``user_features: true``) represents an item (user) as
the sum of the embeddings of its features; ``identity_features: true`` prepends one
indicator column per item so warm items also get their own embedding (the usual LightFM
hybrid). The feature part of each row is scaled to sum to 1 (``normalize_features``), the
identity keeps weight 1 (see :func:`_feature_matrix` for the measured reason). At scoring
time, an item without training interactions uses its features only (its own identity
embedding was never trained), which is what makes new catalogue items recommendable.

**Scoring** is one matrix product: the user and item representations (biases and
embeddings, through the feature matrices) are computed once after fitting, and a block of
users is scored as ``U[users] @ V.T + item_bias + user_bias``; ``predict`` is never called.

**Threads and repeatability.** By default LightFM trains on all cores (``num_threads: null``,
capped by ``RECCTL_MAX_THREADS``). With ``random_state`` set and ``num_threads: 1`` two fits
give the same model bit for bit; with more threads LightFM's Hogwild updates race, so
results differ slightly from run to run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.errors import RecctlError
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register
from recctl.ranking import resolve_n_jobs

__all__ = ["LightFMConfig", "LightFMModel"]

log = logging.getLogger(__name__)


class LightFMConfig(ModelConfig):
    """Parameters of :class:`LightFMModel` (names follow ``lightfm.LightFM``)."""

    kind: Literal["lightfm"] = "lightfm"
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = Field(default="warp", description="Training loss.")
    no_components: int = Field(default=32, ge=1, description="Embedding size.")
    learning_rate: float = Field(default=0.05, gt=0)
    learning_schedule: Literal["adagrad", "adadelta"] = "adagrad"
    epochs: int = Field(default=20, ge=1, description="Passes over the interactions.")
    item_alpha: float = Field(default=0.0, ge=0, description="L2 penalty on item features.")
    user_alpha: float = Field(default=0.0, ge=0, description="L2 penalty on user features.")
    max_sampled: int = Field(default=10, ge=1, description="WARP: negatives tried per positive.")
    k: int = Field(default=5, ge=1, description="WARP-kOS: k-th positive.")
    n: int = Field(default=10, ge=1, description="WARP-kOS: positives sampled.")
    random_state: int | None = Field(default=None, description="Seed; the train stage fills in the experiment seed.")
    num_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads; null = all cores (capped by RECCTL_MAX_THREADS). 1 is bit-repeatable; more is "
        "faster but LightFM's lock-free updates make runs differ slightly.",
    )
    item_features: bool = Field(default=False, description="Hybrid: represent items through their features.")
    user_features: bool = Field(default=False, description="Hybrid: represent users through their features.")
    identity_features: bool = Field(default=True, description="Hybrid: also give each user/item its own embedding.")
    normalize_features: bool = Field(default=True, description="Scale each row's features to sum to 1.")
    use_weights: bool = Field(default=True, description="Interaction weights as LightFM sample weights.")
    negatives: int = Field(default=1, ge=1, description="logistic: sampled negatives per positive.")


def _feature_matrix(n: int, features: sp.csr_matrix | None, identity: bool, normalize: bool) -> sp.csr_matrix:
    """``[identity | features]`` for LightFM, the feature block's rows scaled to sum to 1.

    The identity column keeps weight 1: a warm row is its own embedding plus the mean of
    its features' embeddings (a cold row: see :func:`_drop_identity`). Normalising the whole
    row instead (identity included, LightFM's usual advice) shrinks the identity to
    ``1 / (1 + n_features)`` and measured worse: Online Retail, time split, NDCG@10 0.087 vs
    0.096 and recall@10 of new items 0.017 vs 0.100; sample shop with user features 0.078
    vs 0.130 (``benchmarks/bench_models_real.py`` protocol, 15 epochs).
    """
    parts = []
    if identity or features is None:
        parts.append(sp.identity(n, dtype=np.float32, format="csr"))
    if features is not None:
        feats = sp.csr_matrix(features, dtype=np.float32)
        parts.append(_row_sum_normalize(feats) if normalize else feats)
    return sp.hstack(parts, format="csr", dtype=np.float32)


def _row_sum_normalize(mat: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(abs(mat).sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ mat, dtype=np.float32)


def _drop_identity(mat: sp.csr_matrix, cold: np.ndarray, n: int) -> sp.csr_matrix:
    """For ``cold`` rows, drop the identity entry (never trained) and keep the row's weight.

    The identity block is the first ``n`` columns (see :func:`_feature_matrix`). A cold row's
    features are scaled up to the row's original total weight (identity included), so a new
    item's representation is as large as a warm item's and it can compete with them: without
    this, on Online Retail (time split) new items reached a top 10 for 0.1% of the users who
    bought one (recall@10 0.0013); with it 10% (0.0995), and overall NDCG@10 rose too.
    """
    if not cold.any():
        return mat
    coo = mat.tocoo()
    total = np.asarray(abs(mat).sum(axis=1)).ravel()
    keep = ~(cold[coo.row] & (coo.col < n))
    out = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=mat.shape, dtype=np.float32)
    left = np.asarray(abs(out).sum(axis=1)).ravel()
    scale = np.ones(mat.shape[0], np.float32)
    grow = cold & (left > 0)
    scale[grow] = total[grow] / left[grow]
    return sp.csr_matrix(sp.diags(scale) @ out, dtype=np.float32)


@register("lightfm")
class LightFMModel(Recommender):
    """LightFM factorisation or hybrid model (see the module docstring).

    Attributes
    ----------
    lightfm_
        The fitted ``lightfm.LightFM`` object (kept so training can continue).
    user_repr_, item_repr_
        (n x no_components) float32 representations used for scoring.
    user_bias_, item_bias_
        Biases matching the representations.
    epochs_done_
        Epochs trained so far.
    """

    config_class = LightFMConfig
    supports_epochs = True
    supports_item_history = True
    supports_similar_items = True
    config: LightFMConfig

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        # capabilities depend on the config: only the hybrid reaches cold rows through features
        self.needs_item_features = self.config.item_features
        self.supports_cold_items = self.config.item_features
        self.supports_cold_users = self.config.user_features

    # -- fitting -------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset) -> None:
        from lightfm import LightFM

        cfg = self.config
        if cfg.user_features and dataset.user_features is None:
            raise RecctlError(
                "lightfm: user_features is true but the dataset has no user features; declare user "
                "attributes under preprocess.features (and re-run `recctl preprocess`) or set "
                "models.<name>.user_features: false."
            )
        x = sp.csr_matrix(dataset.interactions, dtype=np.float32)
        x.eliminate_zeros()
        coo = x.tocoo()
        self._rng = np.random.default_rng(cfg.random_state)
        self._pos = sp.coo_matrix((np.ones(coo.nnz, np.float32), (coo.row, coo.col)), shape=x.shape)
        self._weights = None
        if cfg.use_weights and cfg.loss != "warp-kos" and coo.nnz:
            w = coo.data.astype(np.float64)
            w = w / w.mean() if w.mean() > 0 else np.ones_like(w)
            self._weights = w.astype(np.float32)
        self._item_feat = (
            _feature_matrix(
                dataset.n_items,
                dataset.item_features if cfg.item_features else None,
                cfg.identity_features,
                cfg.normalize_features,
            )
            if cfg.item_features
            else None
        )
        self._user_feat = (
            _feature_matrix(
                dataset.n_users,
                dataset.user_features if cfg.user_features else None,
                cfg.identity_features,
                cfg.normalize_features,
            )
            if cfg.user_features
            else None
        )
        self.item_counts_ = np.asarray((x > 0).sum(axis=0)).ravel()
        self.user_counts_ = np.asarray((x > 0).sum(axis=1)).ravel()
        self.lightfm_ = LightFM(
            no_components=cfg.no_components,
            k=cfg.k,
            n=cfg.n,
            learning_schedule=cfg.learning_schedule,
            loss=cfg.loss,
            learning_rate=cfg.learning_rate,
            item_alpha=cfg.item_alpha,
            user_alpha=cfg.user_alpha,
            max_sampled=cfg.max_sampled,
            random_state=cfg.random_state,
        )
        self.epochs_done_ = 0

    def _epoch_data(self) -> tuple[sp.coo_matrix, sp.coo_matrix | None]:
        if self.config.loss != "logistic":
            weights = None
            if self._weights is not None:
                weights = sp.coo_matrix((self._weights, (self._pos.row, self._pos.col)), shape=self._pos.shape)
            return self._pos, weights
        return self._with_negatives()

    def _with_negatives(self) -> tuple[sp.coo_matrix, sp.coo_matrix]:
        """Positives (+1) and sampled unobserved pairs (-1) for the logistic loss."""
        pos = self._pos
        n_users, n_items = pos.shape
        n_neg = pos.nnz * self.config.negatives
        users = np.repeat(pos.row, self.config.negatives)
        items = self._rng.integers(0, n_items, n_neg)
        keys = users.astype(np.int64) * n_items + items
        pos_keys = pos.row.astype(np.int64) * n_items + pos.col
        ok = ~np.isin(keys, pos_keys)
        keys = np.unique(keys[ok])
        neg_rows, neg_cols = keys // n_items, keys % n_items
        rows = np.concatenate([pos.row, neg_rows]).astype(np.int32)
        cols = np.concatenate([pos.col, neg_cols]).astype(np.int32)
        data = np.concatenate([np.ones(pos.nnz, np.float32), -np.ones(len(neg_rows), np.float32)])
        pos_w = self._weights if self._weights is not None else np.ones(pos.nnz, np.float32)
        weights = np.concatenate([pos_w, np.ones(len(neg_rows), np.float32)])
        inter = sp.coo_matrix((data, (rows, cols)), shape=pos.shape)
        return inter, sp.coo_matrix((weights, (rows, cols)), shape=pos.shape)

    def _run_epoch(self) -> None:
        inter, weights = self._epoch_data()
        self.lightfm_.fit_partial(
            inter,
            user_features=self._user_feat,
            item_features=self._item_feat,
            sample_weight=weights,
            epochs=1,
            num_threads=resolve_n_jobs(self.config.num_threads),
        )
        self.epochs_done_ += 1
        self._refresh_representations()

    def _refresh_representations(self) -> None:
        cfg = self.config
        item_feat, user_feat = self._item_feat, self._user_feat
        if item_feat is not None and cfg.identity_features:
            item_feat = _drop_identity(item_feat, self.item_counts_ == 0, self.n_items)
        if user_feat is not None and cfg.identity_features:
            user_feat = _drop_identity(user_feat, self.user_counts_ == 0, self.n_users)
        ib, iv = self.lightfm_.get_item_representations(item_feat)
        ub, uv = self.lightfm_.get_user_representations(user_feat)
        self.item_bias_, self.item_repr_ = (
            np.asarray(ib, np.float32),
            np.ascontiguousarray(iv, np.float32),
        )
        self.user_bias_, self.user_repr_ = (
            np.asarray(ub, np.float32),
            np.ascontiguousarray(uv, np.float32),
        )
        norms = np.linalg.norm(self.user_repr_[self.user_counts_ > 0], axis=1)
        self.user_norm_ = float(np.median(norms)) if len(norms) else 1.0

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        self._prepare(dataset)
        for epoch in range(self.config.epochs):
            self._run_epoch()
            if progress:
                progress((epoch + 1) / self.config.epochs)
        self._drop_training_state()

    def iter_fit(self, dataset: Dataset) -> Iterator[int]:
        """Train one epoch at a time (``fit_partial(epochs=1)``), yielding the epochs done.

        The model can score and recommend at every yield, so tuning can evaluate on the
        validation split and stop early. It stops after ``config.epochs`` (the budget), and
        running it to the end gives exactly the model ``fit`` gives.
        """
        self._begin_fit(dataset)
        self._prepare(dataset)
        for _ in range(self.config.epochs):
            self._run_epoch()
            self.is_fitted = True
            yield self.epochs_done_
        self._drop_training_state()

    def _drop_training_state(self) -> None:
        # the matrices are rebuilt from a dataset whenever training continues
        self._pos = self._weights = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # training state is rebuilt from a dataset; the augmented item matrix is derived data
        # keyed by object ids, so it is rebuilt on first use after loading
        for key in ("_pos", "_weights", "_item_feat", "_user_feat", "_rng", "_augmented_cache"):
            state.pop(key, None)
        return state

    # -- scoring -------------------------------------------------------------------------
    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        # Biases are folded into one product, [u, b_u, 1] . [v, 1, b_i] = u.v + b_u + b_i, so
        # a block costs one BLAS call and no extra passes over the (users x items) scores.
        users = np.empty((len(user_idx), self.user_repr_.shape[1] + 2), np.float32)
        users[:, :-2] = self.user_repr_[user_idx]
        users[:, -2] = self.user_bias_[user_idx]
        users[:, -1] = 1.0
        return users @ self._augmented_items().T

    def _augmented_items(self) -> np.ndarray:
        """``[item_repr, 1, item_bias]``, rebuilt whenever the item arrays are replaced."""
        key = (id(self.item_repr_), id(self.item_bias_), self.item_repr_.shape)
        cached = getattr(self, "_augmented_cache", None)
        if cached is None or cached[0] != key:
            aug = np.empty((self.item_repr_.shape[0], self.item_repr_.shape[1] + 2), np.float32)
            aug[:, :-2] = self.item_repr_
            aug[:, -2] = 1.0
            aug[:, -1] = self.item_bias_
            cached = (key, aug)
            self._augmented_cache = cached
        return cached[1]

    def fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """Representations for users known only by their items (rows over the item columns).

        The direction is the weighted mean of the items' embeddings; the length is the
        median length of trained users' embeddings, so the item biases keep the weight they
        have for trained users. Vectorised over many rows (e.g. users with a few fresh
        events, issue 9).
        """
        rows = sp.csr_matrix(rows, dtype=np.float32)
        sums = np.asarray(rows.sum(axis=1)).ravel()
        inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        mean = np.asarray(sp.diags(inv) @ rows @ self.item_repr_, dtype=np.float32)
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        return np.divide(mean * self.user_norm_, norms, out=np.zeros_like(mean), where=norms > 0)

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        row = sp.csr_matrix((weights, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items))
        user = self.fold_in(row)
        return (user @ self.item_repr_.T + self.item_bias_[None, :]).ravel().astype(np.float32)

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_repr_, axis=1)
        unit = np.divide(
            self.item_repr_,
            norms[:, None],
            out=np.zeros_like(self.item_repr_),
            where=norms[:, None] > 0,
        )
        return unit[item_idx] @ unit.T
