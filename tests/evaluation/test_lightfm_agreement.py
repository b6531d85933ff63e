"""Our metrics against LightFM's own evaluation functions where the definitions coincide.

LightFM ranks every item except the user's training items (``train_interactions``) and:

* ``precision_at_k`` = (test items ranked in the top k) / k — ours with ``exclude=train``;
* ``recall_at_k`` = (test items in the top k) / (number of test items of the user) — ours,
  since train and test are disjoint here (LightFM refuses overlapping matrices);
* ``auc_score`` = per-user AUC of test items against non-train, non-test items — ours.

Scores are continuous floats, so there are no ties for the two to break differently.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recctl.evaluation import evaluate_model
from recctl.ranking import top_k

lightfm = pytest.importorskip("lightfm")
from lightfm.evaluation import auc_score, precision_at_k, recall_at_k  # noqa: E402


class _LightFMAdapter:
    """Exposes a raw LightFM model through the recommend/score interface evaluate_model uses."""

    def __init__(self, model, n_users: int, n_items: int) -> None:
        self.model, self.n_users, self.n_items = model, n_users, n_items

    def score(self, users: np.ndarray) -> np.ndarray:
        uu = np.repeat(users, self.n_items).astype(np.int32)
        ii = np.tile(np.arange(self.n_items, dtype=np.int32), len(users))
        return self.model.predict(uu, ii).reshape(len(users), self.n_items).astype(np.float64)

    def recommend(self, users, k, *, exclude=None, batch_size=4096, n_jobs=1, progress=None):
        return top_k(self.score, users, k, exclude=exclude, batch_size=batch_size)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    n_users, n_items = 80, 40
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    split = rng.random((n_users, n_items)) < 0.3
    train = sp.csr_matrix(dense * ~split)
    test = sp.csr_matrix(dense * split)
    train.eliminate_zeros()
    test.eliminate_zeros()
    model = lightfm.LightFM(no_components=8, loss="warp", random_state=1)
    model.fit(train, epochs=5)
    return model, train, test, _LightFMAdapter(model, n_users, n_items)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_precision_and_recall_match_lightfm(fitted, k):
    model, train, test, adapter = fitted
    ours = evaluate_model(adapter, test, train, ks=[k], metrics=["precision", "recall"])
    theirs_p = precision_at_k(model, test, train_interactions=train, k=k)
    theirs_r = recall_at_k(model, test, train_interactions=train, k=k)
    # both keep exactly the users with at least one test item, in user order
    assert ours.n_users == len(theirs_p)
    np.testing.assert_allclose(ours.per_user[f"precision@{k}"].to_numpy(), theirs_p, rtol=1e-6)
    np.testing.assert_allclose(ours.per_user[f"recall@{k}"].to_numpy(), theirs_r, rtol=1e-6)


def test_auc_matches_lightfm(fitted):
    model, train, test, adapter = fitted
    ours = evaluate_model(adapter, test, train, ks=[5], metrics=["auc"])
    theirs = auc_score(model, test, train_interactions=train)
    np.testing.assert_allclose(ours.per_user["auc"].to_numpy(), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.realdata
def test_agreement_on_movielens_time_split():
    """Same comparison on real data: MovieLens ratings >= 4, last 20% of time held out."""
    from pathlib import Path

    import polars as pl

    data = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ml-latest-small"
    if not (data / "ratings.csv").exists():
        pytest.skip(f"MovieLens not found at {data} (only on the team's machines)")
    ratings = pl.read_csv(data / "ratings.csv").filter(pl.col("rating") >= 4.0)
    users = {u: i for i, u in enumerate(sorted(ratings["userId"].unique().to_list()))}
    items = {m: i for i, m in enumerate(sorted(ratings["movieId"].unique().to_list()))}
    cut = ratings["timestamp"].quantile(0.8)
    rows = ratings["userId"].replace_strict(users).to_numpy()
    cols = ratings["movieId"].replace_strict(items).to_numpy()
    in_test = (ratings["timestamp"] > cut).to_numpy()
    shape = (len(users), len(items))
    train = sp.csr_matrix((np.ones(int((~in_test).sum()), np.float32), (rows[~in_test], cols[~in_test])), shape)
    test = sp.csr_matrix((np.ones(int(in_test.sum()), np.float32), (rows[in_test], cols[in_test])), shape)
    test = sp.csr_matrix(test - test.multiply(train > 0))  # LightFM refuses overlapping matrices
    test.eliminate_zeros()
    model = lightfm.LightFM(no_components=16, loss="warp", random_state=0)
    model.fit(train, epochs=3)
    adapter = _LightFMAdapter(model, *shape)
    ours = evaluate_model(adapter, test, train, ks=[10], metrics=["precision", "recall", "auc"])
    np.testing.assert_allclose(
        ours.per_user["precision@10"].to_numpy(),
        precision_at_k(model, test, train, k=10),
        rtol=1e-6,
    )
    np.testing.assert_allclose(ours.per_user["recall@10"].to_numpy(), recall_at_k(model, test, train, k=10), rtol=1e-6)
    np.testing.assert_allclose(ours.per_user["auc"].to_numpy(), auc_score(model, test, train), rtol=1e-4, atol=1e-5)
