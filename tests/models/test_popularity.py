"""Popularity: global, recent window and per-category modes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.dataset import Dataset
from recctl.errors import RecctlError
from recctl.models.popularity import PopularityModel


def _tiny() -> Dataset:
    # item 0: 3 users, weight 3; item 1: 1 user with weight 10; item 2: 2 users
    x = sp.csr_matrix(np.array([[1, 10, 1], [1, 0, 1], [1, 0, 0]], np.float32))
    t0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
    events = pl.DataFrame(
        {
            Columns.UserIdx: [0, 0, 0, 1, 1, 2],
            Columns.ItemIdx: [0, 1, 2, 0, 2, 0],
            Columns.Timestamp: [
                t0 - timedelta(days=60),
                t0,
                t0 - timedelta(days=1),
                t0 - timedelta(days=90),
                t0 - timedelta(days=2),
                t0 - timedelta(days=80),
            ],
            Columns.Weight: [1.0, 10.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    items = pl.DataFrame({Columns.ItemIdx: [0, 1, 2], "category": ["a", "b", "b"]})
    return Dataset(
        np.array(["u0", "u1", "u2"], object),
        np.array(["i0", "i1", "i2"], object),
        x,
        events=events,
        items=items,
    )


def test_global_counts_users_or_weight():
    ds = _tiny()
    users = PopularityModel().fit(ds).score(np.array([0]))[0]
    assert list(np.argsort(-users)) == [0, 2, 1]
    weight = PopularityModel(measure="weight").fit(ds).score(np.array([0]))[0]
    assert np.argmax(weight) == 1


def test_recent_window_counts_only_recent_events():
    ds = _tiny()
    scores = PopularityModel(mode="recent", window_days=7).fit(ds).score(np.array([2]))[0]
    # in the last week: item 2 twice, item 1 once, item 0 never (its 3 users are old)
    assert list(np.argsort(-scores)) == [2, 1, 0]


def test_category_mode_ranks_the_users_category_first(planted):
    model = PopularityModel(mode="category").fit(planted)
    top = model.recommend(np.arange(planted.n_users), 5, exclude=planted.interactions)
    user_group = np.arange(planted.n_users) // 30
    assert ((top.items // 15) == user_group[:, None]).mean() > 0.9
    # an anonymous visitor gets the category of the items they looked at
    scores = model.score_from_items(np.array([40, 41]))
    assert (np.argsort(-scores)[:5] // 15 == 2).all()


def test_category_mode_without_the_column_says_which_key(planted):
    with pytest.raises(RecctlError, match="category_column"):
        PopularityModel(mode="category", category_column="aisle").fit(planted)
