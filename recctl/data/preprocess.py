"""Event weights, min-count / k-core filtering, id maps and per-(user, item) aggregation.

The steps of the ``preprocess`` stage that do not split or build features, each a small pure
function over polars frames so they can be tested and reused one by one.

Why ids become integers first: the stage once filtered, joined and grouped on the id
strings, and at 20M events held several copies of them (6.5-6.8 GB peak, 26% of the time in
the filter's string pairs, 12% in the joins that map ids to indices). Now
:func:`read_weighted_events` codes every id once (a hash look-up into the sorted distinct
ids), and the filter, the id maps and the aggregation work on integer codes.

Why the events are sorted by user right after reading (:func:`sort_events` on the codes, which
are in id order as the indices will be): every later step keeps that order, and the distinct
pairs of the filter and the split files' rows (:class:`LabelledEvents`) come from each user's
run of events (the compiled ``aggregate_runs``) instead of pair keys hashed or sorted again.
Each compiled kernel has its polars / numpy path here, giving the same rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config.preprocess import PreprocessConfig
from recctl.data.idcodes import HashCodes, verify_codes
from recctl.errors import ConfigError, DataError
from recctl.kernels import compiled, wanted

__all__ = [
    "ITEM_CODE",
    "LAST_TS",
    "LabelledEvents",
    "USER_CODE",
    "CodedEvents",
    "aggregate",
    "check_event_types",
    "check_weights",
    "decay_weights",
    "event_weight",
    "filter_min_counts",
    "index_events",
    "keep_ids",
    "pair_order",
    "read_weighted_events",
    "sort_events",
    "weight_events",
]

#: column of the aggregated split files holding the latest event time of the pair
LAST_TS = "last_ts"
#: integer codes of the ids while preprocess runs (positions in the sorted distinct ids)
USER_CODE, ITEM_CODE = "user_code", "item_code"
_U, _I = Columns.User, Columns.Item
_PAIR = "__pair"
_SEED = 0x5EC7
#: a pair key is user_idx * 2**32 + item_idx (indices are Int32, so both fit)
_SHIFT = 1 << 32
#: the compiled per-pair aggregation of events in (user, time) order (None when recctl._kernels is not built)
_AGGREGATE_RUNS = compiled("aggregate_runs")
#: the compiled stable counting sort (None when recctl._kernels is not built)
_COUNTING_ORDER = compiled("counting_order")
#: ``preprocess.aggregate`` as the kernel's ``how``
_HOW_CODES = {"sum": 0, "max": 1, "last": 2}


def check_event_types(types: pl.Series, cfg: PreprocessConfig) -> None:
    """Refuse event types present in the data without a weight in ``preprocess.event_weights``.

    Raises
    ------
    ConfigError
        Naming the types without a weight and every type present.
    """
    seen = sorted(types.drop_nulls().unique().to_list())
    missing = [e for e in seen if e not in cfg.event_weights]
    if missing:
        raise ConfigError(
            f"preprocess.event_weights: no weight for event type(s) {', '.join(map(repr, missing))} found in the "
            f"ingested data (types present: {', '.join(seen)}); add them (0 drops an event type)."
        )


def event_weight(cfg: PreprocessConfig) -> pl.Expr:
    """The base weight of an event: ``event_weights[event] x transform(value) [if use_value]``.

    Null for an event type without a weight (callers check the types first:
    :func:`check_event_types`).
    """
    # a when/then chain over the few event types: replace_strict gave the same values but held
    # ~1 GB of scratch for 20M events (60 bytes an event, the chain needs none)
    weight: Any = pl
    for event, base in cfg.event_weights.items():
        weight = weight.when(pl.col(Columns.Event) == event).then(pl.lit(float(base), dtype=pl.Float64))
    weight = weight.otherwise(pl.lit(None, dtype=pl.Float64))
    if cfg.use_value:
        value = pl.col(Columns.Value).fill_null(1.0)
        if cfg.value_transform == "log1p":
            value = value.clip(lower_bound=0.0).log1p()
        elif cfg.value_transform == "binary":
            value = (value > 0).cast(pl.Float64)
        weight = weight * value
    return weight


def weight_events(events: pl.DataFrame, cfg: PreprocessConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Give every event its base weight; drop events whose weight is zero.

    ``weight = event_weights[event] x transform(value) [if use_value]`` (:func:`event_weight`).
    Recency decay is not applied here: it depends on which events are the training part, so the
    stage applies :func:`decay_weights` to each training split after the split.

    Raises
    ------
    ConfigError
        If the data holds an event type without a weight (naming the types seen).
    DataError
        If a weight is not finite (a huge value times a huge event weight).
    """
    check_event_types(events[Columns.Event], cfg)
    weighted = events.with_columns(event_weight(cfg).alias(Columns.Weight))
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
    user = Columns.UserIdx if Columns.UserIdx in events.columns else Columns.User
    return events.with_columns(pl.col(Columns.Weight) * _decay_factor(user, half_life_days, reference))


