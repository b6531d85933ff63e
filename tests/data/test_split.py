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
    assert "global time cut" in info["test_rule"] and info["valid_strategy"] == "time"
    assert 0.1 < info["events"]["test"] / labelled.height < 0.3
    train_users = set(labelled.filter(pl.col(SPLIT) != "test")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "test")[U]) <= train_users  # cold test users dropped
    tune_users = set(labelled.filter(pl.col(SPLIT) == "tune_train")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "valid")[U]) <= tune_users


def test_pair_counts_are_optional_and_count_distinct_pairs() -> None:
    events = _events()
    cfg = SplitConfig(strategy="user_time", test_fraction=0.3, valid_fraction=0.2)
    labelled, info = assign_splits(events, cfg, 1)
    same, without = assign_splits(events, cfg, 1, count_pairs=False)
    assert same.equals(labelled) and "pairs" not in without
    assert {k: v for k, v in info.items() if k != "pairs"} == without
    for label, n in info["pairs"].items():  # what the stage counts instead: its per-label files' rows
        assert n == labelled.filter(pl.col(SPLIT) == label).select(U, IT).unique().height


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
    strategy=st.sampled_from(["time", "user_time", "leave_last", "random"]),
    seed=st.integers(0, 1000),
    test_fraction=st.floats(0.1, 0.5),
    valid_fraction=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_split_properties_all(strategy: str, seed: int, test_fraction: float, valid_fraction: float) -> None:
    events = _events(n_users=8, per_user=6, seed=seed)
    cfg = SplitConfig(strategy=strategy, test_fraction=test_fraction, valid_fraction=valid_fraction)
    labelled, info = assign_splits(events, cfg, seed)
    # a partition of the events minus the dropped cold test events
    assert labelled.height + (info["cold_test_events"] if info.get("cold_test_users_dropped") else 0) == events.height
    assert set(labelled[SPLIT]) <= {"tune_train", "valid", "test"}
    train_users = set(labelled.filter(pl.col(SPLIT) != "test")[U])
    assert set(labelled.filter(pl.col(SPLIT) == "test")[U]) <= train_users
    assert sum(info["events"].values()) == labelled.height


def _distinct_times(n: int, n_users: int = 1) -> pl.DataFrame:
    """``n`` events with distinct times, user ``i % n_users``, item ``i`` (every pair distinct)."""
    return pl.DataFrame(
        {
            U: np.arange(n, dtype=np.int32) % n_users,
            IT: np.arange(n, dtype=np.int32),
            T: [T0 + dt.timedelta(seconds=i) for i in range(n)],
        }
    ).with_columns(pl.col(T).dt.cast_time_unit("us"))


def test_time_fraction_rounds_half_up_with_exact_counts() -> None:
    # the case: 0.0943 of 100,000 events is 9,430 (the old quantile cut gave 9,431)
    events = _distinct_times(100_000, n_users=50)
    _, info = assign_splits(events, SplitConfig(strategy="time", test_fraction=0.0943, valid_fraction=0), 1)
    assert info["events"]["test"] == 9_430
    # 0.25 of 10 = 2.5 -> 3 (half up); validation: 0.5 of the 7 left = 3.5 -> 4
    _, info = assign_splits(
        _distinct_times(10), SplitConfig(strategy="time", test_fraction=0.25, valid_fraction=0.5), 1
    )
    assert info["events"] == {"tune_train": 3, "valid": 4, "test": 3}


def test_time_cut_keeps_tied_events_together() -> None:
    events = _distinct_times(10, n_users=2).with_columns(
        pl.when(pl.col(IT) >= 6).then(pl.lit(T0 + dt.timedelta(days=1))).otherwise(pl.col(T)).alias(T)
    )
    # round(0.2 x 10) = 2, but the last 4 events share a time: all 4 are test
    _, info = assign_splits(events, SplitConfig(strategy="time", test_fraction=0.2, valid_fraction=0), 1)
    assert info["events"]["test"] == 4


