"""Models on real data (MovieLens latest-small): personalised strategies beat popularity.

The full-catalogue figures come from ``python -m benchmarks.bench_models_real``.

Skipped when ``../shared/data`` is absent (a fresh clone has no real data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.data.dataset import Dataset
from recctl.models.registry import get_model_class

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RATINGS = DATA / "ml-latest-small" / "ratings.csv"


@pytest.fixture(scope="module")
def movielens():
    if not RATINGS.exists():
        pytest.skip(f"MovieLens not found at {RATINGS.resolve()} (real data is only on the team's machines)")
    # movies with at least 20 ratings (about 1,300 of 9,700): keeps the test fast while the
    # data stays real (the benchmarks run the whole catalogue)
    frame = (
        pl.read_csv(RATINGS)
        .filter(pl.len().over("movieId") >= 20)
        .select(
            pl.col("userId").cast(pl.String).alias(Columns.User),
            pl.col("movieId").cast(pl.String).alias(Columns.Item),
            pl.lit(1.0).alias(Columns.Weight),
        )
    )
    users = sorted(frame[Columns.User].unique().to_list())
    items = sorted(frame[Columns.Item].unique().to_list())
    test_mask = pl.Series(np.random.default_rng(0).random(frame.height) < 0.2)
    train = Dataset.from_frames(frame.filter(~test_mask), user_ids=users, item_ids=items)
    test = Dataset.from_frames(frame.filter(test_mask), user_ids=users, item_ids=items)
    return train, test.interactions


def _precision_at_10(model, train, test) -> float:
    users = np.nonzero(np.diff(test.indptr))[0]
    top = model.recommend(users, 10, exclude=train.interactions)
    hits = np.asarray(test[users[:, None], np.maximum(top.items, 0)].todense()) > 0
    return float((hits & (top.items >= 0)).sum(axis=1).mean() / 10)


@pytest.fixture(scope="module")
def popularity_precision(movielens):
    train, test = movielens
    return _precision_at_10(get_model_class("popularity")().fit(train), train, test)


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "item_knn"},
        {"kind": "user_knn"},
        {"kind": "lightfm", "epochs": 15, "no_components": 32, "random_state": 0},
    ],
    ids=lambda p: p["kind"],
)
def test_personalised_models_clearly_beat_popularity_on_movielens(movielens, popularity_precision, params):
    train, test = movielens
    model = get_model_class(params["kind"]).from_config(params).fit(train)
    assert _precision_at_10(model, train, test) > 1.25 * popularity_precision


def test_lightfm_is_repeatable_on_real_data(movielens):
    train, _ = movielens
    params = {"kind": "lightfm", "epochs": 2, "no_components": 16, "random_state": 5, "num_threads": 1}
    a = get_model_class("lightfm").from_config(params).fit(train)
    b = get_model_class("lightfm").from_config(params).fit(train)
    users = np.arange(50)
    np.testing.assert_array_equal(a.score(users), b.score(users))
