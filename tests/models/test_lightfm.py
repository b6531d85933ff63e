"""LightFM: losses, weights, hybrid cold items, epoch-wise training, fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.errors import RecctlError
from recctl.models.lightfm_model import LightFMModel
from recctl.models.popularity import PopularityModel


def _fit(dataset, **params):
    base = {"epochs": 10, "no_components": 16, "random_state": 3, "num_threads": 1}  # 1 thread: repeatable
    return LightFMModel(**{**base, **params}).fit(dataset)


def _precision(model, train, test, k=5):
    users = np.nonzero(np.diff(test.indptr))[0]
    top = model.recommend(users, k, exclude=train.interactions)
    hits = np.asarray(test[users[:, None], np.maximum(top.items, 0)].todense()) > 0
    return float((hits & (top.items >= 0)).sum(axis=1).mean() / k)


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic", "warp-kos"])
def test_every_loss_learns_the_planted_tastes(planted_split, loss):
    train, test = planted_split
    model = _fit(train, loss=loss, epochs=15)
    assert _precision(model, train, test) > _precision(PopularityModel().fit(train), train, test)


def test_scores_are_the_batched_representation_product(planted):
    model = _fit(planted)
    users = np.array([0, 7, 99])
    # LightFM's own predict (one user at a time) agrees with the batched matrix product
    for u in users:
        want = model.lightfm_.predict(int(u), np.arange(planted.n_items))
        np.testing.assert_allclose(model.score(np.array([u]))[0], want, rtol=1e-4, atol=1e-4)


def test_iter_fit_to_the_end_equals_fit(planted):
    stepped = LightFMModel(epochs=4, no_components=8, random_state=5, num_threads=1)
    done = list(stepped.iter_fit(planted))
    assert done == [1, 2, 3, 4]
    whole = LightFMModel(epochs=4, no_components=8, random_state=5, num_threads=1).fit(planted)
    users = np.arange(planted.n_users)
    np.testing.assert_array_equal(stepped.score(users), whole.score(users))


def test_iter_fit_model_is_usable_at_every_epoch(planted):
    model = LightFMModel(epochs=3, no_components=8, random_state=5)
    seen = []
    for epoch in model.iter_fit(planted):
        seen.append(model.recommend(np.arange(3), 4).items.copy())
        assert model.epochs_done_ == epoch
    assert len(seen) == 3 and not np.array_equal(seen[0], seen[-1])


def test_sample_weights_change_the_model_and_are_ignored_by_warp_kos(planted):
    users = np.arange(planted.n_users)
    weighted, plain = _fit(planted, use_weights=True), _fit(planted, use_weights=False)
    assert not np.allclose(weighted.score(users), plain.score(users))
    kos_w, kos_p = (
        _fit(planted, loss="warp-kos", use_weights=True),
        _fit(planted, loss="warp-kos", use_weights=False),
    )
    np.testing.assert_array_equal(kos_w.score(users), kos_p.score(users))


def test_hybrid_scores_cold_items_by_their_features(planted, groups):
    model = _fit(planted, item_features=True, epochs=20)
    assert model.supports_cold_items and model.needs_item_features
    scores = model.score(np.arange(planted.n_users))[:, groups.cold]
    user_group = np.arange(planted.n_users) // 30
    own = groups.of(groups.cold)[None, :] == user_group[:, None]
    own_mean = (scores * own).sum(1) / own.sum(1)
    other_mean = (scores * ~own).sum(1) / (~own).sum(1)
    # every user prefers the new items of their own taste group
    assert (own_mean > other_mean).all()
    top = model.similar_items(groups.cold[:1], 4)
    assert (groups.of(top.items[0]) == groups.of(groups.cold[0])).all()


def test_pure_factorisation_does_not_claim_cold_items(planted):
    model = LightFMModel(epochs=1)
    assert not model.supports_cold_items and not model.needs_item_features and not model.supports_cold_users


def test_user_features_flag_and_missing_features_error(planted):
    model = _fit(planted, user_features=True, epochs=3)
    assert model.supports_cold_users
    bare = Dataset(planted.user_ids, planted.item_ids, planted.interactions)
    with pytest.raises(RecctlError, match="user_features"):
        LightFMModel(user_features=True).fit(bare)
    with pytest.raises(RecctlError, match="item features"):
        LightFMModel(item_features=True).fit(bare)


def test_fold_in_recommends_the_group_of_the_given_items(planted, groups):
    model = _fit(planted, epochs=20)
    scores = model.score_from_items(np.array([45, 46, 47]))
    scores[[45, 46, 47]] = -np.inf
    best = np.argsort(-scores)[:5]
    assert (groups.of(best) == 3).mean() >= 0.8
    # batched fold-in of many rows agrees with the one-row path
    rows = planted.interactions[:5]
    folded = model.fold_in(rows)
    assert folded.shape == (5, model.item_repr_.shape[1])
    np.testing.assert_allclose(np.linalg.norm(folded, axis=1), model.user_norm_, rtol=1e-5)


def test_logistic_negatives_never_hit_positives(planted):
    model = LightFMModel(loss="logistic", epochs=1, random_state=1)
    model._begin_fit(planted)
    model._prepare(planted)
    inter, weights = model._epoch_data()
    neg = inter.data < 0
    pos_keys = set(
        zip(
            planted.interactions.tocoo().row.tolist(),
            planted.interactions.tocoo().col.tolist(),
            strict=True,
        )
    )
    assert neg.sum() > 0.7 * planted.interactions.nnz  # a few samples collide with positives and are dropped
    assert not pos_keys & set(zip(inter.row[neg].tolist(), inter.col[neg].tolist(), strict=True))
    np.testing.assert_array_equal(inter.row, weights.row)
    np.testing.assert_array_equal(inter.col, weights.col)


def test_weights_are_rescaled_to_mean_one(planted):
    model = LightFMModel(epochs=1, random_state=1)
    model._begin_fit(planted)
    model._prepare(planted)
    _, weights = model._epoch_data()
    assert isinstance(weights, sp.coo_matrix)
    assert weights.data.mean() == pytest.approx(1.0, rel=1e-5)


def test_feature_matrix_keeps_identity_weight_and_normalises_features():
    from recctl.models.lightfm_model import _drop_identity, _feature_matrix

    feats = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 2], [0, 0, 0]], np.float32))
    mat = _feature_matrix(3, feats, identity=True, normalize=True).toarray()
    np.testing.assert_allclose(mat[:, :3], np.eye(3))
    np.testing.assert_allclose(mat[:, 3:], [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0]])
    cold = _drop_identity(sp.csr_matrix(mat), np.array([False, True, False]), 3).toarray()
    # a cold row is its features only, scaled to the weight a warm row has (identity + features)
    np.testing.assert_allclose(cold[1], [0, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(cold[0], mat[0])


def test_trains_on_all_cores_by_default_and_on_num_threads_when_set(planted, monkeypatch):
    from lightfm import LightFM

    from recctl.ranking import max_threads

    monkeypatch.delenv("RECCTL_MAX_THREADS", raising=False)
    seen: list[int] = []
    real = LightFM.fit_partial

    def spy(self, *args, **kwargs):
        seen.append(kwargs["num_threads"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LightFM, "fit_partial", spy)
    LightFMModel(epochs=1, no_components=4).fit(planted)
    LightFMModel(epochs=1, no_components=4, num_threads=1).fit(planted)
    assert seen == [max_threads(), 1]
