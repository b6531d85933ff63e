"""The preprocess stage as it was written before issue 18 made it lean: the reference its outputs are compared with.

A plain transcription of the stage's data flow over string ids (weights, min-count / k-core filter
on string pairs, id maps by joins, splits, one ``group_by`` per split file), kept here so that
the faster stage (integer codes, pair-ordered aggregation) can be checked to give the same
files. Not used by recctl itself. It carries each event's row in ``interactions.parquet`` as a
column (the stage keeps the rows in order instead): equal timestamps are ordered by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config import Config
from recctl.config.preprocess import SplitConfig
from recctl.data.preprocess import LAST_TS, decay_weights, weight_events
from recctl.data.split import SPLIT, _parse_date, _round_half_up_expr, describe_rule, round_half_up
from recctl.errors import ConfigError

_U, _I = Columns.User, Columns.Item
_T = Columns.Timestamp
#: each event's row in ingest/interactions.parquet (file order)
_ROW = "__row"
_TRAIN = "tune_train"

SPLIT_FILES = (
    ("train", ["tune_train", "valid"]),
    ("test", ["test"]),
    ("tune_train", ["tune_train"]),
    ("valid", ["valid"]),
    ("all", ["tune_train", "valid", "test"]),
)
_TRAINING = ("train", "tune_train", "all")


def filter_min_counts(events: pl.DataFrame, min_user: int, min_item: int, kcore: bool) -> tuple[pl.DataFrame, dict]:
    """The filter on string (user, item) pairs, a round at a time."""
    info: dict[str, Any] = {"rounds": 0}
    n0 = events.height
    while True:
        before = events.height
        pairs = events.select(_U, _I).unique()
        good_users = pairs.group_by(_U).agg(pl.len().alias("n")).filter(pl.col("n") >= min_user).select(_U)
        events = events.join(good_users, on=_U, how="semi")
        pairs = events.select(_U, _I).unique()
        good_items = pairs.group_by(_I).agg(pl.len().alias("n")).filter(pl.col("n") >= min_item).select(_I)
        events = events.join(good_items, on=_I, how="semi")
        info["rounds"] += 1
        if not kcore or events.height == before:
            break
    info["events_dropped"] = n0 - events.height
    return events, info


def index_events(events: pl.DataFrame, catalogue_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Id maps in sorted id order, applied by joins."""
    users = events.select(_U).unique().sort(_U).with_row_index(Columns.UserIdx).select(_U, Columns.UserIdx)
    item_ids = pl.concat([catalogue_ids.cast(pl.String).rename(_I).to_frame(), events.select(_I)]).unique().sort(_I)
    items = item_ids.with_row_index(Columns.ItemIdx).select(_I, Columns.ItemIdx)
    users = users.with_columns(pl.col(Columns.UserIdx).cast(pl.Int32))
    items = items.with_columns(pl.col(Columns.ItemIdx).cast(pl.Int32))
    indexed = events.join(users, on=_U).join(items, on=_I).drop(_U, _I)
    return indexed, users, items


def aggregate(events: pl.DataFrame, how: str) -> pl.DataFrame:
    """One row per (user_idx, item_idx) by a hash ``group_by``."""
    weight = {
        "sum": pl.col(Columns.Weight).sum(),
        "max": pl.col(Columns.Weight).max(),
        "last": pl.col(Columns.Weight).sort_by(Columns.Timestamp, _ROW).last(),
    }[how]
    return (
        events.group_by(Columns.UserIdx, Columns.ItemIdx)
        .agg(weight.alias(Columns.Weight), pl.col(Columns.Timestamp).max().alias(LAST_TS))
        .sort(Columns.UserIdx, Columns.ItemIdx)
    )


# --- the splits as recctl/data/split.py labelled them (string labels, joins) ---
_UX, _IX = Columns.UserIdx, Columns.ItemIdx


def _time_cut(times: pl.Series, fraction: float) -> Any:
    """The earliest timestamp of the latest ``round(fraction x n)`` events (``None`` when that is 0)."""
    n_take = min(round_half_up(fraction * times.len()), times.len())
    if n_take == 0:
        return None
    return times.sort()[times.len() - n_take]


def _label_time(labelled: pl.DataFrame, fraction: float, label: str, cut: Any, info: dict[str, Any]) -> pl.DataFrame:
    pool = pl.col(SPLIT) == _TRAIN
    if cut is None:
        cut = _time_cut(labelled.filter(pool)[_T], fraction)
    if cut is None:
        return labelled
    info[f"{label}_start"] = str(cut)
    return labelled.with_columns(
        pl.when(pool & (pl.col(_T) >= cut)).then(pl.lit(label)).otherwise(pl.col(SPLIT)).alias(SPLIT)
    )


