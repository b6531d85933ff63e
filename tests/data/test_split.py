from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.columns import Columns
from recctl.config.preprocess import SplitConfig
from recctl.data.split import SPLIT, assign_splits
from recctl.errors import ConfigError

U, IT, T = Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _events(n_users: int = 20, per_user: int = 10, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            rows.append((u, int(rng.integers(50)), T0 + dt.timedelta(hours=int(rng.integers(1000)), minutes=k)))
    return pl.DataFrame(rows, schema={U: pl.Int32, IT: pl.Int32, T: pl.Datetime("us", "UTC")}, orient="row")


def test_time_split_is_a_clean_cut() -> None:
    labelled, info = assign_splits(_events(), SplitConfig(strategy="time", test_fraction=0.2, valid_fraction=0.2), 1)
    times = {s: labelled.filter(pl.col(SPLIT) == s)[T] for s in ("tune_train", "valid", "test")}
    assert times["tune_train"].max() < times["valid"].min() <= times["valid"].max() < times["test"].min()
    assert 0.1 < info["events"]["test"] / labelled.height < 0.3
    train_users = set(labelled.filter(pl.col(SPLIT) != "test")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "test")[U]) <= train_users  # cold test users dropped
    tune_users = set(labelled.filter(pl.col(SPLIT) == "tune_train")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "valid")[U]) <= tune_users


def test_time_split_by_date() -> None:
    cfg = SplitConfig(strategy="time", test_start="2026-02-01", valid_fraction=0)
    labelled, info = assign_splits(_events(), cfg, 1)
    cut = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
    assert (labelled.filter(pl.col(SPLIT) == "test")[T] >= cut).all()
    assert (labelled.filter(pl.col(SPLIT) != "test")[T] < cut).all()
    assert info["events"]["valid"] == 0
    with pytest.raises(ConfigError, match="test_start"):
        assign_splits(_events(), SplitConfig(test_start="first of May"), 1)


def test_leave_last_takes_each_users_latest_pairs() -> None:
    events = _events()
    labelled, _ = assign_splits(events, SplitConfig(strategy="leave_last", n_last=2, valid_n_last=1), 1)
    pairs = labelled.group_by(U, IT, SPLIT).agg(pl.col(T).max())
    for _user, group in pairs.group_by(U):
        test = group.filter(pl.col(SPLIT) == "test")
        rest = group.filter(pl.col(SPLIT) != "test")
        assert test.height == 2
        assert test[T].min() >= rest[T].max()
        assert group.filter(pl.col(SPLIT) == "valid").height == 1
    # every event of a pair shares its label
    assert labelled.group_by(U, IT).agg(pl.col(SPLIT).n_unique())[SPLIT].max() == 1


def test_random_split_is_seeded_and_per_user() -> None:
    cfg = SplitConfig(strategy="random", test_fraction=0.25, valid_fraction=0.2)
    a, _ = assign_splits(_events(), cfg, 3)
    b, _ = assign_splits(_events(), cfg, 3)
    c, _ = assign_splits(_events(), cfg, 4)
    assert a.equals(b) and not a.equals(c)
    counts = a.group_by(U).agg((pl.col(SPLIT) != "test").sum().alias("train"))
    assert counts["train"].min() >= 1


@settings(max_examples=25, deadline=None)
@given(
    strategy=st.sampled_from(["time", "leave_last", "random"]),
    seed=st.integers(0, 1000),
    test_fraction=st.floats(0.1, 0.5),
    valid_fraction=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_split_properties(strategy: str, seed: int, test_fraction: float, valid_fraction: float) -> None:
    events = _events(n_users=8, per_user=6, seed=seed)
    cfg = SplitConfig(strategy=strategy, test_fraction=test_fraction, valid_fraction=valid_fraction)
    labelled, info = assign_splits(events, cfg, seed)
    # a partition of the events minus the dropped cold test events
    assert labelled.height + (info["cold_test_events"] if info.get("cold_test_users_dropped") else 0) == events.height
    assert set(labelled[SPLIT]) <= {"tune_train", "valid", "test"}
    train_users = set(labelled.filter(pl.col(SPLIT) != "test")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "test")[U]) <= train_users
    assert sum(info["events"].values()) == labelled.height
