"""RP3beta against a brute-force computation; ALS through implicit learns planted tastes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recctl.models.als import ALSModel
from recctl.models.popularity import PopularityModel
from recctl.models.rp3beta import RP3betaModel, rp3beta_similarity
from tests.models.test_ease_content import _precision


def _brute_rp3beta(x: np.ndarray, alpha: float, beta: float, k: int) -> np.ndarray:
    p_ui = x / np.maximum(x.sum(axis=1, keepdims=True), 1e-300)
    p_iu = x.T / np.maximum(x.T.sum(axis=1, keepdims=True), 1e-300)
    w = (p_iu**alpha) @ (p_ui**alpha)
    pop = x.sum(axis=0)
    w = w / np.where(pop > 0, pop**beta, np.inf)[None, :]
    np.fill_diagonal(w, 0.0)
    out = np.zeros_like(w)
    for i in range(w.shape[0]):
        order = np.lexsort((np.arange(w.shape[1]), -w[i]))[:k]
        keep = order[w[i, order] > 0]
        out[i, keep] = w[i, keep]
    return out


def test_rp3beta_equals_the_random_walk_computed_by_hand(kernel_path: str) -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((40, 25)) < 0.2).astype(np.float64)
    x[:, 7] = 0  # an item nobody touched: no row, no column
    for alpha, beta, k in ((1.0, 0.0, 25), (0.7, 0.5, 5)):
        got = rp3beta_similarity(sp.csr_matrix(x), alpha, beta, k).toarray()
        np.testing.assert_allclose(got, _brute_rp3beta(x, alpha, beta, k), rtol=1e-5, atol=1e-7)


def test_rp3beta_and_als_beat_popularity(planted_split) -> None:
    train, test = planted_split
    popular = _precision(PopularityModel().fit(train), train, test)
    assert _precision(RP3betaModel(neighbors=30).fit(train), train, test) > popular
    als = ALSModel(factors=8, iterations=8, num_threads=1, random_state=0).fit(train)
    assert _precision(als, train, test) > popular


def test_als_fold_in_of_a_users_items_ranks_like_the_trained_user(planted) -> None:
    model = ALSModel(factors=8, iterations=10, num_threads=1, random_state=0).fit(planted)
    user = 5
    items = planted.interactions[user].indices
    folded = model.score_from_items(items)
    trained = model.score(np.array([user]))[0]
    assert np.corrcoef(folded, trained)[0, 1] > 0.9
    assert model.score_from_items(np.array([], np.int64)).shape == (planted.n_items,)