def test_user_time_holds_out_each_users_latest_share() -> None:
    # user 0: 10 items, user 1: 5 items, user 2: 1 item (all distinct times)
    rows = [(0, i, i) for i in range(10)] + [(1, 10 + i, 20 + i) for i in range(5)] + [(2, 30, 40)]
    events = pl.DataFrame(
        [(u, i, T0 + dt.timedelta(hours=h)) for u, i, h in rows],
        schema={U: pl.Int32, IT: pl.Int32, T: pl.Datetime("us", "UTC")},
        orient="row",
    )
    cfg = SplitConfig(strategy="user_time", test_fraction=0.3, valid_fraction=0.5)
    labelled, info = assign_splits(events, cfg, 1)
    by_user = {(u, s): n for u, s, n in labelled.group_by(U, SPLIT).agg(pl.len()).iter_rows()}
    # user 0: round(3.0) = 3 latest to test, then round(0.5 x 7) = 4 latest of the rest to valid
    assert (by_user[(0, "test")], by_user[(0, "valid")], by_user[(0, "tune_train")]) == (3, 4, 3)
    # user 1: round(1.5) = 2 to test, round(0.5 x 3) = 2 to valid
    assert (by_user[(1, "test")], by_user[(1, "valid")], by_user[(1, "tune_train")]) == (2, 2, 1)
    # user 2: one item stays in train (never all of a user's items)
    assert by_user == {**by_user, (2, "tune_train"): 1} and (2, "test") not in by_user
    latest = labelled.filter(pl.col(U) == 0).sort(T)[SPLIT].to_list()
    assert latest == ["tune_train"] * 3 + ["valid"] * 4 + ["test"] * 3
    assert info["valid_strategy"] == "user_time" and "latest round(0.3" in info["test_rule"]


def test_validation_can_follow_another_rule() -> None:
    cfg = SplitConfig(strategy="user_time", test_fraction=0.2, valid_strategy="leave_last", valid_n_last=1)
    labelled, info = assign_splits(_events(), cfg, 1)
    valid_pairs = labelled.filter(pl.col(SPLIT) == "valid").group_by(U).agg(pl.col(IT).n_unique())
    assert valid_pairs[IT].max() == 1 and info["valid_strategy"] == "leave_last"
    _, info = assign_splits(_events(), SplitConfig(strategy="user_time", valid_strategy="none"), 1)
    assert info["events"]["valid"] == 0 and info["valid_rule"].startswith("no validation")


def test_files_strategy_takes_the_listed_pairs() -> None:
    events = _events()
    pairs = events.select(U, IT).unique().sort(U, IT)
    test_pairs = pairs.gather_every(5)
    valid_pairs = pairs.gather_every(7, offset=1)
    cfg = SplitConfig(strategy="files", test_file="test.csv", valid_file="valid.csv")
    labelled, info = assign_splits(events, cfg, 1, held_out={"test": test_pairs, "valid": valid_pairs})
    got = labelled.filter(pl.col(SPLIT) == "test").select(U, IT).unique()
    expected = test_pairs.join(labelled.select(U).unique(), on=U)  # cold test users are dropped
    assert got.sort(U, IT).equals(expected.sort(U, IT))
    assert info["test_pairs_listed"] == test_pairs.height and info["test_pairs_not_in_data"] == 0
    assert info["valid_strategy"] == "files" and "valid.csv" in info["valid_rule"]
    with pytest.raises(ValueError, match="test_file"):
        SplitConfig(strategy="files")


