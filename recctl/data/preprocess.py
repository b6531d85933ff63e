"""Event weights, min-count / k-core filtering, id maps and per-(user, item) aggregation.

The steps of the ``preprocess`` stage that do not split or build features, each a small pure
function over polars frames so they can be tested and reused one by one.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from recctl.columns import Columns
from recctl.config.preprocess import PreprocessConfig
from recctl.errors import ConfigError, DataError

__all__ = ["LAST_TS", "aggregate", "filter_min_counts", "index_events", "weight_events"]

#: column of the aggregated split files holding the latest event time of the pair
LAST_TS = "last_ts"
_U, _I = Columns.User, Columns.Item


def weight_events(events: pl.DataFrame, cfg: PreprocessConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Give every event its weight; drop events whose weight is zero.

    ``weight = event_weights[event] x transform(value) [if use_value] x 0.5 ** (age / half_life)``,
    where age is measured back from the latest event in the data. A global reference time
    only scales every weight by the same constant, so it does not matter which split the
    weights are later aggregated in.

    Raises
    ------
    ConfigError
        If the data holds an event type without a weight (naming the types seen).
    """
    seen = sorted(events[Columns.Event].unique().to_list())
    missing = [e for e in seen if e not in cfg.event_weights]
    if missing:
        raise ConfigError(
            f"preprocess.event_weights: no weight for event type(s) {', '.join(map(repr, missing))} found in the "
            f"ingested data (types present: {', '.join(seen)}); add them (0 drops an event type)."
        )
    weight = pl.col(Columns.Event).replace_strict(cfg.event_weights, return_dtype=pl.Float64)
    if cfg.use_value:
        value = pl.col(Columns.Value).fill_null(1.0)
        if cfg.value_transform == "log1p":
            value = value.clip(lower_bound=0.0).log1p()
        elif cfg.value_transform == "binary":
            value = (value > 0).cast(pl.Float64)
        weight = weight * value
    if cfg.half_life_days is not None and events.height:
        ref = events[Columns.Timestamp].max()
        age_days = (pl.lit(ref) - pl.col(Columns.Timestamp)).dt.total_seconds() / 86400.0
        weight = weight * pl.lit(0.5).pow(age_days / cfg.half_life_days)
    weighted = events.with_columns(weight.alias(Columns.Weight))
    kept = weighted.filter(pl.col(Columns.Weight) > 0)
    return kept, {"events_in": events.height, "zero_weight_events_dropped": events.height - kept.height}


def filter_min_counts(
    events: pl.DataFrame, min_user: int, min_item: int, kcore: bool
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Drop users / items with fewer distinct partners than the minimums.

    Counts are distinct (user, item) pairs, so repeated views of one item count once. With
    ``kcore`` the filter repeats until nothing changes (every remaining user has >= min_user
    items and every item >= min_item users); otherwise it runs one pass, users first.
    """
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
    if events.height == 0:
        raise DataError(
            f"no interactions left after min-count filtering (min_user_interactions={min_user}, "
            f"min_item_interactions={min_item}, kcore={kcore}); lower preprocess.min_* ."
        )
    return events, info


def index_events(events: pl.DataFrame, catalogue_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Map ids to stable indices: ids sorted as text, so the same input gives the same indices.

    Users are those with kept events; items are the catalogue plus any interacted item missing
    from it (catalogue items without interactions keep an index for cold-start use).

    Returns
    -------
    (events, user_map, item_map)
        ``events`` with ``user_idx, item_idx`` instead of the ids; the maps are
        ``user_id, user_idx`` and ``item_id, item_idx``.
    """
    users = events.select(_U).unique().sort(_U).with_row_index(Columns.UserIdx).select(_U, Columns.UserIdx)
    item_ids = pl.concat([catalogue_ids.cast(pl.String).rename(_I).to_frame(), events.select(_I)]).unique().sort(_I)
    items = item_ids.with_row_index(Columns.ItemIdx).select(_I, Columns.ItemIdx)
    users = users.with_columns(pl.col(Columns.UserIdx).cast(pl.Int32))
    items = items.with_columns(pl.col(Columns.ItemIdx).cast(pl.Int32))
    indexed = events.join(users, on=_U).join(items, on=_I).drop(_U, _I)
    return indexed, users, items


def aggregate(events: pl.DataFrame, how: str) -> pl.DataFrame:
    """One row per (user_idx, item_idx): ``weight`` (sum, max or last event's) and ``last_ts``.

    Rows are sorted by ``user_idx, item_idx``.
    """
    if how == "sum":
        weight = pl.col(Columns.Weight).sum()
    elif how == "max":
        weight = pl.col(Columns.Weight).max()
    elif how == "last":
        weight = pl.col(Columns.Weight).sort_by(Columns.Timestamp).last()
    else:  # the config restricts the values; guard against programmatic misuse
        raise ValueError(f"unknown aggregate '{how}'")
    return (
        events.group_by(Columns.UserIdx, Columns.ItemIdx)
        .agg(weight.alias(Columns.Weight), pl.col(Columns.Timestamp).max().alias(LAST_TS))
        .sort(Columns.UserIdx, Columns.ItemIdx)
    )
