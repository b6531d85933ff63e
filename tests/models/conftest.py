"""Small synthetic shop with planted structure, shared by the model tests.

Four taste groups; every item belongs to one group (its ``category`` and its first feature
column), users interact mostly with their group's items. The last ``N_COLD`` items of each
group have features but no interactions (new catalogue items). Built directly in index
space so the tests need no ingest/preprocess.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.dataset import Dataset

N_GROUPS = 4
ITEMS_PER_GROUP = 15
N_COLD = 2  # per group
USERS_PER_GROUP = 30


def make_planted(seed: int = 0, *, holdout: float = 0.0) -> tuple[Dataset, sp.csr_matrix]:
    """Return (train dataset, held-out interactions) with planted group structure."""
    rng = np.random.default_rng(seed)
    n_items = N_GROUPS * ITEMS_PER_GROUP
    n_users = N_GROUPS * USERS_PER_GROUP
    item_group = np.repeat(np.arange(N_GROUPS), ITEMS_PER_GROUP)
    cold = np.zeros(n_items, bool)
    for g in range(N_GROUPS):
        cold[(g + 1) * ITEMS_PER_GROUP - N_COLD : (g + 1) * ITEMS_PER_GROUP] = True
    user_group = np.repeat(np.arange(N_GROUPS), USERS_PER_GROUP)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        g = user_group[u]
        warm_own = np.nonzero((item_group == g) & ~cold)[0]
        # popularity inside a group decays, so there is a long tail
        p = 1.0 / np.arange(1, len(warm_own) + 1)
        own = rng.choice(warm_own, size=7, replace=False, p=p / p.sum())
        other = rng.choice(np.nonzero((item_group != g) & ~cold)[0], size=1, replace=False)
        for i in np.concatenate([own, other]):
            rows.append(u)
            cols.append(int(i))
            vals.append(float(rng.choice([1.0, 2.0, 5.0])))
    rows, cols, vals = np.array(rows), np.array(cols), np.array(vals, np.float32)
    test_mask = rng.random(len(rows)) < holdout
    train = sp.csr_matrix((vals[~test_mask], (rows[~test_mask], cols[~test_mask])), shape=(n_users, n_items))
    test = sp.csr_matrix((vals[test_mask], (rows[test_mask], cols[test_mask])), shape=(n_users, n_items))
    # features: group one-hot + 3 noise tags; users: group one-hot
    feat_rows = np.concatenate([np.arange(n_items), np.arange(n_items)])
    feat_cols = np.concatenate([item_group, N_GROUPS + rng.integers(0, 3, n_items)])
    item_features = sp.csr_matrix(
        (np.ones(2 * n_items, np.float32), (feat_rows, feat_cols)), shape=(n_items, N_GROUPS + 3)
    )
    user_features = sp.csr_matrix(
        (np.ones(n_users, np.float32), (np.arange(n_users), user_group)), shape=(n_users, N_GROUPS)
    )
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    tr = train.tocoo()
    order = np.lexsort((tr.col, tr.row))
    events = (
        pl.DataFrame(
            {
                Columns.UserIdx: tr.row[order].astype(np.int64),
                Columns.ItemIdx: tr.col[order].astype(np.int64),
                Columns.Event: ["purchase"] * tr.nnz,
                Columns.Timestamp: [start + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 60, tr.nnz)],
                Columns.Weight: tr.data[order].astype(np.float64),
            }
        )
        .with_columns(pl.col(Columns.Timestamp).dt.replace_time_zone("UTC"))
        .sort([Columns.UserIdx, Columns.Timestamp])
    )
    items = pl.DataFrame(
        {
            Columns.Item: [f"i{i}" for i in range(n_items)],
            Columns.ItemIdx: np.arange(n_items),
            "category": [f"c{g}" for g in item_group],
        }
    )
    dataset = Dataset(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        interactions=train,
        item_features=item_features,
        item_feature_names=[f"group={g}" for g in range(N_GROUPS)] + [f"tag={t}" for t in range(3)],
        user_features=user_features,
        user_feature_names=[f"segment={g}" for g in range(N_GROUPS)],
        events=events,
        items=items,
    )
    return dataset, test


@pytest.fixture(scope="session")
def planted() -> Dataset:
    """The planted training dataset (no holdout)."""
    return make_planted()[0]


@pytest.fixture(scope="session")
def planted_split() -> tuple[Dataset, sp.csr_matrix]:
    """Planted dataset with 25% of interactions held out."""
    return make_planted(seed=1, holdout=0.25)


def item_group(item_idx: np.ndarray) -> np.ndarray:
    """The planted group of each item index."""
    return np.asarray(item_idx) // ITEMS_PER_GROUP


def cold_items() -> np.ndarray:
    """Indices of the items without training interactions."""
    return np.concatenate(
        [np.arange((g + 1) * ITEMS_PER_GROUP - N_COLD, (g + 1) * ITEMS_PER_GROUP) for g in range(N_GROUPS)]
    )


@pytest.fixture(scope="session")
def planted_factory():
    """:func:`make_planted` itself, for tests that need another seed or a grown copy."""
    return make_planted


@pytest.fixture(scope="session")
def groups():
    """Helpers about the planted structure: ``groups.of(items)``, ``groups.cold``."""

    class Groups:
        size = ITEMS_PER_GROUP
        cold = cold_items()

        @staticmethod
        def of(items: np.ndarray) -> np.ndarray:
            return item_group(items)

    return Groups
