"""Train / test / validation splits of weighted events.

Every event gets a ``split`` label: ``tune_train``, ``valid`` or ``test``. ``train`` (what
final models fit on) is ``tune_train`` + ``valid``; tuning fits on ``tune_train`` and scores on
``valid``, so the test split is never seen while choosing parameters. By default validation is
carved from train **by the same rule** as test is carved from everything
(``preprocess.split.valid_strategy`` picks another), so the parameters tuning picks are picked
under the protocol they are judged by.

Strategies (``preprocess.split.strategy``; ``f`` is ``test_fraction`` or ``valid_fraction``):

* ``time``: a global cut. The latest ``round(f x N)`` events (rounded half up) are test, plus any
  event at the same time as the earliest of them: events sharing a timestamp (one basket, one
  session) are never cut in two, so test holds at least ``round(f x N)`` events. ``test_start``
  gives the cut as a date instead. A user who viewed an item before the cut and bought it after
  has it in both (evaluation excludes items seen in training from the ranking anyway).
* ``user_time``: per user, the latest ``round(f x n)`` of the user's ``n`` (user, item) pairs by
  their last event are test, at most ``n - 1``: a user always keeps a pair
  in train, and a user with ``round(f x n) = 0`` keeps everything in train. The per-user
  temporal protocol of most papers ("each user's last 20% by time").
* ``leave_last``: per user, the ``n_last`` latest pairs are test (validation: ``valid_n_last``).
  Users with ``n_last`` pairs or fewer keep them all in train.
* ``random``: per user, a seeded random ``round(f x n)`` of the user's pairs (at most ``n - 1``).
* ``files``: the (user, item) pairs listed in ``test_file`` (and ``valid_file``) are test (and
  validation); everything else is train. Reproduces a published protocol's exact split.

**Equal timestamps keep the file order.** Of two events at one timestamp (lines of one invoice,
one basket) the later in the file is the later event, as a stable sort by time leaves them
(pandas' and RecTools' per-user splits): the stage passes the events sorted by user and time
with ties in file order (:func:`recctl.data.preprocess.sort_events`), and ``user_time`` and
``leave_last`` rank each pair by its last event in that order. A frame in another order is
ranked by time with ties in its row order. ``time`` never cuts a timestamp in two, so its
ties need no rule.

For every strategy but ``time``, all events of one (user, item) pair share a split, so a test
pair is never half-seen in training. ``assign_splits`` also returns a plain-language statement
of both rules with the exact counts, which ``evaluate`` copies into the protocol section of
``metrics.json``.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config.preprocess import SplitConfig
from recctl.errors import ConfigError, DataError

__all__ = [
    "SPLIT",
    "SPLIT_DTYPE",
    "SPLIT_FILES",
    "TRAINING_SPLITS",
    "assign_splits",
    "describe_rule",
    "label_codes",
    "read_pairs_file",
    "round_half_up",
]

#: name of the split label column in ``events.parquet``
SPLIT = "split"
_U, _I, _T = Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp
_TRAIN = "tune_train"
_LABELS = (_TRAIN, "valid", "test")
#: the labels while preprocess runs (the files store them as text)
SPLIT_DTYPE = pl.Enum(list(_LABELS))
#: the split files preprocess writes and the event labels each aggregates: ``train`` (final
#: models) is ``tune_train`` + ``valid``; ``all`` is every event, what models serving the nightly
#: file learn from with ``recommend.refit_on_all_data`` (never read by evaluate or tune)
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": (_TRAIN, "valid"),
    "test": ("test",),
    _TRAIN: (_TRAIN,),
    "valid": ("valid",),
    "all": _LABELS,
}
#: the split files models fit on, decayed (``half_life_days``) relative to their own time
TRAINING_SPLITS = ("train", _TRAIN, "all")
_SHIFT = 1 << 32


def label_codes(labels: tuple[str, ...] | list[str]) -> list[int]:
    """The codes of ``labels`` in :data:`SPLIT_DTYPE` (the physical values of the ``split`` column)."""
    return [_LABELS.index(label) for label in labels]


def round_half_up(x: float) -> int:
    """``x`` rounded to the nearest integer, halves up (``0.5 -> 1``, ``2.5 -> 3``).

    A tiny tolerance absorbs binary floating point: ``0.0943 * 100_000`` is
    ``9430.000000000002`` and rounds to 9,430, and ``0.15 * 10`` rounds to 2.
    """
    return int(math.floor(x + 0.5 + 1e-9))


def _round_half_up_expr(expr: pl.Expr) -> pl.Expr:
    return (expr + 0.5 + 1e-9).floor()


def describe_rule(strategy: str, cfg: SplitConfig, *, validation: bool = False) -> str:
    """One sentence saying how a split is made (for ``metrics.json`` and the report)."""
    frac = cfg.valid_fraction if validation else cfg.test_fraction
    part = "validation" if validation else "test"
    pool = "of the training part " if validation else ""
    if strategy == "none":
        return "no validation split (valid_fraction: 0 or valid_strategy: none)"
    if strategy == "time":
        if not validation and cfg.test_start is not None:
            return f"global time cut: every event at or after {cfg.test_start} is {part}"
        return (
            f"global time cut: the latest round({frac:g} x events {pool}) events (half up) are {part}, plus "
            "events at the same timestamp as the cut"
        )
    if strategy == "user_time":
        return (
            f"per user, the latest round({frac:g} x n) of the user's n items {pool}by last event (half up; at "
            f"most n - 1) are {part}"
        )
    if strategy == "leave_last":
        n = cfg.valid_n_last if validation else cfg.n_last
        return f"per user, the {n} latest items {pool}by last event are {part} (users with <= {n} items keep all)"
    if strategy == "random":
        return f"per user, a seeded random round({frac:g} x n) of the user's n items {pool}(half up; at most n - 1)"
    if strategy == "files":
        path = cfg.valid_file if validation else cfg.test_file
        return f"the (user, item) pairs listed in {path}"
    raise ValueError(f"unknown split strategy '{strategy}'")


def _parse_date(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"preprocess.split.test_start: '{text}' is not an ISO date (e.g. 2026-04-01 or 2026-04-01T00:00:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _time_cut(times: pl.Series, fraction: float) -> Any:
    """The earliest timestamp of the latest ``round(fraction x n)`` events (``None`` when that is 0)."""
    n_take = min(round_half_up(fraction * times.len()), times.len())
    if n_take == 0:
        return None
    # the (n - n_take)-th smallest, by selection (linear) rather than a full sort
    physical = times.to_physical()
    position = times.len() - n_take
    cut = np.partition(physical.to_numpy(), position)[position]
    return pl.Series([cut], dtype=physical.dtype).cast(times.dtype)[0]


def _label(labelled: pl.DataFrame, take: pl.Expr | pl.Series, label: str) -> pl.DataFrame:
    """Label ``label`` the ``tune_train`` events where ``take`` holds."""
    pool = pl.col(SPLIT) == _TRAIN
    return labelled.with_columns(
        pl.when(pool & take).then(pl.lit(label, dtype=SPLIT_DTYPE)).otherwise(pl.col(SPLIT)).alias(SPLIT)
    )


def _label_time(labelled: pl.DataFrame, fraction: float, label: str, cut: Any, info: dict[str, Any]) -> pl.DataFrame:
    if cut is None:
        cut = _time_cut(labelled.filter(pl.col(SPLIT) == _TRAIN)[_T], fraction)
    if cut is None:
        return labelled
    info[f"{label}_start"] = str(cut)
    return _label(labelled, pl.col(_T) >= cut, label)


def _pair_key() -> pl.Expr:
    """One UInt64 per (user_idx, item_idx): the filters and counts below hash one integer, not two columns."""
    return pl.col(_U).cast(pl.UInt64) * _SHIFT + pl.col(_I).cast(pl.UInt64)


def _in_event_order(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is sorted by user, then time (as :func:`recctl.data.preprocess.sort_events` leaves it)."""
    user_step = pl.col(_U).diff()
    time_step = pl.col(_T).to_physical().diff()
    return bool(frame.select(((user_step > 0) | ((user_step == 0) & (time_step >= 0))).all()).item())