def test_files_strategy_through_preprocess(tmp_path) -> None:  # noqa: ANN001
    from recctl.data.sample import interactions_source
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from tests.data.conftest import make_config

    rows = [(f"u{u}", f"i{i}", f"2026-01-{1 + (u + i) % 27:02d} 10:00:00") for u in range(6) for i in range(5)]
    header = "customer_id,product_id,event_type,event_time,quantity\n"
    (tmp_path / "events.csv").write_text(header + "".join(f"{u},{i},view,{t},1\n" for u, i, t in rows))
    # the held-out file uses the raw column names of the source; an unknown pair is counted
    (tmp_path / "test.csv").write_text("customer_id,product_id\nu1,i2\nu3,i4\nu9,i9\n")
    cfg = make_config(
        tmp_path,
        interactions_source("events.csv"),
        preprocess={
            "event_weights": {"view": 1.0},
            "split": {"strategy": "files", "test_file": "test.csv", "valid_fraction": 0.2},
        },
    )
    run_ingest(cfg)
    manifest = run_preprocess(cfg)
    pre = cfg.stage_dir("preprocess")
    users = pl.read_parquet(pre / "users.parquet")
    items = pl.read_parquet(pre / "items.parquet")
    test = (
        pl.read_parquet(pre / "test.parquet")
        .join(users, on=Columns.UserIdx)
        .join(items, on=Columns.ItemIdx)
        .select(Columns.User, Columns.Item)
    )
    assert sorted(test.rows()) == [("u1", "i2"), ("u3", "i4")]
    split = manifest.summary["split"]
    assert split["valid_strategy"] == "user_time" and split["events"]["valid"] > 0
    assert str(tmp_path / "test.csv") in {r.path for r in manifest.inputs}


def _basket() -> pl.DataFrame:
    """One user, two invoices: items 5, 1, 3 at one time, then items 4, 0, 2 at one later time (file order)."""
    t1, t2 = T0, T0 + dt.timedelta(hours=1)
    rows = [(0, 5, t1), (0, 1, t1), (0, 3, t1), (0, 4, t2), (0, 0, t2), (0, 2, t2)]
    return pl.DataFrame(rows, schema={U: pl.Int32, IT: pl.Int32, T: pl.Datetime("us", "UTC")}, orient="row")


def _items(labelled: pl.DataFrame, label: str) -> list[int]:
    return labelled.filter(pl.col(SPLIT) == label)[IT].to_list()


@pytest.mark.parametrize("shuffled", [False, True])
def test_equal_timestamps_keep_the_file_order(shuffled: bool) -> None:
    """Of a basket's lines at one time, the last in the file is the latest: never the highest item index."""
    events = _basket()
    if shuffled:  # not sorted by time: ranked by time, ties still by row order
        events = events[[3, 0, 4, 1, 5, 2]]
    labelled, _ = assign_splits(events, SplitConfig(strategy="leave_last", n_last=2, valid_n_last=1), 1)
    assert _items(labelled, "test") == [0, 2]  # the second invoice's last two lines
    assert _items(labelled, "valid") == [4]  # its first line, the latest left
    labelled, _ = assign_splits(events, SplitConfig(strategy="user_time", test_fraction=0.5, valid_fraction=0.34), 1)
    assert sorted(_items(labelled, "test")) == [0, 2, 4]  # round(0.5 x 6) = 3: the second invoice
    assert _items(labelled, "valid") == [3]  # round(0.34 x 3) = 1: the first invoice's last line
    # a global time cut never cuts the invoice in two
    labelled, _ = assign_splits(events, SplitConfig(strategy="time", test_fraction=0.2, valid_fraction=0), 1)
    assert sorted(_items(labelled, "test")) == [0, 2, 4]


def test_a_pair_is_as_late_as_its_last_line() -> None:
    """A repeated item counts at its last event, and equal times are ordered by the rows."""
    t1 = T0
    rows = [(0, 7, t1), (0, 8, t1), (0, 7, t1), (0, 9, t1 - dt.timedelta(days=1))]
    events = pl.DataFrame(rows, schema={U: pl.Int32, IT: pl.Int32, T: pl.Datetime("us", "UTC")}, orient="row")
    labelled, _ = assign_splits(events, SplitConfig(strategy="leave_last", n_last=1, valid_strategy="none"), 1)
    assert _items(labelled, "test") == [7, 7]  # item 7's second line comes after item 8's