def _decay_factor(user: str, half_life_days: float, reference: str, within: pl.Expr | None = None) -> pl.Expr:
    """:func:`decay_weights`' factor per event; with ``within`` (a boolean column), the reference
    times are those of the events where it holds (the factor of any other event is meaningless)."""
    times = pl.col(Columns.Timestamp)
    ref = (times if within is None else pl.when(within).then(times)).max()
    if reference == "user":
        ref = ref.over(user)
    age_days = (ref - times).dt.total_seconds() / 86400.0
    return pl.lit(0.5).pow(age_days / half_life_days)


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


@dataclass
class CodedEvents:
    """Weighted events with integer codes in place of the id strings.

    Attributes
    ----------
    frame
        ``user_code, item_code`` (UInt32: positions in ``user_ids`` / ``item_ids``), ``event``
        (an ``Enum`` of the event types in text order, so it sorts as the text does),
        ``timestamp``, ``weight``.
    user_ids
        Every user id of the input, sorted as text: a code is a position here.
    item_ids
        Every item id of the input and of the catalogue, sorted as text.
    in_catalogue
        Per item code: listed in the catalogue (such items keep an index without events).
    """

    frame: pl.DataFrame
    user_ids: pl.Series
    item_ids: pl.Series
    in_catalogue: np.ndarray


def _universe(ids: pl.Series, name: str) -> pl.Series:
    return ids.drop_nulls().unique().sort().rename(name)


#: the second hash's seed (:func:`recctl.data.idcodes.verify_codes`)
_CHECK_SEED = 0x2B7E1516


def _id_hash(ids: Any, seed: int) -> Any:
    """The 64-bit hash of ids (an expression or a series) under ``seed``."""
    return ids.hash(seed)


def _first_of_each_hash(column: str) -> pl.Expr:
    """One id per distinct 64-bit hash.

    Hashing and keeping the first of each hash costs a quarter of a ``unique`` of the strings
    (20M events, 1M users): distinct hashes are integers. Two ids of one hash would keep only
    one here; :func:`recctl.data.idcodes.verify_codes` catches that afterwards.
    """
    return pl.col(column).filter(_id_hash(pl.col(column), _SEED).is_first_distinct())


def _code_by_hash(frame: pl.DataFrame, column: str, universe: pl.Series, code: str) -> tuple[pl.DataFrame, bool]:
    """Replace ``column``'s two hash columns in ``frame`` by the ``code`` of each event's id.

    Returns the frame and whether every event's second hash agrees with its code's (False: two
    ids share a first hash, and the frame is returned unchanged).
    """
    hashed, check = f"__{column}_hash", f"__{column}_check"
    keys = _id_hash(universe, _SEED)
    if keys.n_unique() != keys.len():  # e.g. two catalogue ids of one hash
        return frame, False
    codes = HashCodes(keys.to_numpy()).lookup(frame[hashed].to_numpy())
    if (codes == universe.len()).any() or not verify_codes(
        codes, frame[check].to_numpy(), _id_hash(universe, _CHECK_SEED).to_numpy()
    ):
        return frame, False
    return frame.drop(hashed, check).with_columns(pl.Series(code, codes)), True


