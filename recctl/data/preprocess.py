"""Event weights, min-count / k-core filtering, id maps and per-(user, item) aggregation.

The steps of the ``preprocess`` stage that do not split or build features, each a small pure
function over polars frames so they can be tested and reused one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config.preprocess import PreprocessConfig
from recctl.errors import ConfigError, DataError

__all__ = [
    "LAST_TS",
    "aggregate",
    "check_weights",
    "decay_weights",
    "filter_min_counts",
    "index_events",
    "weight_events",
]

#: column of the aggregated split files holding the latest event time of the pair
LAST_TS = "last_ts"
_U, _I = Columns.User, Columns.Item


def weight_events(events: pl.DataFrame, cfg: PreprocessConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Give every event its base weight; drop events whose weight is zero.

    ``weight = event_weights[event] x transform(value) [if use_value]``. Recency decay is not
    applied here: it depends on which events are the training part, so the stage applies
    :func:`decay_weights` to each training split after the split.

    Raises
    ------
    ConfigError
        If the data holds an event type without a weight (naming the types seen).
    DataError
        If a weight is not finite (a huge value times a huge event weight).
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
    weighted = events.with_columns(weight.alias(Columns.Weight))
    kept = weighted.filter(pl.col(Columns.Weight) > 0)
    check_weights(kept[Columns.Weight], "event weights", allow_empty=True)
    return kept, {"events_in": events.height, "zero_weight_events_dropped": events.height - kept.height}


def decay_weights(events: pl.DataFrame, half_life_days: float | None, reference: str) -> pl.DataFrame:
    """Multiply each event's weight by ``0.5 ** (age / half_life_days)``.

    ``age`` is measured back from the reference time: with ``reference="user"`` the latest
    event of the same user in ``events``, with ``"train_end"`` the latest event in ``events``.
    Pass the training part only: the reference is then the training period's own time, never
    a test event. Computed in float64, so no weight underflows before the check in
    :func:`check_weights`; with ``user`` every user's latest event weighs its full base weight.
    """
    if half_life_days is None or events.height == 0:
        return events
    ref = pl.col(Columns.Timestamp).max()
    if reference == "user":
        user = Columns.UserIdx if Columns.UserIdx in events.columns else Columns.User
        ref = ref.over(user)
    age_days = (ref - pl.col(Columns.Timestamp)).dt.total_seconds() / 86400.0
    return events.with_columns(pl.col(Columns.Weight) * pl.lit(0.5).pow(age_days / half_life_days))


def check_weights(weights: pl.Series, what: str, *, allow_empty: bool = False) -> dict[str, Any]:
    """Refuse weights that would make every model's input garbage; return their range.

    Refused (``DataError``, naming ``preprocess.half_life_days`` / ``event_weights`` and the
    fix): a weight that is not finite; every weight 0; weights spanning more than float32 can
    hold (the smallest, relative to the mean, below float32's smallest normal number, about
    1e-38): models store weights in float32, so those would become 0 and the users behind
    them would silently lose their history.
    """
    if weights.len() == 0:
        if allow_empty:
            return {}
        raise DataError(f"{what}: no weights at all; check preprocess.event_weights and the filters.")
    values = weights.cast(pl.Float64)
    n_bad = int((~values.is_finite()).sum())
    if n_bad:
        raise DataError(
            f"{what}: {n_bad:,} weights are not finite (inf or NaN): preprocess.event_weights x the value column "
            "overflowed; lower event_weights or use value_transform: log1p."
        )
    positive = values.filter(values > 0)
    if positive.len() == 0:
        raise DataError(
            f"{what}: every weight is 0; give preprocess.event_weights > 0 to the events present"
            " (or raise preprocess.half_life_days)."
        )
    mean = float(positive.mean())
    smallest = float(positive.min()) / mean
    if smallest < float(np.finfo(np.float32).tiny):
        n_tiny = int((positive / mean < float(np.finfo(np.float32).tiny)).sum())
        raise DataError(
            f"{what}: {n_tiny:,} of {positive.len():,} weights are below 1e-38 of the mean (smallest "
            f"{smallest:.3g}) and would be 0 in float32: preprocess.half_life_days is too short for the time "
            "the data spans. Raise half_life_days, or use preprocess.decay_reference: user (age measured from "
            "each user's own latest event)."
        )
    return {"min_over_mean": smallest, "max_over_mean": float(positive.max()) / mean}


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
