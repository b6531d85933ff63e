"""EASE against its closed form; content-based model on item features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.errors import ConfigError, RecctlError
from recctl.models.content import ContentModel
from recctl.models.ease import EASEModel
from recctl.models.popularity import PopularityModel


def _precision(model, train, test, k=5):
    users = np.nonzero(np.diff(test.indptr))[0]
    top = model.recommend(users, k, exclude=train.interactions)
    hits = np.asarray(test[users[:, None], np.maximum(top.items, 0)].todense()) > 0
    return float((hits & (top.items >= 0)).sum(axis=1).mean() / k)


def test_ease_matches_the_closed_form(planted):
    model = EASEModel(l2=50.0).fit(planted)
    x = (planted.interactions.toarray() > 0).astype(np.float64)
    p = np.linalg.inv(x.T @ x + 50.0 * np.eye(planted.n_items))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    # items nobody trained on have no weight either way: the model inverts over the others only
    active = np.flatnonzero(x.sum(axis=0) > 0)
    assert len(active) < planted.n_items and model.active_.tolist() == active.tolist()
    np.testing.assert_allclose(model.weights_, b[np.ix_(active, active)], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.score(np.arange(8)), x[:8] @ b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        model.score_from_items(np.array([0, 3]))[None, :], x[[0]] * 0 + b[[0, 3]].sum(axis=0), atol=1e-5
    )


def test_ease_recursive_blocks_match_the_closed_form(planted, monkeypatch):
    # real catalogues go through the recursive block algorithms (leaves of 512 items); small
    # leaves and mirror blocks make the planted data take every branch
    import recctl.models.ease as ease

    monkeypatch.setattr(ease, "_LEAF", 7)
    monkeypatch.setattr(ease, "_BLOCK", 13)
    x = (planted.interactions.toarray() > 0).astype(np.float64)
    active = np.flatnonzero(x.sum(axis=0) > 0)
    xa = x[:, active]
    p = np.linalg.inv(xa.T @ xa + 30.0 * np.eye(len(active)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASEModel(l2=30.0).fit(planted)
    np.testing.assert_allclose(model.weights_, b, rtol=1e-4, atol=1e-6)


def test_ease_cholesky_reports_the_first_failing_minor_like_lapack(monkeypatch):
    import scipy.linalg

    import recctl.models.ease as ease

    monkeypatch.setattr(ease, "_LEAF", 4)
    rng = np.random.default_rng(3)
    m = rng.standard_normal((40, 40))
    a = m @ m.T + 40 * np.eye(40)
    a[25, 25] = -1.0  # the leading minor of order 26 is not positive definite
    expected = scipy.linalg.lapack.dpotrf(a, lower=1)[1]
    work = np.asfortranarray(a, dtype=np.float32)
    assert expected == 26 and ease._cholesky(work) == expected


def test_ease_fortran_ordered_weights_of_old_files_load_c_ordered(planted, tmp_path):
    """Old files hold Fortran-ordered weights; scoring them would copy the matrix on every call."""
    import pickle

    model = EASEModel(l2=50.0).fit(planted)
    expected = model.score(np.arange(planted.n_users))
    model.weights_ = np.asfortranarray(model.weights_)
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.weights_.flags.c_contiguous
    np.testing.assert_array_equal(loaded.score(np.arange(planted.n_users)), expected)


def test_ease_l2_too_small_for_float32_is_a_config_error(planted):
    with pytest.raises(ConfigError, match="l2=1e-60 is 0 in float32"):
        EASEModel(l2=1e-60).fit(planted)


def test_ease_refuses_what_would_not_fit_in_memory(planted, monkeypatch):
    import recctl.models.ease as ease

    monkeypatch.setattr(ease, "available_memory", lambda: 10_000)
    with pytest.raises(ConfigError) as info:
        EASEModel().fit(planted)
    message = str(info.value)
    assert "GiB available" in message and "rp3beta" in message and "item_knn" in message


def test_ease_beats_popularity(planted_split):
    train, test = planted_split
    assert _precision(EASEModel(l2=20.0).fit(train), train, test) > _precision(
        PopularityModel().fit(train), train, test
    )


def test_ease_refuses_large_catalogues_with_advice(planted):
    with pytest.raises(ConfigError) as info:
        EASEModel(max_items=10).fit(planted)
    message = str(info.value)
    assert "52 items have training interactions" in message and "max_items=10" in message
    assert "item_knn" in message and "rp3beta" in message
    assert info.value.exit_code == 3


def test_content_recommends_new_items_of_the_users_taste(planted, groups):
    model = ContentModel().fit(planted)
    scores = model.score(np.arange(planted.n_users))
    user_group = np.arange(planted.n_users) // 30
    cold_scores = scores[:, groups.cold]
    best_cold = groups.cold[np.argmax(cold_scores, axis=1)]
    # (a user's one off-taste purchase can outweigh their taste when it was a big one)
    assert (groups.of(best_cold) == user_group).mean() >= 0.95
    # cold items are in the top-K of some users: new items are recommendable from day one
    top = model.recommend(np.arange(planted.n_users), 10, exclude=planted.interactions)
    assert np.isin(top.items, groups.cold).any()


def test_content_similar_items_share_features(planted, groups):
    model = ContentModel().fit(planted)
    top = model.similar_items(groups.cold, 3)
    assert (groups.of(top.items) == groups.of(groups.cold)[:, None]).all()


def test_content_popularity_breaks_ties_only(planted):
    model = ContentModel().fit(planted)
    no_tie = ContentModel(popularity_tiebreak=0.0).fit(planted)
    diff = model.score(np.arange(10)) - no_tie.score(np.arange(10))
    assert diff.max() <= 1e-4 + 1e-7 and diff.min() >= 0


def test_content_idf_weighting_and_from_items(planted, groups):
    model = ContentModel(feature_weighting="idf").fit(planted)
    scores = model.score_from_items(np.array([15, 16]))
    scores[[15, 16]] = -np.inf
    assert (groups.of(np.argsort(-scores)[:8]) == 1).all()


def test_content_needs_item_features(planted):
    bare = Dataset(planted.user_ids, planted.item_ids, planted.interactions)
    with pytest.raises(RecctlError, match="item features"):
        ContentModel().fit(bare)


def test_content_partial_fit_sees_new_interactions(planted):
    model = ContentModel().fit(planted)
    x = planted.interactions.tolil(copy=True)
    x[0, 50] = 5.0  # user 0 (group 0) buys a group-3 item
    grown = Dataset(planted.user_ids, planted.item_ids, x.tocsr(), item_features=planted.item_features)
    before = model.score(np.array([0]))[0, 55]
    model.partial_fit(grown)
    assert model.score(np.array([0]))[0, 55] > before


def test_content_dense_and_sparse_scoring_paths_agree(planted, monkeypatch):
    import recctl.models.content as content

    dense = ContentModel().fit(planted).score(np.arange(20))
    monkeypatch.setattr(content, "_DENSE_MAX_ENTRIES", 0)
    sparse = ContentModel().fit(planted).score(np.arange(20))
    np.testing.assert_allclose(dense, sparse, rtol=1e-5, atol=1e-6)


def test_ease_recency_weights_each_users_history_by_its_last_events():
    import polars as pl

    from recctl.columns import Columns

    x = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=np.float32))
    # user 0 saw items 2, 0, 1 in that order, then item 2 again (its latest); ties keep file order
    events = pl.DataFrame(
        {
            Columns.UserIdx: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
            Columns.ItemIdx: [2, 0, 1, 2, 3, 1, 2, 0, 3, 2],
            Columns.Timestamp: [1, 2, 3, 4, 5, 5, 6, 1, 2, 3],
        }
    )
    data = Dataset(np.array(["a", "b", "c"]), np.array(["i", "j", "k", "l"]), x, events=events)
    plain = EASEModel(l2=1.0).fit(data)
    model = EASEModel(l2=1.0, recency_half_life=2.0).fit(data)
    np.testing.assert_allclose(model.weights_, plain.weights_)  # the weights are learnt unweighted
    ages = np.array([[2, 1, 0, -1], [-1, 1, 0, 2], [2, -1, 0, 1]], dtype=np.float64)
    w = np.where(ages >= 0, 0.5 ** (ages / 2.0), 0.0)
    np.testing.assert_allclose(model.user_items_.toarray(), w, rtol=1e-6)
    np.testing.assert_allclose(model.score(np.arange(3)), w @ plain.weights_, rtol=1e-5, atol=1e-6)
