from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.config.preprocess import PreprocessConfig
from recctl.data.dataset import load_dataset
from recctl.data.preprocess import (
    aggregate,
    check_weights,
    decay_weights,
    filter_min_counts,
    index_events,
    read_weighted_events,
    weight_events,
)
from recctl.errors import ArtifactError, ConfigError, DataError
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess
from tests.data.conftest import EVENTS_HEADER, make_config, shop_source

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _raw(rows: list[tuple[str, str, str, int, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(u, i, e, T0 + dt.timedelta(days=d), v) for u, i, e, d, v in rows],
        schema={
            Columns.User: pl.String,
            Columns.Item: pl.String,
            Columns.Event: pl.String,
            Columns.Timestamp: pl.Datetime("us", "UTC"),
            Columns.Value: pl.Float64,
        },
        orient="row",
    )


def test_weights_value_transform() -> None:
    raw = _raw([("u", "a", "view", 0, 3.0), ("u", "a", "purchase", 10, None), ("u", "b", "hide", 10, 1.0)])
    cfg = PreprocessConfig(
        event_weights={"view": 1.0, "purchase": 4.0, "hide": 0.0},
        use_value=True,
        value_transform="log1p",
        half_life_days=10,
    )
    out, info = weight_events(raw, cfg)
    assert info["zero_weight_events_dropped"] == 1
    # decay is not applied here: it depends on the split (see decay_weights)
    assert out[Columns.Weight].to_list() == pytest.approx([np.log1p(3.0), 4.0 * np.log1p(1.0)])
    with pytest.raises(ConfigError, match="no weight for event type.*'hide'"):
        weight_events(raw, PreprocessConfig(event_weights={"view": 1.0, "purchase": 1.0}))


def test_decay_is_relative_to_each_users_own_latest_event_or_the_training_end() -> None:
    raw = _raw([("u", "a", "view", 0, None), ("u", "b", "view", 10, None), ("v", "a", "view", 1000, None)])
    weighted, _ = weight_events(raw, PreprocessConfig(event_weights={"view": 2.0}))
    per_user = decay_weights(weighted, 10, "user")[Columns.Weight].to_list()
    assert per_user == pytest.approx([1.0, 2.0, 2.0])  # u's latest and v's latest weigh in full
    to_end = decay_weights(weighted, 10, "train_end")[Columns.Weight].to_list()
    assert to_end == pytest.approx([2.0 * 0.5**100, 2.0 * 0.5**99, 2.0])
    assert decay_weights(weighted, None, "user").equals(weighted)


def test_degenerate_weights_are_refused_with_the_fix() -> None:
    # 30-day half-life over 20 years, measured from the end: the oldest weights vanish in float32
    raw = _raw([("u", "a", "view", 0, None), ("v", "b", "view", 7300, None)])
    weighted, _ = weight_events(raw, PreprocessConfig(event_weights={"view": 1.0}))
    with pytest.raises(DataError, match="half_life_days.*decay_reference: user"):
        check_weights(decay_weights(weighted, 30, "train_end")[Columns.Weight], "train")
    # per user, each user's latest event keeps its weight: nothing degenerates
    assert check_weights(decay_weights(weighted, 30, "user")[Columns.Weight], "train")["min_over_mean"] == 1.0
    with pytest.raises(DataError, match="not finite"):
        check_weights(pl.Series([1.0, float("inf")]), "train")
    with pytest.raises(DataError, match="every weight is 0"):
        check_weights(pl.Series([0.0, 0.0]), "train")
    raw = _raw([("u", "a", "view", 0, 1e300)])
    with pytest.raises(DataError, match="not finite"):
        weight_events(raw, PreprocessConfig(event_weights={"view": 1e10}, use_value=True))
    with pytest.raises(ValueError, match="finite"):
        PreprocessConfig(event_weights={"view": float("inf")})
    with pytest.raises(ValueError, match="all 0"):
        PreprocessConfig(event_weights={"view": 0.0})


def test_kcore_is_iterative() -> None:
    # c is the only item of u3; dropping it leaves u1 with one item, then b with one user
    raw = _raw(
        [
            ("u1", "a", "view", 0, 1),
            ("u1", "b", "view", 0, 1),
            ("u2", "a", "view", 0, 1),
            ("u2", "c", "view", 0, 1),
            ("u3", "a", "view", 0, 1),
            ("u3", "c", "view", 0, 1),
            ("u4", "b", "view", 0, 1),
            ("u4", "d", "view", 0, 1),
        ]
    )
    coded, _ = read_weighted_events(raw, pl.Series([], dtype=pl.String), PreprocessConfig(event_weights={"view": 1.0}))
    one_pass, _ = filter_min_counts(coded, 2, 2, kcore=False)
    core, info = filter_min_counts(coded, 2, 2, kcore=True)
    assert core.frame.height < one_pass.frame.height
    pairs = (
        index_events(core)[0]
        .select(Columns.UserIdx, Columns.ItemIdx)
        .rename({Columns.UserIdx: Columns.User, Columns.ItemIdx: Columns.Item})
    )
    assert pairs.group_by(Columns.User).len()["len"].min() >= 2
    assert pairs.group_by(Columns.Item).len()["len"].min() >= 2
    assert info["rounds"] >= 2


def test_index_is_sorted_and_keeps_catalogue() -> None:
    raw = _raw([("u2", "b", "view", 0, 1), ("u1", "a", "view", 0, 1)])
    coded, _ = read_weighted_events(raw, pl.Series(["z", "a"]), PreprocessConfig(event_weights={"view": 1.0}))
    events, users, items = index_events(coded)
    assert users.rows() == [("u1", 0), ("u2", 1)]
    assert items.rows() == [("a", 0), ("b", 1), ("z", 2)]
    # u2 viewed b, u1 viewed a
    assert sorted(events.select(Columns.UserIdx, Columns.ItemIdx).rows()) == [(0, 0), (1, 1)]


@pytest.mark.parametrize(("how", "expected"), [("sum", 5.0), ("max", 4.0), ("last", 1.0)])
def test_aggregate(how: str, expected: float) -> None:
    frame = pl.DataFrame(
        {
            Columns.UserIdx: [0, 0],
            Columns.ItemIdx: [1, 1],
            Columns.Weight: [4.0, 1.0],
            Columns.Timestamp: [T0, T0 + dt.timedelta(days=1)],
        }
    )
    out = aggregate(frame, how)
    assert out[Columns.Weight].to_list() == [expected] and out["last_ts"][0] == T0 + dt.timedelta(days=1)


def _shop_config(tmp_path: Path, shop: Path, **preprocess: object):  # noqa: ANN202
    pre = {"event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}, **preprocess}
    return make_config(
        tmp_path,
        shop_source(str(shop / "events.csv")),
        items={"path": str(shop / "products.csv"), "id_column": "product_id"},
        users={"path": str(shop / "customers.csv"), "id_column": "customer_id"},
        preprocess=pre,
    )


def test_stage_layout_is_what_dataset_loads(tmp_path: Path, small_shop: Path) -> None:
    cfg = _shop_config(
        tmp_path,
        small_shop,
        min_user_interactions=2,
        features={
            "item_categorical": ["category"],
            "item_numeric_buckets": {"price": 4},
            "item_text": ["title"],
            "text_max_vocab": 20,
            "user_categorical": ["segment"],
        },
    )
    with pytest.raises(ArtifactError, match="recctl ingest"):
        run_preprocess(cfg)
    run_ingest(cfg)
    manifest = run_preprocess(cfg)
    d = cfg.stage_dir("preprocess")
    users = pl.read_parquet(d / "users.parquet")
    items = pl.read_parquet(d / "items.parquet")
    assert users[Columns.User].is_sorted() and users[Columns.UserIdx].to_list() == list(range(users.height))
    assert items[Columns.ItemIdx].to_list() == list(range(items.height)) and "category" in items.columns
    assert "segment" in users.columns
    events = pl.read_parquet(d / "events.parquet")
    assert events.columns == [
        Columns.UserIdx,
        Columns.ItemIdx,
        Columns.Event,
        Columns.Timestamp,
        Columns.Weight,
        "split",
    ]
    splits = {s: pl.read_parquet(d / f"{s}.parquet") for s in ("train", "test", "tune_train", "valid")}
    for frame in splits.values():
        assert frame.columns == [Columns.UserIdx, Columns.ItemIdx, Columns.Weight, "last_ts"]
    assert splits["train"][Columns.Weight].sum() == pytest.approx(
        events.filter(pl.col("split") != "test")[Columns.Weight].sum()
    )
    ds = load_dataset(d, "train")
    assert ds.interactions.shape == (users.height, items.height)
    assert ds.item_features.shape[0] == items.height and len(ds.item_feature_names) == ds.item_features.shape[1]
    assert ds.user_features.shape[0] == users.height
    assert manifest.summary["n_cold_items"] >= 1
    # the per-event frame is read when a model first asks for it, not by load_dataset: models
    # without sequences (and evaluate, and the refit's second dataset) never pay for it
    lazy = load_dataset(d, "all")
    moved = d / "events.parquet.away"
    (d / "events.parquet").rename(moved)
    with pytest.raises(FileNotFoundError):
        _ = lazy.events
    moved.rename(d / "events.parquet")
    assert lazy.events is not None and lazy.events.height == events.height
    assert ds.events is not None and ds.events.height == events.filter(pl.col("split") != "test").height
    assert lazy.events.columns == [Columns.UserIdx, Columns.ItemIdx, Columns.Event, Columns.Timestamp, Columns.Weight]
    ds.events = None  # a frame set on the dataset replaces the one it would read
    assert ds.events is None


def test_same_input_same_indices(tmp_path: Path, small_shop: Path) -> None:
    a = _shop_config(tmp_path / "a", small_shop)
    b = _shop_config(tmp_path / "b", small_shop)
    for cfg in (a, b):
        run_ingest(cfg)
        run_preprocess(cfg)
    for name in ("users.parquet", "items.parquet", "events.parquet", "train.parquet", "test.parquet"):
        assert pl.read_parquet(a.stage_dir("preprocess") / name).equals(
            pl.read_parquet(b.stage_dir("preprocess") / name)
        )
    ma = (a.stage_dir("preprocess") / "train.parquet").read_bytes()
    assert ma == (b.stage_dir("preprocess") / "train.parquet").read_bytes()


def _weak_hash(ids: Any, seed: int) -> Any:
    """A first hash that collides for ids of one length (the second, checking hash stays real)."""
    import recctl.data.preprocess as prep

    return ids.str.len_bytes().fill_null(0).cast(pl.UInt64) if seed == prep._SEED else ids.hash(seed)


def test_ids_coded_without_hashes_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # two distinct ids sharing a 64-bit hash is the (rare) case where ids are looked up as strings
    import recctl.data.preprocess as prep

    raw = _raw([("u2", "b", "view", 0, 1), ("u1", "a", "purchase", 1, 1), ("u2", "a", "view", 2, 1)])
    cfg = PreprocessConfig(event_weights={"view": 1.0, "purchase": 2.0})
    hashed, _ = read_weighted_events(raw, pl.Series(["z"]), cfg)
    # a first hash under which u1 and u2 (and a and b) collide: the second hash catches it
    monkeypatch.setattr(prep, "_id_hash", _weak_hash)
    looked_up, _ = read_weighted_events(raw, pl.Series(["z"]), cfg)
    assert hashed.frame.equals(looked_up.frame)
    assert hashed.frame[prep.USER_CODE].to_list() == [1, 0, 1]
    assert hashed.item_ids.to_list() == ["a", "b", "z"] and hashed.in_catalogue.tolist() == [False, False, True]


@pytest.mark.parametrize("hashed", [True, False])
def test_event_without_an_id_is_refused_not_dropped(monkeypatch: pytest.MonkeyPatch, hashed: bool) -> None:
    import recctl.data.preprocess as prep

    if not hashed:
        monkeypatch.setattr(prep, "_id_hash", _weak_hash)
    raw = _raw([("u1", "a", "view", 0, 1), ("u2", "b", "view", 1, 1)])
    raw = raw.with_columns(
        pl.when(pl.col(Columns.User) == "u2").then(None).otherwise(pl.col(Columns.User)).alias(Columns.User)
    )
    with pytest.raises(DataError, match="1 event\\(s\\) without a user id and 0 without an item id"):
        read_weighted_events(raw, pl.Series(["a"]), PreprocessConfig(event_weights={"view": 1.0}))


@pytest.mark.parametrize(
    ("max_user", "step_us", "in_time_order"),
    # one key (whole seconds; microseconds); two columns (user + time do not fit in 64 bits);
    # input already in time order (sorted by the user alone)
    [
        (50, 1_000_000, False),
        (50, 1_234, False),
        (2**31 - 1, 25_000_001, False),
        (2**31 - 1, 3_600_000_001, False),
        (50, 1_000_000, True),
        (2**31 - 1, 3_600_000_001, True),
    ],
)
def test_sort_events_is_a_stable_sort_by_user_and_time(
    kernel_path: str, max_user: int, step_us: int, in_time_order: bool
) -> None:
    from recctl.data.preprocess import sort_events

    rng = np.random.default_rng(3)
    n = 2_000
    steps = rng.integers(0, 40, n)
    if in_time_order:  # non-decreasing down the file, with runs of equal timestamps
        steps = np.sort(steps)
    frame = pl.DataFrame(
        {
            Columns.UserIdx: rng.choice([0, 7, max_user], n).astype(np.int32),
            Columns.ItemIdx: rng.integers(0, 30, n).astype(np.int32),
            Columns.Event: rng.choice(["view", "add_to_cart", "purchase"], n),
            Columns.Timestamp: [T0 + dt.timedelta(microseconds=int(k) * step_us) for k in steps],
            Columns.Weight: np.arange(n, dtype=np.float64),  # the input row: ties must keep it ascending
        }
    ).with_columns(pl.col(Columns.Event).cast(pl.Enum(["add_to_cart", "purchase", "view"])))
    got = sort_events(frame)
    # whole rows, in order: equal (user, time) keep their input order, whatever their item or event
    assert got.equals(frame.sort(Columns.UserIdx, Columns.Timestamp, maintain_order=True))
    assert got.equals(frame.sort(Columns.UserIdx, Columns.Timestamp, Columns.Weight))


def _labelled_events(rng: np.random.Generator, n: int, n_users: int, n_items: int) -> pl.DataFrame:
    """Events in (user, time) order with labels 0-2, repeated pairs, equal timestamps and uneven weights."""
    frame = pl.DataFrame(
        {
            Columns.UserIdx: rng.integers(0, n_users, n).astype(np.int32),
            Columns.ItemIdx: rng.integers(0, n_items, n).astype(np.int32),
            Columns.Timestamp: [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 500, n)],
            # weights whose sums depend on the order they are added in only in the last bits
            Columns.Weight: rng.choice([1.0, 3.0, 5.0], n) * rng.uniform(0.5, 2.0, n),
            "label": rng.integers(0, 3, n).astype(np.uint8),
        }
    )
    return frame.sort(Columns.UserIdx, Columns.Timestamp, maintain_order=True)


@pytest.mark.parametrize("how", ["sum", "max", "last"])
@pytest.mark.parametrize("decay", [None, "user", "train_end"])
def test_labelled_events_aggregate_as_a_filter_then_group_by_on_both_paths(
    kernel_path: str, how: str, decay: str | None
) -> None:
    from recctl.data.preprocess import LabelledEvents

    events = _labelled_events(np.random.default_rng(7), 5_000, 60, 40)
    labelled = LabelledEvents(events, events["label"].to_numpy())
    assert (labelled._indptr is not None) == (kernel_path == "compiled")
    for labels in ([0], [2], [0, 1], [0, 1, 2], []):
        part = events.filter(pl.col("label").is_in(labels))
        half_life = None if decay is None else 30.0
        want = aggregate(decay_weights(part, half_life, decay or "user"), how)
        got = labelled.aggregate(labels, how, half_life_days=half_life, reference=decay or "user")
        assert got.schema == want.schema
        assert got.drop(Columns.Weight).equals(want.drop(Columns.Weight)), labels
        np.testing.assert_allclose(got[Columns.Weight].to_numpy(), want[Columns.Weight].to_numpy(), rtol=1e-12)


def test_labelled_events_out_of_time_order_take_the_polars_path() -> None:
    from recctl.data.preprocess import LabelledEvents

    events = _labelled_events(np.random.default_rng(8), 500, 10, 20)
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=1)
    labelled = LabelledEvents(shuffled, shuffled["label"].to_numpy())
    assert labelled._indptr is None
    got = labelled.aggregate([0, 1], "sum")
    want = aggregate(events.filter(pl.col("label") < 2), "sum")
    assert got.drop(Columns.Weight).equals(want.drop(Columns.Weight))
    np.testing.assert_allclose(got[Columns.Weight].to_numpy(), want[Columns.Weight].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("grouped", [True, False])
def test_distinct_pairs_on_both_paths(kernel_path: str, grouped: bool) -> None:
    from recctl.data.preprocess import _distinct_pairs

    rng = np.random.default_rng(9)
    users = rng.integers(0, 50, 3_000).astype(np.uint32)
    items = rng.integers(0, 70, 3_000).astype(np.uint32)
    if grouped:
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
    pair_user, pair_item = _distinct_pairs(users, items, 70)
    got = sorted(zip(pair_user.tolist(), pair_item.tolist(), strict=True))
    assert got == sorted(set(zip(users.tolist(), items.tolist(), strict=True)))


def test_compiled_preprocess_kernels_refuse_bad_input() -> None:
    from recctl import kernels

    aggregate_runs, counting_order = kernels.compiled("aggregate_runs"), kernels.compiled("counting_order")
    if aggregate_runs is None or counting_order is None:
        pytest.skip(f"recctl._kernels is not built ({kernels.missing_reason()})")
    indptr = np.array([0, 3], np.int64)
    items = np.array([0, 1, 0], np.int32)
    labels = np.zeros(3, np.uint8)
    weights = np.ones(3)
    out = [np.empty(3, np.int32), np.empty(3, np.int32), np.empty(3), np.empty(3, np.int64)]
    late = np.array([5, 2, 9], np.int64)  # the second event is earlier than the first
    with pytest.raises(ValueError, match="event 1 is earlier"):
        aggregate_runs(indptr, items, labels, weights, late, 2, 1, 2, *out)
    assert aggregate_runs(indptr, items, labels, weights, late, 2, 1, 0, *out) == 2  # sums need no time order
    assert out[2][:2].tolist() == [2.0, 1.0] and out[3][:2].tolist() == [9, 2]
    with pytest.raises(ValueError, match="item 1 is outside"):
        aggregate_runs(indptr, items, labels, weights, late, 1, 1, 0, *out)
    with pytest.raises(ValueError, match="too few"):
        aggregate_runs(indptr, items, labels, weights, late, 2, 1, 0, *(o[:1] for o in out))
    with pytest.raises(TypeError, match="weights: expected a 1-D C-contiguous float64"):
        aggregate_runs(indptr, items, labels, weights.astype(np.float32), late, 2, 1, 0, *out)
    order, starts = np.empty(3, np.uint32), np.empty(3, np.int64)
    with pytest.raises(ValueError, match="key at 1 \\(5\\) is not below n_keys \\(2\\)"):
        counting_order(np.array([0, 5, 1], np.uint32), 2, order, starts)
    counting_order(np.array([1, 0, 1], np.uint32), 2, order, starts)
    assert order.tolist() == [1, 0, 2] and starts.tolist() == [0, 1, 3]


def test_hugepage_advice_is_off_inside_and_restored_after() -> None:
    from recctl.memory import no_hugepage_advice

    toggle = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
    if toggle is None:
        pytest.skip("this numpy has no huge-page switch")
    before = toggle(True)  # returns the setting it replaces
    try:
        with no_hugepage_advice():
            assert toggle(False) is False  # off inside
        assert toggle(True) is True  # restored
    finally:
        toggle(before)


def test_equal_timestamps_keep_the_file_order_from_raw_files_to_splits(tmp_path: Path) -> None:
    """Two files and an appended batch: lines at one time stay in file order in events.parquet and the splits."""
    raw = tmp_path / "raw"
    raw.mkdir()
    t1, t2 = "2026-01-01 10:00:00", "2026-01-02 10:00:00"

    def write(name: str, lines: list[str]) -> Path:
        path = raw / name
        path.write_text(EVENTS_HEADER + "".join(f"{line},1\n" for line in lines), encoding="utf-8")
        return path

    # u1's first invoice z9, a1, m5 (not in id order), then b2, y8 and, appended later at the same time, c3
    write("events-1.csv", [f"u1,z9,purchase,{t1}", f"u1,a1,purchase,{t1}", f"u2,a1,view,{t1}", f"u1,m5,purchase,{t1}"])
    write("events-2.csv", [f"u1,b2,purchase,{t2}", f"u2,z9,view,{t2}", f"u1,y8,purchase,{t2}"])
    appended = write("batch.csv", [f"u1,c3,purchase,{t2}", f"u2,m5,view,{t2}"])
    cfg = make_config(
        tmp_path,
        shop_source(str(raw / "events-*.csv")),
        preprocess={
            "event_weights": {"view": 1.0, "purchase": 1.0},
            "min_user_interactions": 1,
            "min_item_interactions": 1,
            "split": {"strategy": "leave_last", "n_last": 2, "valid_n_last": 1},
        },
    )
    run_ingest(cfg)
    run_ingest(cfg, append=[appended])
    run_preprocess(cfg)
    d = cfg.stage_dir("preprocess")
    items = pl.read_parquet(d / "items.parquet").select(Columns.Item, Columns.ItemIdx)
    users = pl.read_parquet(d / "users.parquet").select(Columns.User, Columns.UserIdx)
    events = (
        pl.read_parquet(d / "events.parquet")
        .with_row_index("row")
        .join(items, on=Columns.ItemIdx)
        .join(users, on=Columns.UserIdx)
        .sort("row")
    )
    u1 = events.filter(pl.col(Columns.User) == "u1")
    assert u1[Columns.Item].to_list() == ["z9", "a1", "m5", "b2", "y8", "c3"]
    assert u1["split"].to_list() == ["tune_train"] * 3 + ["valid", "test", "test"]
    u2 = events.filter(pl.col(Columns.User) == "u2")
    assert u2[Columns.Item].to_list() == ["a1", "z9", "m5"]
    # what sequence models read: the training events, in the same order
    ds = load_dataset(d, "train")
    assert ds.events is not None
    first = int(users.filter(pl.col(Columns.User) == "u1")[Columns.UserIdx][0])
    seq = ds.events.filter(pl.col(Columns.UserIdx) == first)[Columns.ItemIdx].to_list()
    assert [ds.item_ids[i] for i in seq] == ["z9", "a1", "m5", "b2"]
