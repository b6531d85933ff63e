"""Item-item and user-user kNN: scores against brute force, similar items, updates."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.models.item_knn import ItemKNNModel
from recctl.models.popularity import PopularityModel
from recctl.models.user_knn import UserKNNModel


def _cosine(a: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1)
    denom = norms[:, None] * norms[None, :] + shrink
    sims = np.divide(a @ a.T, denom, out=np.zeros((len(a), len(a))), where=denom > 0)
    np.fill_diagonal(sims, 0)
    return sims


def _keep_top(sims: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros_like(sims)
    for i, row in enumerate(sims):
        top = np.argsort(-row, kind="stable")[:n]
        top = top[row[top] > 0]
        out[i, top] = row[top]
    return out


def precision_at(model, train: Dataset, test: sp.csr_matrix, k: int = 5) -> float:
    users = np.nonzero(np.diff(test.indptr))[0]
    top = model.recommend(users, k, exclude=train.interactions)
    hits = np.asarray(test[users[:, None], np.maximum(top.items, 0)].todense()) > 0
    return float((hits & (top.items >= 0)).sum(axis=1).mean() / k)


def test_item_knn_scores_match_brute_force(planted):
    model = ItemKNNModel(neighbors=8, shrink=2.0, use_weights=True).fit(planted)
    x = planted.interactions.toarray().astype(np.float64)
    sim = _keep_top(_cosine(x.T, 2.0), 8)
    np.testing.assert_allclose(model.similarity_.toarray(), sim, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score(np.arange(10)), x[:10] @ sim, rtol=1e-4, atol=1e-6)


def test_item_knn_binary_ignores_weights(planted):
    weighted = ItemKNNModel(use_weights=True).fit(planted)
    binary = ItemKNNModel(use_weights=False).fit(planted)
    assert not np.allclose(weighted.score(np.arange(5)), binary.score(np.arange(5)))
    x = (planted.interactions.toarray() > 0).astype(np.float64)
    np.testing.assert_allclose(binary.score(np.arange(5)), x[:5] @ binary.similarity_.toarray(), rtol=1e-5)


@pytest.mark.parametrize("weighting", ["tfidf", "bm25"])
def test_item_knn_weightings_are_personalised(planted_split, weighting):
    train, test = planted_split
    model = ItemKNNModel(weighting=weighting, normalize=weighting == "tfidf").fit(train)
    assert precision_at(model, train, test) > precision_at(PopularityModel().fit(train), train, test)


def test_item_knn_beats_popularity_on_planted_data(planted_split):
    train, test = planted_split
    assert precision_at(ItemKNNModel().fit(train), train, test) > 1.3 * precision_at(
        PopularityModel().fit(train), train, test
    )


def test_item_knn_similar_items_and_item_history_stay_in_group(planted, groups):
    model = ItemKNNModel(neighbors=10).fit(planted)
    top = model.similar_items(np.array([0, 16, 31]), 5)
    for src, row in zip([0, 16, 31], top.items, strict=True):
        assert (groups.of(row[row >= 0]) == groups.of(src)).mean() >= 0.8
    scores = model.score_from_items(np.array([45, 46, 47]))
    best = np.argsort(-scores)[:5]
    assert (groups.of(best) == 3).all()


def _grow(dataset: Dataset, extra_rows, extra_cols, n_new_items: int = 0) -> Dataset:
    x = dataset.interactions.copy()
    n_items = dataset.n_items + n_new_items
    x.resize((dataset.n_users, n_items))
    add = sp.csr_matrix((np.ones(len(extra_rows), np.float32), (extra_rows, extra_cols)), shape=x.shape)
    item_ids = np.concatenate([dataset.item_ids, np.array([f"new{i}" for i in range(n_new_items)], dtype=object)])
    return Dataset(dataset.user_ids, item_ids, sp.csr_matrix(x + add))


@pytest.mark.parametrize("normalize", [True, False])
def test_item_knn_incremental_update_is_exact(planted_factory, monkeypatch, normalize):
    import recctl.models.item_knn as item_knn

    monkeypatch.setattr(item_knn, "_REBUILD_FRACTION", 1.0)  # force the incremental path
    base, _ = planted_factory(seed=3)
    grown = _grow(base, [0, 0, 1, 2], [3, 60, 60, 5], n_new_items=1)
    updated = ItemKNNModel(neighbors=6, shrink=1.0, normalize=normalize, use_weights=True).fit(base)
    updated.partial_fit(grown)
    full = ItemKNNModel(neighbors=6, shrink=1.0, normalize=normalize, use_weights=True).fit(grown)
    assert updated.update_info_["mode"] == "incremental"
    np.testing.assert_allclose(updated.similarity_.toarray(), full.similarity_.toarray(), rtol=1e-6)
    np.testing.assert_allclose(updated.score(np.arange(10)), full.score(np.arange(10)), rtol=1e-5)
    assert updated.n_items == grown.n_items


def test_item_knn_small_update_recomputes_only_affected_rows(planted_factory):
    base, _ = planted_factory(seed=3)
    # a new user-less item bought once by a group-3 user: only that user's items are affected
    grown = _grow(base, [100], [59])
    model = ItemKNNModel(neighbors=6, normalize=False).fit(base)
    model.partial_fit(grown)
    assert model.update_info_["mode"] == "incremental"
    assert model.update_info_["rows_recomputed"] < grown.n_items // 2
    full = ItemKNNModel(neighbors=6, normalize=False).fit(grown)
    np.testing.assert_allclose(model.similarity_.toarray(), full.similarity_.toarray(), rtol=1e-6)


def test_item_knn_weighted_update_rebuilds_and_says_so(planted):
    model = ItemKNNModel(weighting="bm25").fit(planted)
    model.partial_fit(_grow(planted, [1], [40]))
    assert model.update_info_["mode"] == "rebuild"
    assert "weighting" in model.update_info_["reason"]


def test_user_knn_scores_match_brute_force(planted):
    model = UserKNNModel(neighbors=7, shrink=1.0).fit(planted)
    x = planted.interactions.toarray().astype(np.float64)
    neigh = _keep_top(_cosine(x, 1.0), 7)
    np.testing.assert_allclose(model.score(np.arange(12)), neigh[:12] @ x, rtol=1e-4, atol=1e-6)


def test_user_knn_item_history_matches_a_user_with_that_history(planted):
    model = UserKNNModel(neighbors=10).fit(planted)
    row = planted.interactions[4]
    from_items = model.score_from_items(row.indices, row.data)
    x = planted.interactions.toarray().astype(np.float64)
    sims = (x @ x[4]) / (np.linalg.norm(x, axis=1) * np.linalg.norm(x[4]))
    # the anonymous copy of user 4 finds user 4 itself as its best neighbour
    top = np.argsort(-sims, kind="stable")[:10]
    np.testing.assert_allclose(from_items, sims[top] @ x[top], rtol=1e-4)


def test_user_knn_beats_popularity_on_planted_data(planted_split):
    train, test = planted_split
    assert precision_at(UserKNNModel().fit(train), train, test) > precision_at(
        PopularityModel().fit(train), train, test
    )


@pytest.mark.parametrize("kind", ["item_knn", "rp3beta"])
@pytest.mark.parametrize("k", [3, 12, 40])
@pytest.mark.parametrize("block_rows", [7, 4096])
def test_similar_items_from_stored_rows_equal_the_dense_path(kind, k, block_rows, monkeypatch):
    # the stored-rows path must give exactly the dense rows' lists: neighbours by similarity
    # (ties to the lower index), then allowed zero-score items in index order, rules first;
    # whatever the blocks of rows the neighbour table is laid out in
    from recctl.models import neighbors
    from recctl.models.rp3beta import RP3betaModel

    monkeypatch.setattr(neighbors, "_TOP_BLOCK_ROWS", block_rows)

    rng = np.random.default_rng(k)
    x = sp.csr_matrix((rng.random((60, 30)) < 0.1).astype(np.float32))
    ds = Dataset(np.array([f"u{i}" for i in range(60)]), np.array([f"i{j}" for j in range(30)]), x)
    model = (ItemKNNModel(neighbors=5) if kind == "item_knn" else RP3betaModel(neighbors=5)).fit(ds)
    assert model.stored_similarity() is model.similarity_
    dense = copy.copy(model)
    dense.stored_similarity = lambda: None  # type: ignore[method-assign]  # the catalogue-wide dense rows
    for items in (np.arange(30), rng.choice(30, 12)):  # the whole catalogue (the bundle) or some, repeated
        for mask in (None, rng.random(30) < 0.7):
            got = model.similar_items(items, k, item_mask=mask)
            want = dense.similar_items(items, k, item_mask=mask)
            np.testing.assert_array_equal(got.items, want.items)
            np.testing.assert_array_equal(got.scores, want.scores)
