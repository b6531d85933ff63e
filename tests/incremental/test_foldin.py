"""Fold-in: a user's vector solved with the item side fixed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.incremental.foldin import FoldInConfig, fold_in_users
from recctl.models.lightfm_model import LightFMModel


@pytest.fixture()
def trained(shop, make_dataset):
    x = shop["x"]
    model = LightFMModel(no_components=16, epochs=10, random_state=3).fit(make_dataset(x[:300]))
    return model, shop


def _few_events(shop, users: np.ndarray, n: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i, u in enumerate(users):
        items = shop["x"][u].indices
        rows += [i] * n
        cols += rng.choice(items, size=n, replace=False).tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), shop["x"].shape[1]))


@pytest.mark.parametrize("method", ["mean", "ls", "warp"])
def test_fold_in_a_few_events_puts_related_items_high(trained, method: str) -> None:
    model, shop = trained
    users = np.arange(300, 400)  # never seen by the model
    events = _few_events(shop, users, 3)
    vectors = fold_in_users(
        events,
        model.item_repr_,
        model.item_bias_,
        config=FoldInConfig(method=method, user_norm=model.user_norm_),
    )
    scores = vectors @ model.item_repr_.T + model.item_bias_
    scores[events.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :5]
    own = shop["item_cat"][top] == shop["user_cat"][users][:, None]
    # users buy only in their category: nearly every top-5 item must be from it
    assert own.mean() > 0.9
    # and far better than the popularity ranking the biases alone give
    pop_top = np.argsort(-np.broadcast_to(model.item_bias_, scores.shape), axis=1)[:, :5]
    assert own.mean() > (shop["item_cat"][pop_top] == shop["user_cat"][users][:, None]).mean() + 0.3


def test_empty_rows_get_the_base_vector(trained) -> None:
    model, shop = trained
    events = sp.csr_matrix((2, shop["x"].shape[1]), dtype=np.float32)
    base = np.ones((2, model.item_repr_.shape[1]), np.float32)
    out = fold_in_users(events, model.item_repr_, model.item_bias_, base=base)
    np.testing.assert_array_equal(out, base)


def test_fold_in_is_deterministic_and_checks_shapes(trained) -> None:
    model, shop = trained
    events = _few_events(shop, np.arange(300, 310), 2)
    a = fold_in_users(events, model.item_repr_, model.item_bias_)
    b = fold_in_users(events, model.item_repr_, model.item_bias_)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="item columns"):
        fold_in_users(events[:, :10], model.item_repr_)
    with pytest.raises(ValueError, match="unknown fold-in method"):
        fold_in_users(events, model.item_repr_, config=FoldInConfig(method="nope"))  # type: ignore[arg-type]