def read_weighted_events(
    source: str | Path | pl.DataFrame, catalogue_ids: pl.Series, cfg: PreprocessConfig
) -> tuple[CodedEvents, dict[str, Any]]:
    """Read the canonical interactions, weight them and code their ids, without holding id strings per event.

    The weights are :func:`weight_events`'s (the same expression; events of weight 0 are
    dropped). Ids become codes in sorted text order: users among the input's users, items among
    the input's items and ``catalogue_ids``. Each event then takes 25 bytes (against ~70 with
    its strings), and the filters, id maps and aggregation that follow work on integers.

    The distinct ids are read as one id per hash (:func:`_first_of_each_hash`), then the
    events, each carrying two 64-bit hashes per id instead of the id:
    :class:`recctl.data.idcodes.HashCodes` turns the first into the code and
    :func:`recctl.data.idcodes.verify_codes` checks the second. In the (about 1 in 10^7 at 1M
    ids) case of two ids sharing a hash, the strings are read again and looked up (exact).

    Parameters
    ----------
    source
        ``ingest/interactions.parquet`` (read lazily, only the columns needed), or a frame of
        the same columns.
    catalogue_ids
        The catalogue's item ids.
    cfg
        ``preprocess`` (event weights, value transform).

    Returns
    -------
    (CodedEvents, dict)
        The coded events and ``{"events_in", "zero_weight_events_dropped"}``.

    Raises
    ------
    ConfigError
        An event type without a weight.
    DataError
        A weight that is not finite.
    """
    scan = source.lazy() if isinstance(source, pl.DataFrame) else pl.scan_parquet(source)
    # three small queries: one select of all three read the columns whole first (2x the CPU)
    types = scan.select(pl.col(Columns.Event).unique()).collect().to_series()
    check_event_types(types, cfg)
    users = _universe(scan.select(_first_of_each_hash(_U)).collect().to_series(), _U)
    listed = catalogue_ids.cast(pl.String)
    seen_items = scan.select(_first_of_each_hash(_I)).collect().to_series()
    items = _universe(pl.concat([listed.rename(_I), seen_items]), _I)
    n_in = int(scan.select(pl.len()).collect().item())
    frame = (
        scan.select(
            *(
                _id_hash(pl.col(c), seed).alias(f"__{c}_{what}")
                for c in (_U, _I)
                for what, seed in (("hash", _SEED), ("check", _CHECK_SEED))
            ),
            # an Enum in text order: sorting by it is sorting by the text
            pl.col(Columns.Event).cast(pl.Enum(types.drop_nulls().sort())),
            pl.col(Columns.Timestamp),
            event_weight(cfg).alias(Columns.Weight),
        )
        .filter(pl.col(Columns.Weight) > 0)
        .collect()
    )
    frame, users_ok = _code_by_hash(frame, _U, users, USER_CODE)
    frame, items_ok = _code_by_hash(frame, _I, items, ITEM_CODE)
    if not (users_ok and items_ok):
        # two ids share a 64-bit hash, or an id is null: look the strings up (exact, slower)
        users = _universe(scan.select(pl.col(_U).unique()).collect().to_series(), _U)
        items = _universe(pl.concat([listed.rename(_I), scan.select(pl.col(_I).unique()).collect().to_series()]), _I)
        frame = (
            scan.select(
                pl.col(_U).cast(pl.Enum(users)).to_physical().cast(pl.UInt32).alias(USER_CODE),
                pl.col(_I).cast(pl.Enum(items)).to_physical().cast(pl.UInt32).alias(ITEM_CODE),
                pl.col(Columns.Event).cast(pl.Enum(types.drop_nulls().sort())),
                pl.col(Columns.Timestamp),
                event_weight(cfg).alias(Columns.Weight),
            )
            .filter(pl.col(Columns.Weight) > 0)
            .collect()
        )
    frame = frame.select(USER_CODE, ITEM_CODE, Columns.Event, Columns.Timestamp, Columns.Weight)
    missing = {c: frame[c].null_count() for c in (USER_CODE, ITEM_CODE)}
    if any(missing.values()):
        # ingest rejects events without an id, so only a hand-made file gets here; an event
        # without a code would otherwise vanish from the counts instead of being accounted for
        raise DataError(
            f"{source if isinstance(source, (str, Path)) else 'interactions'}: {missing[USER_CODE]} event(s) "
            f"without a user id and {missing[ITEM_CODE]} without an item id; re-run `recctl ingest`."
        )
    check_weights(frame[Columns.Weight], "event weights", allow_empty=True)
    in_catalogue = items.is_in(listed.implode()).to_numpy()
    coded = CodedEvents(frame, users, items, in_catalogue)
    return coded, {"events_in": n_in, "zero_weight_events_dropped": n_in - frame.height}


