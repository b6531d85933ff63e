"""Train / test / validation splits of weighted events.

Every event gets a ``split`` label: ``tune_train``, ``valid`` or ``test``. ``train`` (what
final models fit on) is ``tune_train`` + ``valid``; tuning fits on ``tune_train`` and scores on
``valid``, so the test split is never seen while choosing parameters. Validation is carved from
train by the same strategy as test is carved from everything.

Strategies (``preprocess.split.strategy``):

* ``time``: a global cut. Events at or after ``test_start`` (or the ``1 - test_fraction``
  quantile of event times) are test; within train, the last ``valid_fraction`` of event time
  is validation. Per event: a user who viewed an item before the cut and bought it after has it
  in both (evaluation excludes items seen in training from the ranking anyway).
* ``leave_last``: per user, the ``n_last`` most recent (user, item) pairs (by their last event)
  are test, the next ``valid_n_last`` validation. Users with too few pairs keep them all in train.
* ``random``: per user, a seeded random ``test_fraction`` of their (user, item) pairs is test
  (rounded, at least one pair stays in train), then ``valid_fraction`` of the rest is validation.

For ``leave_last`` and ``random`` all events of one (user, item) pair share a split, so a test
pair is never half-seen in training.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config.preprocess import SplitConfig
from recctl.errors import ConfigError

__all__ = ["SPLIT", "assign_splits"]

#: name of the split label column in ``events.parquet``
SPLIT = "split"
_U, _I, _T = Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp


def _parse_date(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"preprocess.split.test_start: '{text}' is not an ISO date (e.g. 2026-04-01 or 2026-04-01T00:00:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _time_cut(times: pl.Series, fraction: float) -> Any:
    # the cut is an event time: the quantile with "lower" interpolation, so ties stay together
    return times.sort().quantile(1.0 - fraction, interpolation="lower")


def _time_split(events: pl.DataFrame, cfg: SplitConfig, info: dict[str, Any]) -> pl.DataFrame:
    if cfg.test_start is not None:
        cut = _parse_date(cfg.test_start)
    else:
        cut = _time_cut(events[_T], cfg.test_fraction)
    labelled = events.with_columns(
        pl.when(pl.col(_T) >= cut).then(pl.lit("test")).otherwise(pl.lit("tune_train")).alias(SPLIT)
    )
    info["test_start"] = str(cut)
    train_times = labelled.filter(pl.col(SPLIT) == "tune_train")[_T]
    if cfg.valid_fraction > 0 and train_times.len():
        vcut = _time_cut(train_times, cfg.valid_fraction)
        labelled = labelled.with_columns(
            pl.when((pl.col(SPLIT) == "tune_train") & (pl.col(_T) >= vcut))
            .then(pl.lit("valid"))
            .otherwise(pl.col(SPLIT))
            .alias(SPLIT)
        )
        info["valid_start"] = str(vcut)
    return labelled


def _pairs(events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by(_U, _I).agg(pl.col(_T).max().alias("__last")).sort(_U, _I)


def _leave_last(pairs: pl.DataFrame, n_last: int, label: str, eligible: str | None) -> pl.DataFrame:
    pool = pl.col(SPLIT) == eligible if eligible else pl.col(SPLIT).is_not_null()
    ranked = pairs.with_columns(
        pl.struct(pl.col("__last"), pl.col(_I)).rank("ordinal", descending=True).over(_U, pool).alias("__rank"),
        pool.sum().over(_U).alias("__n"),
    )
    take = pool & (pl.col("__rank") <= n_last) & (pl.col("__n") > n_last)
    return ranked.with_columns(pl.when(take).then(pl.lit(label)).otherwise(pl.col(SPLIT)).alias(SPLIT)).drop(
        "__rank", "__n"
    )


def _random(pairs: pl.DataFrame, fraction: float, label: str, eligible: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    pool = pl.col(SPLIT) == eligible
    keyed = pairs.with_columns(pl.Series("__key", rng.random(pairs.height)))
    ranked = keyed.with_columns(
        pl.col("__key").rank("ordinal").over(_U, pool).alias("__rank"),
        pool.sum().over(_U).alias("__n"),
    )
    # round the share per user, but always leave at least one pair behind
    n_take = pl.min_horizontal((pl.col("__n") * fraction).round(0), pl.col("__n") - 1)
    take = pool & (pl.col("__rank") <= n_take)
    return ranked.with_columns(pl.when(take).then(pl.lit(label)).otherwise(pl.col(SPLIT)).alias(SPLIT)).drop(
        "__key", "__rank", "__n"
    )


def assign_splits(events: pl.DataFrame, cfg: SplitConfig, seed: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Label every event ``tune_train``, ``valid`` or ``test`` and drop cold test users.

    Parameters
    ----------
    events
        ``user_idx, item_idx, timestamp, ...`` (any further columns are kept).
    cfg
        ``preprocess.split``.
    seed
        Seed for the ``random`` strategy.

    Returns
    -------
    (polars.DataFrame, dict)
        The labelled events and a summary (cut times, rows per split, users dropped).
    """
    info: dict[str, Any] = {"strategy": cfg.strategy}
    if cfg.strategy == "time":
        labelled = _time_split(events, cfg, info)
    else:
        pairs = _pairs(events).with_columns(pl.lit("tune_train").alias(SPLIT))
        if cfg.strategy == "leave_last":
            pairs = _leave_last(pairs, cfg.n_last, "test", None)
            pairs = _leave_last(pairs, cfg.valid_n_last, "valid", "tune_train") if cfg.valid_fraction > 0 else pairs
        else:
            pairs = _random(pairs, cfg.test_fraction, "test", "tune_train", seed)
            if cfg.valid_fraction > 0:
                pairs = _random(pairs, cfg.valid_fraction, "valid", "tune_train", seed + 1)
        labelled = events.join(pairs.select(_U, _I, SPLIT), on=[_U, _I], how="left")

    # validation users unseen in tune_train cannot be scored by a model fit on tune_train:
    # their events go back to tune_train (they stay in train either way)
    tune_users = labelled.filter(pl.col(SPLIT) == "tune_train").select(_U).unique()
    in_tune = pl.col(_U).is_in(tune_users[_U].implode())
    moved = labelled.filter((pl.col(SPLIT) == "valid") & ~in_tune).height
    labelled = labelled.with_columns(
        pl.when((pl.col(SPLIT) == "valid") & ~in_tune).then(pl.lit("tune_train")).otherwise(pl.col(SPLIT)).alias(SPLIT)
    )
    info["valid_events_moved_to_tune_train"] = moved

    train_users = labelled.filter(pl.col(SPLIT) != "test").select(_U).unique()
    cold = labelled.filter((pl.col(SPLIT) == "test") & ~pl.col(_U).is_in(train_users[_U].implode()))
    info["cold_test_users"] = cold[_U].n_unique()
    info["cold_test_events"] = cold.height
    if cfg.drop_cold_test_users and cold.height:
        labelled = labelled.filter(~((pl.col(SPLIT) == "test") & ~pl.col(_U).is_in(train_users[_U].implode())))
        info["cold_test_users_dropped"] = True
    counts = dict(labelled.group_by(SPLIT).agg(pl.len()).iter_rows())
    info["events"] = {name: int(counts.get(name, 0)) for name in ("tune_train", "valid", "test")}
    if info["events"]["test"] == 0:
        raise ConfigError(
            "preprocess.split: the test split is empty after filtering; lower min counts, move "
            "`test_start` earlier or raise `test_fraction`."
        )
    return labelled, info
