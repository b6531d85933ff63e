"""A simulated day of new events: updated models against a full retrain on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.incremental.drift import DriftRule, compare_models
from recctl.incremental.lightfm_update import LightFMUpdateSettings, update_lightfm
from recctl.models.item_knn import ItemKNNModel
from recctl.models.lightfm_model import LightFMModel
from tests.ties import assert_same_top_k_up_to_ties


def _split(make_shop_fn):
    """Old data, a day (some old users' new events, new users, new items) and a test target."""
    s = make_shop_fn(n_users=600, n_items=150, seed=5)
    x = s["x"].tocoo()
    rng = np.random.default_rng(1)
    test = rng.random(x.nnz) < 0.2
    n_users, n_items = s["x"].shape
    n_old_users, n_old_items = 570, 144  # 30 new users, 6 new items
    day_users = rng.choice(n_old_users, size=20, replace=False)
    in_day = (x.row >= n_old_users) | (x.col >= n_old_items) | (np.isin(x.row, day_users) & (rng.random(x.nnz) < 0.4))

    def mat(mask):
        return sp.csr_matrix((x.data[mask], (x.row[mask], x.col[mask])), shape=(n_users, n_items))

    old = mat(~test & ~in_day)[:n_old_users, :n_old_items]
    grown = mat(~test)
    changed = np.unique(x.row[~test & in_day])
    return s, old, grown, mat(test), changed


def test_lightfm_update_stays_within_the_drift_thresholds(make_shop_fn, make_dataset) -> None:
    s, old, grown, target, changed = _split(make_shop_fn)
    feats = s["item_features"]
    base = LightFMModel(no_components=16, epochs=15, random_state=1).fit(make_dataset(old, feats[: old.shape[1]]))
    ds = make_dataset(grown, feats)
    update_lightfm(base, ds, changed, LightFMUpdateSettings(epochs=5, seed=1))
    retrained = LightFMModel(no_components=16, epochs=15, random_state=1).fit(ds)
    reference = LightFMModel(no_components=16, epochs=15, random_state=2).fit(ds)
    rep = compare_models(
        "lightfm",
        base,
        retrained,
        exclude=grown,
        target=target,
        rule=DriftRule(),
        users=np.arange(ds.n_users),
        reference=reference,
    )
    assert rep.n_users_evaluated > 100
    assert not rep.retrain_needed, rep.reasons
    assert rep.relative_drop <= 0.05 and rep.overlap_ratio >= 0.8


def test_item_knn_incremental_update_equals_a_full_rebuild(make_shop_fn, make_dataset) -> None:
    # a sparse catalogue so that the batch touches few similarity rows: the incremental path runs
    s = make_shop_fn(n_users=500, n_items=600, n_cats=40, seed=2)
    x = s["x"]
    coo = x.tocoo()
    # ten old users' last events, five new users and two new items arrive in the batch
    later = (coo.row < 10) & (np.arange(coo.nnz) % 3 == 0)
    keep = ~later & (coo.row < 495) & (coo.col < 598)
    old = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=(495, 598))
    model = ItemKNNModel(neighbors=20, shrink=5.0).fit(make_dataset(old))
    ds = make_dataset(x)
    model.partial_fit(ds)
    assert model.update_info_["mode"] == "incremental", model.update_info_
    full = ItemKNNModel(neighbors=20, shrink=5.0).fit(ds)
    diff = abs(model.similarity_ - full.similarity_)
    assert diff.max() == pytest.approx(0.0, abs=1e-6)
    users = np.arange(ds.n_users)
    # similarities agree to 1e-6, and many items tie exactly: equal lists up to ties
    assert_same_top_k_up_to_ties(model.recommend(users, 10, exclude=x), full.recommend(users, 10, exclude=x), atol=1e-5)