def _event_rank(frame: pl.DataFrame) -> pl.Expr:
    """Per event, its place in time: later events get higher numbers; equal timestamps by row order.

    A frame already sorted by user and time (the stage's) needs no sort: within a user, the row
    number is the order. Otherwise the events are ranked by time, ties by row order.
    """
    if _in_event_order(frame):
        return pl.int_range(pl.len(), dtype=pl.UInt32)
    return pl.col(_T).rank("ordinal")


def _pair_label(labelled: pl.DataFrame, strategy: str, amount: float, label: str, seed: int) -> pl.DataFrame:
    """Label ``label`` the chosen (user, item) pairs among each user's ``tune_train`` events.

    "Latest" pairs are ranked by their last event, and of two events at one timestamp the one
    later in ``labelled``'s row order is the later (the stage passes the events in file order
    within each timestamp): a basket's last line is its latest, as in the file.
    """
    key = _pair_key()
    pool = labelled.filter(pl.col(SPLIT) == _TRAIN)
    pairs = (
        pool.select(key.alias("__pair"), _event_rank(pool).alias("__last"))
        .group_by("__pair")
        .agg(pl.col("__last").max())
        .sort("__pair")
        .select(
            (pl.col("__pair") // _SHIFT).cast(labelled.schema[_U]).alias(_U),
            (pl.col("__pair") % _SHIFT).cast(labelled.schema[_I]).alias(_I),
            "__last",
        )
    )
    del pool
    n = pl.len().over(_U)
    if strategy == "random":
        keyed = pairs.with_columns(pl.Series("__key", np.random.default_rng(seed).random(pairs.height)))
        rank = pl.col("__key").rank("ordinal").over(_U)
    else:  # latest first: ranks of distinct events, so the order is total and repeatable
        keyed = pairs
        rank = pl.col("__last").rank("ordinal", descending=True).over(_U)
    if strategy == "leave_last":
        n_take = pl.when(n > int(amount)).then(pl.lit(int(amount))).otherwise(0)
    else:
        n_take = pl.min_horizontal(_round_half_up_expr(n * amount), n - 1)
    chosen = keyed.filter(rank <= n_take).select(key).to_series()
    return _label(labelled, key.is_in(chosen.implode()), label)


def _file_label(labelled: pl.DataFrame, pairs: pl.DataFrame, label: str, info: dict[str, Any]) -> pl.DataFrame:
    key = _pair_key()
    listed = pairs.select(key).to_series().unique()
    in_data = labelled.select(key).to_series().unique()
    found = int(listed.is_in(in_data.implode()).sum())
    info[f"{label}_pairs_listed"] = int(listed.len())
    info[f"{label}_pairs_not_in_data"] = int(listed.len() - found)
    # a pair listed in both files stays test: validation is carved from the training part only
    return _label(labelled, key.is_in(listed.implode()), label)


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


def _user_has(labelled: pl.DataFrame, which: pl.Expr) -> pl.Expr:
    """Per event: whether its user has some event where ``which`` holds (counted by user index, not hashed)."""
    users = labelled[_U].to_numpy()
    size = int(users.max()) + 1 if len(users) else 0
    has = np.bincount(users[labelled.select(which).to_series().to_numpy()], minlength=size) > 0
    return pl.lit(pl.Series(has[users]))


def assign_splits(
    events: pl.DataFrame,
    cfg: SplitConfig,
    seed: int,
    *,
    held_out: dict[str, pl.DataFrame] | None = None,
    count_pairs: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Label every event ``tune_train``, ``valid`` or ``test`` and drop cold test users.

    Parameters
    ----------
    events
        ``user_idx, item_idx, timestamp, ...`` (any further columns are kept); the indices are
        non-negative integers (as preprocess numbers them).
    cfg
        ``preprocess.split``.
    seed
        Seed for the ``random`` strategy (validation uses ``seed + 1``).
    held_out
        ``strategy: files``: ``{"test": pairs, "valid": pairs}`` frames of ``user_idx, item_idx``
        (from :func:`read_pairs_file`, mapped to indices).
    count_pairs
        Count the distinct (user, item) pairs of each label into the summary's ``pairs``. The
        preprocess stage passes False and fills ``pairs`` from its per-split files, whose rows
        are those pairs (counting them here hashed every event again: ~1 CPU-s at 20M events).

    Returns
    -------
    (polars.DataFrame, dict)
        The labelled events (``split`` is an Enum of the three labels, :data:`SPLIT_DTYPE`: one
        byte an event, and it compares equal to the label's text) and a summary: the rule of
        each split in words, cut times, events per split, users dropped.
    """
    held_out = held_out or {}
    valid_strategy = cfg.validation_strategy
    info: dict[str, Any] = {
        "strategy": cfg.strategy,
        "valid_strategy": valid_strategy,
        "test_rule": describe_rule(cfg.strategy, cfg),
        "valid_rule": describe_rule(valid_strategy, cfg, validation=True),
    }
    labelled = events.with_columns(pl.lit(_TRAIN, dtype=SPLIT_DTYPE).alias(SPLIT))
    labelled = _carve(labelled, cfg.strategy, cfg, "test", seed, held_out.get("test"), info)
    if valid_strategy != "none":
        labelled = _carve(labelled, valid_strategy, cfg, "valid", seed + 1, held_out.get("valid"), info)

    # validation users unseen in tune_train cannot be scored by a model fit on tune_train:
    # their events go back to tune_train (they stay in train either way)
    back = (pl.col(SPLIT) == "valid") & ~_user_has(labelled, pl.col(SPLIT) == _TRAIN)
    info["valid_events_moved_to_tune_train"] = int(labelled.select(back.sum()).item())
    labelled = labelled.with_columns(
        pl.when(back).then(pl.lit(_TRAIN, dtype=SPLIT_DTYPE)).otherwise(pl.col(SPLIT)).alias(SPLIT)
    )

    cold = (pl.col(SPLIT) == "test") & ~_user_has(labelled, pl.col(SPLIT) != "test")
    cold_users, cold_events = labelled.select(pl.col(_U).filter(cold).n_unique(), cold.sum()).row(0)
    info["cold_test_users"] = int(cold_users)
    info["cold_test_events"] = int(cold_events)
    if cfg.drop_cold_test_users and cold_events:
        labelled = labelled.filter(~cold)
        info["cold_test_users_dropped"] = True
    per_label = [pl.len()] + ([_pair_key().n_unique()] if count_pairs else [])
    counts = {label: rest for label, *rest in labelled.group_by(SPLIT).agg(*per_label).rows()}
    info["events"] = {name: int(counts[name][0]) if name in counts else 0 for name in _LABELS}
    if count_pairs:
        info["pairs"] = {name: int(counts[name][1]) if name in counts else 0 for name in _LABELS}
    if info["events"]["test"] == 0:
        raise ConfigError(
            "preprocess.split: the test split is empty after filtering; lower min counts, move "
            "`test_start` earlier or raise `test_fraction` (or list pairs present in the data in `test_file`)."
        )
    return labelled, info


def read_pairs_file(path: Path, source: Any, key: str) -> pl.DataFrame:
    """Read a held-out pairs file (``strategy: files``) as ``user_id, item_id`` text columns.

    The file has the layout (format, delimiter, header, encoding) of ``source``, the first
    ``data.interactions`` source, and its user and item columns are named as that source maps
    them, or ``user_id`` / ``item_id``. Ids are normalised exactly like ingest does, so they
    match the ingested ones. Other columns are ignored.

    Raises
    ------
    ConfigError
        When the file does not exist or lacks the id columns (naming ``key``).
    """
    from recctl.data.ingest import normalise_id, scan_source
    from recctl.data.readers import detect_format, prepare_file

    if not path.exists():
        raise ConfigError(f"{key}: file not found: {path}; check the path (relative to the config file).")
    fmt = detect_format(path, getattr(source, "format", "auto"))
    with tempfile.TemporaryDirectory(prefix="recctl-pairs-") as tmp:
        prepared = prepare_file(path, fmt, source.encoding, Path(tmp), delimiter=source.delimiter)
        frame = scan_source(prepared, fmt, source, shown=path).collect()
    names = [(source.columns.user_id, source.columns.item_id), (Columns.User, Columns.Item)]
    for user_col, item_col in names:
        if user_col in frame.columns and item_col in frame.columns:
            numeric = getattr(source, "normalize_numeric_ids", True)
            pairs = frame.select(
                normalise_id(pl.col(user_col), numeric).alias(Columns.User),
                normalise_id(pl.col(item_col), numeric).alias(Columns.Item),
            ).drop_nulls()
            if pairs.height == 0:
                raise DataError(f"{path} ({key}): no (user, item) pair with both ids present.")
            return pairs.unique(maintain_order=True)
    raise ConfigError(
        f"{key}: {path} has columns {frame.columns[:10]}; it needs the user and item columns "
        f"'{source.columns.user_id}' and '{source.columns.item_id}' (as in data.interactions.columns) "
        f"or '{Columns.User}' and '{Columns.Item}'."
    )