def _keep(coded: CodedEvents, user_ok: np.ndarray, item_ok: np.ndarray) -> CodedEvents:
    users = coded.frame[USER_CODE].to_numpy()
    items = coded.frame[ITEM_CODE].to_numpy()
    mask = user_ok[users] & item_ok[items]
    frame = coded.frame if mask.all() else coded.frame.filter(pl.Series(mask))
    return CodedEvents(frame, coded.user_ids, coded.item_ids, coded.in_catalogue)


def _n_alive(alive: np.ndarray | None, n: int) -> int:
    return n if alive is None else int(np.count_nonzero(alive))


def _alive_only(values: np.ndarray, alive: np.ndarray | None) -> np.ndarray:
    return values if alive is None else values[alive]


def _narrow(alive: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    """``alive & keep``, still None (every pair) when ``keep`` drops nothing."""
    if keep.all():
        return alive
    return keep if alive is None else alive & keep


def filter_min_counts(
    coded: CodedEvents, min_user: int, min_item: int, kcore: bool
) -> tuple[CodedEvents, dict[str, Any]]:
    """Drop users / items with fewer distinct partners than the minimums.

    Counts are distinct (user, item) pairs, so repeated views of one item count once. With
    ``kcore`` the filter repeats until nothing changes (every remaining user has >= min_user
    items and every item >= min_item users); otherwise it runs one pass, users first.

    The rounds run on the distinct pairs (one 64-bit key each), not on the events: an event
    survives exactly when its user and its item survive every round, so the events are cut
    once, at the end.
    """
    frame = coded.frame
    n_users, n_items = coded.user_ids.len(), coded.item_ids.len()
    pair_user, pair_item = _distinct_pairs(frame[USER_CODE].to_numpy(), frame[ITEM_CODE].to_numpy(), n_items)
    user_ok = np.ones(n_users, dtype=bool)
    item_ok = np.ones(n_items, dtype=bool)
    # None while every pair is alive: the counts then read the pair arrays themselves, not
    # masked copies of them (at 20M events a round usually drops nothing)
    alive: np.ndarray | None = None
    info: dict[str, Any] = {"rounds": 0}
    while True:
        before = _n_alive(alive, len(pair_user))
        user_ok &= np.bincount(_alive_only(pair_user, alive), minlength=n_users) >= min_user
        alive = _narrow(alive, user_ok[pair_user])
        item_ok &= np.bincount(_alive_only(pair_item, alive), minlength=n_items) >= min_item
        alive = _narrow(alive, item_ok[pair_item])
        info["rounds"] += 1
        # a round that drops no pair drops no event (every pair has one), and the reverse
        if not kcore or _n_alive(alive, len(pair_user)) == before:
            break
    kept = _keep(coded, user_ok, item_ok)
    info["events_dropped"] = frame.height - kept.frame.height
    if kept.frame.height == 0:
        raise DataError(
            f"no interactions left after min-count filtering (min_user_interactions={min_user}, "
            f"min_item_interactions={min_item}, kcore={kcore}); lower preprocess.min_* ."
        )
    return kept, info


def _dense_users(users: np.ndarray) -> int | None:
    """``users``' largest value + 1 when the values are non-negative and dense enough for per-user
    arrays (at most a few times the event count: codes and indices are), else None."""
    if not len(users):
        return None
    lo, hi = int(users.min()), int(users.max())
    return hi + 1 if lo >= 0 and hi < 4 * len(users) + 1024 else None


def _user_runs(users: np.ndarray) -> np.ndarray | None:
    """Each user's run of rows (``indptr``: user u's rows are ``indptr[u]:indptr[u + 1]``) when
    ``users`` never decreases and is dense (:func:`_dense_users`), else None."""
    n_users = _dense_users(users)
    if n_users is None or not bool((users[1:] >= users[:-1]).all()):
        return None
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr


def _distinct_pairs(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (user, item) pairs of the events, as two integer arrays (user codes, item codes).

    Events grouped by user (the stage sorts them by user right after reading) take the compiled
    ``aggregate_runs`` (one pass, a per-item stamp per user: 20M events 0.2 against 0.8 CPU-s);
    otherwise one 64-bit key per event is made unique by polars.
    """
    if _AGGREGATE_RUNS is not None and wanted() and n_items < _SHIFT // 2:
        indptr = _user_runs(users)
        if indptr is not None:
            pair_user = np.empty(len(users), dtype=np.int32)
            pair_item = np.empty(len(users), dtype=np.int32)
            codes = np.ascontiguousarray(items, dtype=np.uint32).view(np.int32)
            n = _AGGREGATE_RUNS(indptr, codes, None, None, None, n_items, 1, 0, pair_user, pair_item, None, None)
            return pair_user[:n], pair_item[:n]
    # user code in the high 32 bits: splitting a key is a shift and a mask (numpy's uint64 `//`
    # and `%` by the item count cost 4.3 CPU-s for 20M pairs, the whole filter's CPU twice over)
    keys = (
        pl.DataFrame({"u": users, "i": items})
        .select((pl.col("u").cast(pl.UInt64) * _SHIFT + pl.col("i")).alias("k"))
        .to_series()
        .unique()
        .to_numpy()
    )
    # both halves are below 2**32, so the shifted / masked keys are read as int64 in place
    # (bincount's index type) instead of copied
    return (keys >> np.uint64(32)).view(np.int64), (keys & np.uint64(_SHIFT - 1)).view(np.int64)


def keep_ids(coded: CodedEvents, user_ids: pl.Series, item_ids: pl.Series) -> tuple[CodedEvents, int]:
    """Keep the events whose user is in ``user_ids`` and item in ``item_ids`` (a filter computed elsewhere).

    Returns the kept events and the number of events dropped.
    """
    user_ok = coded.user_ids.is_in(user_ids.cast(pl.String).implode()).to_numpy()
    item_ok = coded.item_ids.is_in(item_ids.cast(pl.String).implode()).to_numpy()
    kept = _keep(coded, user_ok, item_ok)
    return kept, coded.frame.height - kept.frame.height


def index_events(coded: CodedEvents) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Map ids to stable indices: ids sorted as text, so the same input gives the same indices.

    Users are those with kept events; items are the catalogue plus any interacted item missing
    from it (catalogue items without interactions keep an index for cold-start use). Codes are
    already in text order, so an index is the count of kept ids before it.

    Returns
    -------
    (events, user_map, item_map)
        ``events`` with ``user_idx, item_idx`` (Int32) instead of the codes; the maps are
        ``user_id, user_idx`` and ``item_id, item_idx``.
    """
    frame = coded.frame
    users = frame[USER_CODE].to_numpy()
    items = frame[ITEM_CODE].to_numpy()
    user_kept = np.bincount(users, minlength=coded.user_ids.len()) > 0
    item_kept = coded.in_catalogue | (np.bincount(items, minlength=coded.item_ids.len()) > 0)
    user_index = (np.cumsum(user_kept) - 1).astype(np.int32)
    item_index = (np.cumsum(item_kept) - 1).astype(np.int32)
    indexed = frame.select(
        pl.Series(Columns.UserIdx, user_index[users]),
        pl.Series(Columns.ItemIdx, item_index[items]),
        pl.exclude(USER_CODE, ITEM_CODE),
    )
    user_map = pl.DataFrame(
        {_U: coded.user_ids.filter(pl.Series(user_kept)), Columns.UserIdx: np.arange(user_kept.sum(), dtype=np.int32)}
    )
    item_map = pl.DataFrame(
        {_I: coded.item_ids.filter(pl.Series(item_kept)), Columns.ItemIdx: np.arange(item_kept.sum(), dtype=np.int32)}
    )
    return indexed, user_map, item_map


def aggregate(events: pl.DataFrame, how: str) -> pl.DataFrame:
    """One row per (user_idx, item_idx): ``weight`` (sum, max or last event's) and ``last_ts``.

    Rows are sorted by ``user_idx, item_idx``. The events are put in pair order by a stable
    sort on one 64-bit key (each pair's events keep their order), so the groups are runs of
    rows and need no hash table; a frame already in that order (a ``__pair`` column flagged
    sorted, as the stage passes) is not sorted again.
    """
    if how == "sum":
        weight = pl.col(Columns.Weight).sum()
    elif how == "max":
        weight = pl.col(Columns.Weight).max()
    elif how == "last":
        # stable: of events at one time, the last in the input (file) order
        weight = pl.col(Columns.Weight).sort_by(Columns.Timestamp, maintain_order=True).last()
    else:  # the config restricts the values; guard against programmatic misuse
        raise ValueError(f"unknown aggregate '{how}'")
    if _PAIR not in events.columns:
        events = pair_order(events)
    return (
        events.group_by(_PAIR, maintain_order=True)
        .agg(weight.alias(Columns.Weight), pl.col(Columns.Timestamp).max().alias(LAST_TS))
        .select(
            (pl.col(_PAIR) // _SHIFT).cast(pl.Int32).alias(Columns.UserIdx),
            (pl.col(_PAIR) % _SHIFT).cast(pl.Int32).alias(Columns.ItemIdx),
            Columns.Weight,
            LAST_TS,
        )
    )


def sort_events(events: pl.DataFrame, user: str = Columns.UserIdx) -> pl.DataFrame:
    """``events`` sorted by ``user`` (non-negative integers), then time; ties keep their input order.

    This is the order of ``events.parquet`` and the tie rule of every split: the stage passes
    the events in file order (``ingest/interactions.parquet``'s rows, which ingest writes file
    by file in row order, appended batches after, on both engines), so lines of one basket
    sharing a timestamp stay in the order the shop exported them. Sorting ties by item id
    instead taught sequence models the catalogue's code order, which the test never rewards.
    The stage sorts by the user codes right after reading (codes and indices are both in id
    order, so it is the same order), and every later step keeps the rows in place.

    How (the same rows in the same order every way):

    * when the times never decrease down the input (most exports are written in time order;
      checked in one pass), a stable sort by the user alone already leaves each user's events
      in time order: a counting sort (the compiled ``counting_order``, :mod:`recctl.kernels`;
      two passes, then the other columns gathered once: 20M events 0.8 against 1.8-2.1 CPU-s), or
      a stable polars sort of the frame without the extension;
    * else on one unsigned 64-bit key ``(user, time)`` when both fit in 64 bits (a user index
      of 26 bits and 38 bits of time: 67M users over 8,700 years in seconds), else on the two
      columns: the time is counted from the earliest event in its coarsest exact unit (whole
      seconds when every timestamp is, as in most exports). A stable polars sort of the frame
      moves the columns ~3x cheaper than an ``arg_sort`` followed by a gather.
    """
    by_columns = (user, Columns.Timestamp)
    times = events[Columns.Timestamp].to_physical()
    if events.height == 0 or times.null_count():
        return events.sort(*by_columns, maintain_order=True)
    values = times.to_numpy()  # Int64 without nulls: a view, not a copy
    if bool((values[1:] >= values[:-1]).all()):
        n_keys = _dense_users(events[user].to_numpy())
        if _COUNTING_ORDER is not None and wanted() and events.height < 2**32 and n_keys is not None:
            return _counting_sort(events, user, n_keys)
        # stable: the input order, which is time order here, breaks ties between a user's events
        return events.sort(user, maintain_order=True)
    t0, t1 = int(values.min()), int(values.max())
    offset = pl.col(Columns.Timestamp).to_physical() - t0
    unit = next(u for u in (10**9, 10**6, 10**3, 1) if u == 1 or not (values % u).any())
    if unit > 1:  # every timestamp is a whole number of `unit` (t0 too): dividing keeps the order
        offset = offset // unit
    time_bits = max((t1 - t0) // unit, 1).bit_length()
    user_bits = max(int(events[user].to_numpy().max()), 1).bit_length()
    if user_bits + time_bits <= 64:
        keys = [pl.col(user).cast(pl.UInt64) * (1 << time_bits) + offset.cast(pl.UInt64)]
    else:
        keys = [pl.col(user), offset]
    # stable: the input (file) order breaks ties
    return events.sort(keys, maintain_order=True)


def _counting_sort(events: pl.DataFrame, user: str, n_keys: int) -> pl.DataFrame:
    """``events`` stably sorted by ``user`` (integers in ``[0, n_keys)``) with the compiled counting sort."""
    assert _COUNTING_ORDER is not None
    users = events[user].to_numpy()
    keys = np.ascontiguousarray(users, dtype=np.uint32)  # a view for UInt32 codes, a copy for Int32 indices
    order = np.empty(len(keys), dtype=np.uint32)
    indptr = np.empty(n_keys + 1, dtype=np.int64)
    _COUNTING_ORDER(keys, n_keys, order, indptr)
    del keys
    # the user column of the sorted frame is each user repeated over its run: written, not gathered
    sorted_users = np.repeat(np.arange(n_keys, dtype=users.dtype), np.diff(indptr))
    rest = events.drop(user)[pl.Series(order)]
    return rest.with_columns(pl.Series(user, sorted_users)).select(events.columns)


def pair_order(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with a ``__pair`` key (user_idx, item_idx in 64 bits), stably sorted by it.

    Each pair's events keep their relative order; the key is flagged sorted, so
    :func:`aggregate` and filters of this frame keep using it without sorting again.
    """
    key = pl.col(Columns.UserIdx).cast(pl.UInt64) * _SHIFT + pl.col(Columns.ItemIdx).cast(pl.UInt64)
    return events.with_columns(key.alias(_PAIR)).sort(_PAIR, maintain_order=True)


class LabelledEvents:
    """Labelled events, aggregated to one row per (user, item) for any set of labels: the split files.

    Built once over the stage's events (``user_idx, item_idx, timestamp, weight`` and the
    labels as small integer codes); each :meth:`aggregate` call gives :func:`aggregate`'s rows
    for the events of some labels, decayed first when asked (:func:`decay_weights`, relative to
    those events' own time).

    Events in (user, time) order, as ``sort_events`` leaves them, are aggregated by the compiled
    ``aggregate_runs`` (:mod:`recctl.kernels`) straight from that order: per user, the events fold
    into one slot per item in event order, and the slots are ordered by item. No pair-ordered copy,
    no filtered copy per split, no group-by (at 20M events: 1.7 against 4.3 CPU-s for the five
    files, 1.4 of it in the kernel). Otherwise (the extension not built,
    ``RECCTL_TOPK_SELECTION=numpy``, or another order) the events are sorted by pair once
    (:func:`pair_order`) and each split is filtered and grouped in polars. Both give the same
    rows; sums are added in event order by the kernel and in polars' order by the fallback, so a
    sum of many weights may differ in the last bits.
    """

    def __init__(self, events: pl.DataFrame, codes: np.ndarray) -> None:
        self._events = events.select(Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp, Columns.Weight)
        self._codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self._per_code = np.bincount(self._codes, minlength=256)
        self._pairs: pl.DataFrame | None = None
        self._indptr = self._event_order_runs() if _AGGREGATE_RUNS is not None and wanted() else None
        if self._indptr is not None:  # the kernel's inputs, views of the frame's columns where the types allow
            self._items = np.ascontiguousarray(self._events[Columns.ItemIdx].to_numpy(), dtype=np.int32)
            self._times = np.ascontiguousarray(self._events[Columns.Timestamp].to_physical().to_numpy(), np.int64)
            self._n_items = int(self._items.max()) + 1

    def _event_order_runs(self) -> np.ndarray | None:
        """Each user's run of events (``indptr``) when the events are in (user, time) order, else None."""
        users = self._events[Columns.UserIdx].to_numpy()
        times = self._events[Columns.Timestamp].to_physical()
        indptr = _user_runs(users) if not times.null_count() else None
        if indptr is None:
            return None
        stamps = times.to_numpy()
        later = stamps[1:] >= stamps[:-1]
        # within a user the times never decrease (a new user's first event may be earlier)
        if not later.all() and not (later | (users[1:] != users[:-1])).all():
            return None
        return indptr

    def aggregate(
        self, labels: Collection[int], how: str, *, half_life_days: float | None = None, reference: str = "user"
    ) -> pl.DataFrame:
        """:func:`aggregate` of the events whose label code is in ``labels``, decayed first when
        ``half_life_days`` is set (relative to those events' own time, as :func:`decay_weights`)."""
        if how not in _HOW_CODES:  # the config restricts the values; guard against programmatic misuse
            raise ValueError(f"unknown aggregate '{how}'")
        if self._indptr is None or _AGGREGATE_RUNS is None:
            return self._aggregate_polars(labels, how, half_life_days, reference)
        select = sum(1 << code for code in set(labels))
        n_selected = int(sum(self._per_code[code] for code in set(labels)))
        events = self._events
        weights = events[Columns.Weight]
        if half_life_days is not None and n_selected:
            within = pl.Series("__within", np.isin(self._codes, list(labels)))
            factor = _decay_factor(Columns.UserIdx, half_life_days, reference, within=pl.col("__within"))
            weights = events.with_columns(within).select(pl.col(Columns.Weight) * factor).to_series()
        out_users = np.empty(n_selected, np.int32)
        out_items = np.empty(n_selected, np.int32)
        out_weights = np.empty(n_selected, np.float64)
        out_last = np.empty(n_selected, np.int64)
        n = _AGGREGATE_RUNS(
            self._indptr,
            self._items,
            self._codes,
            np.ascontiguousarray(weights.cast(pl.Float64).to_numpy(), dtype=np.float64),
            self._times,
            self._n_items,
            select,
            _HOW_CODES[how],
            out_users,
            out_items,
            out_weights,
            out_last,
        )
        # slices share the buffers (no copy): the rows stay in the arrays sized for every selected event
        return pl.DataFrame(
            [
                pl.Series(Columns.UserIdx, out_users[:n]),
                pl.Series(Columns.ItemIdx, out_items[:n]),
                pl.Series(Columns.Weight, out_weights[:n]),
                pl.Series(LAST_TS, out_last[:n]).cast(events.schema[Columns.Timestamp]),
            ]
        )

    def _aggregate_polars(
        self, labels: Collection[int], how: str, half_life_days: float | None, reference: str
    ) -> pl.DataFrame:
        """The fallback: the events sorted by pair once, then filtered, decayed and grouped per call."""
        if self._pairs is None:
            self._pairs = pair_order(self._events.with_columns(pl.Series("__label", self._codes)))
        pairs = self._pairs
        table = np.zeros(256, dtype=bool)
        table[list(labels)] = True
        part = pairs.filter(pl.Series(table[pairs["__label"].to_numpy()]))
        return aggregate(decay_weights(part, half_life_days, reference), how)