def _pair_label(labelled: pl.DataFrame, strategy: str, amount: float, label: str, seed: int) -> pl.DataFrame:
    """Label ``label`` the chosen (user, item) pairs among each user's ``tune_train`` events."""
    # a pair's last event: the latest, and of events at one timestamp the later in the file (_ROW)
    pairs = (
        labelled.filter(pl.col(SPLIT) == _TRAIN)
        .group_by(_UX, _IX)
        .agg(pl.col(_T).max().alias("__last"), pl.col(_ROW).sort_by(_T, _ROW).last().alias("__last_row"))
        .sort(_UX, _IX)
    )
    n = pl.len().over(_UX)
    if strategy == "random":
        keyed = pairs.with_columns(pl.Series("__key", np.random.default_rng(seed).random(pairs.height)))
        rank = pl.col("__key").rank("ordinal").over(_UX)
    else:  # latest first; equal times: later in the file first
        keyed = pairs
        rank = pl.struct(pl.col("__last"), pl.col("__last_row")).rank("ordinal", descending=True).over(_UX)
    if strategy == "leave_last":
        n_take = pl.when(n > int(amount)).then(pl.lit(int(amount))).otherwise(0)
    else:
        n_take = pl.min_horizontal(_round_half_up_expr(n * amount), n - 1)
    chosen = keyed.filter(rank <= n_take).select(_UX, _IX, pl.lit(True).alias("__take"))
    out = labelled.join(chosen, on=[_UX, _IX], how="left")
    return out.with_columns(
        pl.when((pl.col(SPLIT) == _TRAIN) & pl.col("__take").fill_null(False))
        .then(pl.lit(label))
        .otherwise(pl.col(SPLIT))
        .alias(SPLIT)
    ).drop("__take")


def _file_label(labelled: pl.DataFrame, pairs: pl.DataFrame, label: str, info: dict[str, Any]) -> pl.DataFrame:
    listed = pairs.select(_UX, _IX).unique().with_columns(pl.lit(True).alias("__take"))
    out = labelled.join(listed, on=[_UX, _IX], how="left")
    found = out.filter(pl.col("__take").fill_null(False)).select(_UX, _IX).unique().height
    info[f"{label}_pairs_listed"] = int(listed.height)
    info[f"{label}_pairs_not_in_data"] = int(listed.height - found)
    # a pair listed in both files stays test: validation is carved from the training part only
    take = pl.col("__take").fill_null(False) & (pl.col(SPLIT) == _TRAIN)
    return out.with_columns(pl.when(take).then(pl.lit(label)).otherwise(pl.col(SPLIT)).alias(SPLIT)).drop("__take")


def _carve(
    labelled: pl.DataFrame,
    strategy: str,
    cfg: SplitConfig,
    label: str,
    seed: int,
    pairs: pl.DataFrame | None,
    info: dict[str, Any],
) -> pl.DataFrame:
    validation = label == "valid"
    fraction = cfg.valid_fraction if validation else cfg.test_fraction
    if strategy == "time":
        cut = _parse_date(cfg.test_start) if (not validation and cfg.test_start is not None) else None
        return _label_time(labelled, fraction, label, cut, info)
    if strategy == "files":
        assert pairs is not None, "the stage reads the pairs files"
        return _file_label(labelled, pairs, label, info)
    if strategy == "leave_last":
        return _pair_label(labelled, strategy, cfg.valid_n_last if validation else cfg.n_last, label, seed)
    return _pair_label(labelled, strategy, fraction, label, seed)


