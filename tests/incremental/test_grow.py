"""Growing LightFM tables: old scores untouched, new rows initialised sensibly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.incremental.grow import feature_centroid_init, grow_lightfm_side, identity_plan
from recctl.incremental.lightfm_update import LightFMUpdateSettings, update_lightfm
from recctl.models.lightfm_model import LightFMModel

N_OLD_USERS, N_OLD_ITEMS = 350, 110


def _fit(shop, make_dataset, **params):
    x = shop["x"][:N_OLD_USERS, :N_OLD_ITEMS]
    model = LightFMModel(no_components=16, epochs=8, random_state=1, **params)
    return model.fit(make_dataset(x, shop["item_features"][:N_OLD_ITEMS]))


def _grown_without_events(shop, make_dataset):
    x = shop["x"][:N_OLD_USERS, :N_OLD_ITEMS].copy()
    x.resize(shop["x"].shape)  # 50 new users and 10 new items, no new events yet
    return make_dataset(x, shop["item_features"])


def test_identity_plan_layouts() -> None:
    first = identity_plan(3, 2, 4)
    assert first.old_to_new.tolist() == [0, 1, 2, 5, 6, 7, 8] and first.new_rows.tolist() == [3, 4]
    last = identity_plan(3, 2, 4, identity_first=False)
    assert last.old_to_new.tolist() == list(range(7)) and last.new_rows.tolist() == [7, 8]
    assert identity_plan(3, 2, 4, identity=False).is_noop


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("schedule", ["adagrad", "adadelta"])
def test_growing_keeps_old_scores_and_optimiser_state(shop, make_dataset, hybrid: bool, schedule: str) -> None:
    model = _fit(shop, make_dataset, item_features=hybrid, learning_schedule=schedule)
    before = model.score(np.arange(N_OLD_USERS))
    old_state = {k: getattr(model.lightfm_, k).copy() for k in ("item_embedding_gradients", "user_bias_momentum")}
    grown = copy.deepcopy(model)
    update_lightfm(
        grown,
        _grown_without_events(shop, make_dataset),
        np.empty(0, np.int64),
        LightFMUpdateSettings(epochs=0),
    )
    after = grown.score(np.arange(N_OLD_USERS))
    assert after.shape == (N_OLD_USERS, shop["x"].shape[1])
    # a wider item matrix may take another BLAS kernel (OPENBLAS_CORETYPE), so the same dot
    # products can differ in the last float32 bits: compare with a tolerance, not bit for bit
    np.testing.assert_allclose(after[:, :N_OLD_ITEMS], before, rtol=1e-5, atol=1e-5)
    lfm = grown.lightfm_
    n_item_rows = lfm.item_embeddings.shape[0]
    assert all(
        getattr(lfm, name).shape[0] == n_item_rows
        for name in (
            "item_biases",
            "item_embedding_gradients",
            "item_embedding_momentum",
            "item_bias_gradients",
            "item_bias_momentum",
        )
    )
    # old rows keep their accumulated state; new rows start fresh as LightFM._initialize does
    np.testing.assert_array_equal(
        lfm.item_embedding_gradients[:N_OLD_ITEMS],
        old_state["item_embedding_gradients"][:N_OLD_ITEMS],
    )
    np.testing.assert_array_equal(lfm.user_bias_momentum[:N_OLD_USERS], old_state["user_bias_momentum"][:N_OLD_USERS])
    fresh = 1.0 if schedule == "adagrad" else 0.0
    assert np.all(lfm.item_embedding_gradients[N_OLD_ITEMS : N_OLD_ITEMS + 10] == fresh)
    assert np.all(lfm.user_embedding_momentum[N_OLD_USERS:] == 0)


@pytest.mark.parametrize("hybrid", [False, True])
def test_new_items_with_features_rank_by_feature_similarity(shop, make_dataset, hybrid: bool) -> None:
    model = _fit(shop, make_dataset, item_features=hybrid)
    update_lightfm(
        model,
        _grown_without_events(shop, make_dataset),
        np.empty(0, np.int64),
        LightFMUpdateSettings(epochs=0),
    )
    scores = model.score(np.arange(N_OLD_USERS))[:, N_OLD_ITEMS:]
    assert np.abs(scores).mean() > 0.1  # not the zero/random scores of an untrained row
    same = shop["user_cat"][:N_OLD_USERS, None] == shop["item_cat"][None, N_OLD_ITEMS:]
    # a user's own-category new items outscore the other new items for most users
    own = np.where(same, scores, np.nan)
    other = np.where(~same, scores, np.nan)
    wins = np.nanmean(own, axis=1) > np.nanmean(other, axis=1)
    assert wins.mean() > 0.9


def test_feature_centroid_init_marks_rows_without_known_features() -> None:
    old = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    old_f = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    new_f = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1]], np.float32))
    emb, bias, covered = feature_centroid_init(old, old_f, new_f, np.array([2.0, 4.0], np.float32))
    np.testing.assert_allclose(emb[0], [0.5, 0.5])
    assert bias[0] == pytest.approx(3.0)
    assert covered.tolist() == [True, False] and not emb[1].any()


def test_grow_refuses_a_plan_for_another_table(shop, make_dataset) -> None:
    model = _fit(shop, make_dataset)
    with pytest.raises(ValueError, match="grow plan describes"):
        grow_lightfm_side(model.lightfm_, "item", identity_plan(N_OLD_ITEMS + 1, 2, 0))


def test_hybrid_with_user_features_folds_new_users_into_their_identity_rows(shop, make_dataset) -> None:
    n = shop["x"].shape[0]
    user_f = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), shop["user_cat"])), shape=(n, 6))

    def with_users(ds, n_users):
        ds.user_features, ds.user_feature_names = user_f[:n_users], [f"seg={i}" for i in range(6)]
        return ds

    old = shop["x"][:N_OLD_USERS, :N_OLD_ITEMS]
    model = LightFMModel(no_components=16, epochs=8, random_state=1, item_features=True, user_features=True).fit(
        with_users(make_dataset(old, shop["item_features"][:N_OLD_ITEMS]), N_OLD_USERS)
    )
    grown = with_users(make_dataset(shop["x"], shop["item_features"]), n)
    new_users = np.arange(N_OLD_USERS, n)
    info = update_lightfm(model, grown, new_users, LightFMUpdateSettings(epochs=2))
    assert info["n_folded_in"] == len(new_users) and info["n_new_users"] == len(new_users)
    top = model.recommend(new_users, 5, exclude=shop["x"]).items
    assert (shop["item_cat"][top] == shop["user_cat"][new_users, None]).mean() > 0.9