def assign_splits_reference(
    events: pl.DataFrame,
    cfg: SplitConfig,
    seed: int,
    *,
    held_out: dict[str, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Label every event ``tune_train``, ``valid`` or ``test`` and drop cold test users."""
    held_out = held_out or {}
    valid_strategy = cfg.validation_strategy
    info: dict[str, Any] = {
        "strategy": cfg.strategy,
        "valid_strategy": valid_strategy,
        "test_rule": describe_rule(cfg.strategy, cfg),
        "valid_rule": describe_rule(valid_strategy, cfg, validation=True),
    }
    labelled = events.with_columns(pl.lit(_TRAIN).alias(SPLIT))
    labelled = _carve(labelled, cfg.strategy, cfg, "test", seed, held_out.get("test"), info)
    if valid_strategy != "none":
        labelled = _carve(labelled, valid_strategy, cfg, "valid", seed + 1, held_out.get("valid"), info)

    # validation users unseen in tune_train cannot be scored by a model fit on tune_train:
    # their events go back to tune_train (they stay in train either way)
    tune_users = labelled.filter(pl.col(SPLIT) == _TRAIN).select(_UX).unique()
    in_tune = pl.col(_UX).is_in(tune_users[_UX].implode())
    moved = labelled.filter((pl.col(SPLIT) == "valid") & ~in_tune).height
    labelled = labelled.with_columns(
        pl.when((pl.col(SPLIT) == "valid") & ~in_tune).then(pl.lit(_TRAIN)).otherwise(pl.col(SPLIT)).alias(SPLIT)
    )
    info["valid_events_moved_to_tune_train"] = moved

    train_users = labelled.filter(pl.col(SPLIT) != "test").select(_UX).unique()
    cold = labelled.filter((pl.col(SPLIT) == "test") & ~pl.col(_UX).is_in(train_users[_UX].implode()))
    info["cold_test_users"] = cold[_UX].n_unique()
    info["cold_test_events"] = cold.height
    if cfg.drop_cold_test_users and cold.height:
        labelled = labelled.filter(~((pl.col(SPLIT) == "test") & ~pl.col(_UX).is_in(train_users[_UX].implode())))
        info["cold_test_users_dropped"] = True
    counts = dict(labelled.group_by(SPLIT).agg(pl.len()).iter_rows())
    info["events"] = {name: int(counts.get(name, 0)) for name in (_TRAIN, "valid", "test")}
    pair_counts = dict(labelled.select(_UX, _IX, SPLIT).unique().group_by(SPLIT).agg(pl.len()).iter_rows())
    info["pairs"] = {name: int(pair_counts.get(name, 0)) for name in (_TRAIN, "valid", "test")}
    if info["events"]["test"] == 0:
        raise ConfigError(
            "preprocess.split: the test split is empty after filtering; lower min counts, move "
            "`test_start` earlier or raise `test_fraction` (or list pairs present in the data in `test_file`)."
        )
    return labelled, info


def _reindex_users(labelled: pl.DataFrame, user_map: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    present = labelled.select(Columns.UserIdx).unique()
    kept = user_map.join(present, on=Columns.UserIdx, how="semi").sort(Columns.User)
    remap = kept.with_row_index("__new").with_columns(pl.col("__new").cast(pl.Int32))
    labelled = (
        labelled.join(remap.select(Columns.UserIdx, "__new"), on=Columns.UserIdx)
        .drop(Columns.UserIdx)
        .rename({"__new": Columns.UserIdx})
    )
    return labelled, remap.select(Columns.User, pl.col("__new").alias(Columns.UserIdx))


def reference_preprocess(
    cfg: Config, held_out_ids: dict[str, pl.DataFrame] | None = None
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Every parquet file the stage writes (but features), and the summary's counts, the old way.

    ``held_out_ids``: ``strategy: files`` pairs as ``user_id, item_id`` (read by the caller).
    """
    pc = cfg.preprocess
    ingest_dir = Path(cfg.stage_dir("ingest"))
    # the file order, carried as a column through every join: it breaks ties in time
    frame = pl.read_parquet(ingest_dir / "interactions.parquet").with_row_index(_ROW)
    frame, weights = weight_events(frame, pc)
    frame, filt = filter_min_counts(frame, pc.min_user_interactions, pc.min_item_interactions, pc.kcore)
    catalogue = pl.read_parquet(ingest_dir / "items.parquet")
    frame, user_map, item_map = index_events(frame, catalogue[Columns.Item])
    held_out = {
        k: v.join(user_map, on=Columns.User).join(item_map, on=Columns.Item) for k, v in (held_out_ids or {}).items()
    }
    labelled, split_info = assign_splits_reference(frame, pc.split, cfg.seed, held_out=held_out)
    if labelled[Columns.UserIdx].n_unique() != user_map.height:
        labelled, user_map = _reindex_users(labelled, user_map)
    users_out = user_map
    users_path = ingest_dir / "users.parquet"
    if users_path.exists():
        users_out = user_map.join(pl.read_parquet(users_path), on=Columns.User, how="left")
    out = {
        "users": users_out.sort(Columns.UserIdx),
        "items": item_map.join(catalogue, on=Columns.Item, how="left").sort(Columns.ItemIdx),
    }
    events = labelled.select(
        Columns.UserIdx, Columns.ItemIdx, Columns.Event, Columns.Timestamp, Columns.Weight, SPLIT, _ROW
    ).sort(Columns.UserIdx, Columns.Timestamp, _ROW)
    out["events"] = events.drop(_ROW)
    for name, labels in SPLIT_FILES:
        part = events.filter(pl.col(SPLIT).is_in(labels))
        if name in _TRAINING:
            part = decay_weights(part, pc.half_life_days, pc.decay_reference)
        out[name] = aggregate(part, pc.aggregate)
    summary = {"weights": weights, "filter": filt, "split": split_info}
    return out, summary
