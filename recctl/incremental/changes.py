"""Re-score only what changed: the users whose lists can differ since a point in time.

A list can change for two reasons:

1. the user has **new events** (since an ISO time, or in the last ``recctl update``);
2. a **new item** could now enter the list: for each user the best score among the new items
   is compared with the lowest score of the user's current list; only users for whom a new
   item would rank are re-scored. The new items' scores are computed on their own (a
   ``users x new items`` product for embedding models, a sparse column slice for item-kNN),
   never as a full ``users x items`` pass.

Exactness: with ``update.lightfm_mode: fold_in`` (item embeddings fixed) and the exact models
(popularity aside), every other user's list is what a full ``recommend`` would give. After
``fit_partial`` the item embeddings moved a little for everyone, so the lists of users not
re-scored are yesterday's, slightly stale — the drift guard measures by how much, and a full
``recctl recommend`` refreshes them all. Popularity is a global list: it changes for
everyone, and ``--changed-since`` does not chase that.

A third reason is a **new customer** (named by the inputs, absent from the previous lists).

:func:`changed_positions` says who to re-score; the ``recommend`` stage re-scores them through
the same list builder as a full run and copies everyone else's rows
(``recctl.stages.recommend``); :func:`write_delta` writes the export's delta file: the users
whose published list differs from the previous published file.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.artifacts import Manifest
from recctl.columns import Columns
from recctl.data.positions import IdPositions
from recctl.errors import ArtifactError, DataError
from recctl.progress import Progress, report

__all__ = [
    "CHANGED_USERS_FILE",
    "LAST_UPDATE",
    "ChangedUsers",
    "changed_positions",
    "new_item_scorer",
    "new_item_scores",
    "read_previous_export",
    "write_delta",
]

log = logging.getLogger(__name__)

CHANGED_USERS_FILE = "changed_users.parquet"
LAST_UPDATE = "last-update"
_BLOCK = 4096


@dataclass
class ChangedUsers:
    """Audience positions whose lists must be re-scored, and why."""

    positions: np.ndarray
    reasons: np.ndarray  # per position: "events", "new_items" or "new_customer"
    since: str
    n_with_events: int
    n_new_item_effect: int
    n_new_customers: int
    new_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def frame(self, user_ids: pl.Series) -> pl.DataFrame:
        """``user_id, reason`` of every re-scored user."""
        return pl.DataFrame(
            {Columns.User: user_ids.gather(self.positions), "reason": pl.Series(self.reasons, dtype=pl.String)}
        )


def _parse_since(since: str) -> dt.datetime:
    text = since.strip()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(
            f"--changed-since: '{since}' is neither '{LAST_UPDATE}' nor an ISO date/time "
            "(e.g. 2026-05-01 or "
            "2026-05-01T06:00:00Z)."
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def new_item_scorer(model: Any, new_items: np.ndarray) -> Any:
    """A function ``users -> scores of new_items`` that avoids scoring the whole catalogue.

    Embedding models (LightFM) multiply by the new items' vectors only; item-kNN multiplies
    the users' rows by the new items' similarity columns (sliced once); other models fall
    back to full scoring and slice.
    """
    new_items = np.asarray(new_items, np.int64)
    if hasattr(model, "user_repr_") and hasattr(model, "item_repr_"):
        vectors_t = np.ascontiguousarray(model.item_repr_[new_items].T)
        biases = model.item_bias_[new_items][None, :]

        def embedding(users: np.ndarray) -> np.ndarray:
            return model.user_repr_[users] @ vectors_t + biases + model.user_bias_[users][:, None]

        return embedding
    if hasattr(model, "similarity_") and hasattr(model, "user_items_"):
        columns = sp.csc_matrix(model.similarity_)[:, new_items].tocsr()

        def neighbours(users: np.ndarray) -> np.ndarray:
            return (model.user_items_[users] @ columns).toarray()

        return neighbours
    return lambda users: np.asarray(model.score(users))[:, new_items]


def new_item_scores(model: Any, users: np.ndarray, new_items: np.ndarray) -> np.ndarray:
    """Scores of ``new_items`` for ``users`` (see :func:`new_item_scorer`)."""
    return new_item_scorer(model, new_items)(np.asarray(users, np.int64))


def _positions_of(users: IdPositions, ids: pl.Series) -> np.ndarray:
    """Audience positions of ``ids`` (unknown ids dropped), sorted and distinct."""
    found = users.lookup(ids)
    return np.unique(found[found >= 0])


def _with_events(
    users: IdPositions, since: str, events: pl.LazyFrame, update: tuple[Path, Manifest] | None
) -> np.ndarray:
    if since == LAST_UPDATE:
        if update is None:
            raise ArtifactError(
                f"--changed-since {LAST_UPDATE}: there is no current update; "
                "run `recctl update CONFIG` first "
                "(or pass an ISO time)."
            )
        return _positions_of(users, pl.read_parquet(update[0] / "changes.parquet")[Columns.User])
    cut = _parse_since(since)
    ids = events.filter(pl.col(Columns.Timestamp) >= cut).select(Columns.User).unique().collect()[Columns.User]
    return _positions_of(users, ids)


def changed_positions(
    audience: Any,
    since: str,
    previous: pl.DataFrame,
    *,
    model: Any,
    main: str,
    k: int,
    item_mask: np.ndarray | None,
    events: pl.LazyFrame,
    update: tuple[Path, Manifest] | None,
    progress: Progress | None = None,
) -> ChangedUsers:
    """Audience positions to re-score: new events since ``since``, new items, new customers.

    Parameters
    ----------
    audience
        The full :class:`~recctl.lists.audience.Audience`.
    since
        ``last-update`` or an ISO date/time.
    previous
        The previous ``recommendations.parquet`` (each user's lowest listed score).
    model, main
        The main model and its name (rows whose items all come from it have a comparable floor).
    k
        List length (a short list is always re-scored).
    item_mask
        Items the rules allow (new items outside it change nothing).
    events
        The ingested events (``user_id, timestamp``), for an ISO ``since``.
    update
        The current update's directory and manifest, or ``None``.
    progress
        Optional progress callback.
    """
    users = IdPositions(audience.user_ids)
    with_events = _with_events(users, since, events, update)
    new_items = np.empty(0, np.int64)
    if update is not None and (update[0] / "new_items.parquet").exists():
        new_items = pl.read_parquet(update[0] / "new_items.parquet")[Columns.ItemIdx].to_numpy().astype(np.int64)
        if since != LAST_UPDATE and update[1].started_at < _parse_since(since).strftime("%Y-%m-%dT%H:%M:%S"):
            new_items = np.empty(0, np.int64)  # the update predates `since`: its items are not new
    if item_mask is not None and len(new_items):
        new_items = new_items[item_mask[new_items]]
    affected = np.empty(0, np.int64)
    if len(new_items):
        affected = _new_item_effect(audience, model, main, k, new_items, previous, progress)
    unlisted = np.ones(len(users), dtype=bool)
    unlisted[_positions_of(users, previous[Columns.User].unique())] = False
    fresh = np.flatnonzero(unlisted).astype(np.int64)
    positions = np.union1d(np.union1d(with_events, affected), fresh).astype(np.int64)
    reasons = np.where(
        np.isin(positions, with_events), "events", np.where(np.isin(positions, fresh), "new_customer", "new_items")
    )
    return ChangedUsers(
        positions,
        reasons,
        since,
        int(len(with_events)),
        int(len(np.setdiff1d(affected, with_events))),
        int(len(np.setdiff1d(fresh, with_events))),
        new_items,
    )


def _new_item_effect(
    audience: Any,
    model: Any,
    main: str,
    k: int,
    new_items: np.ndarray,
    previous: pl.DataFrame,
    progress: Progress | None,
) -> np.ndarray:
    """Audience positions for whom the best new item beats the lowest score of their current list.

    Users the model does not know (served from their history) are always re-scored: their
    lists come from item-based scoring, cheap for the few of them.
    """
    pos = np.flatnonzero(audience.rows >= 0)
    unknown = np.flatnonzero(audience.rows < 0)
    per_user = (
        previous.group_by(Columns.User)
        .agg(
            pl.len().alias("n"),
            pl.col(Columns.Score).min().alias("floor"),
            (pl.col(Columns.Source) != main).any().alias("mixed"),
        )
        .with_columns(pl.col(Columns.User).cast(pl.String))
    )
    # floor = lowest score of the main model's items in the list; lists that are short or
    # filled by a fallback (another score scale) are always re-scored
    floors = (
        pl.DataFrame({Columns.User: audience.user_ids.gather(pos)})
        .join(per_user, on=Columns.User, how="left")
        .with_columns(
            pl.when((pl.col("n") >= k) & ~pl.col("mixed")).then(pl.col("floor")).otherwise(None).alias("floor")
        )["floor"]
        .fill_null(-np.inf)
        .to_numpy()
        .astype(np.float64)
    )
    scorer = new_item_scorer(model, new_items)
    hit = [unknown]
    for start in range(0, len(pos), _BLOCK):
        block = pos[start : start + _BLOCK]
        scores = np.asarray(scorer(audience.rows[block]), np.float64)
        if audience.exclude is not None:
            seen = audience.exclude[block][:, new_items].toarray() > 0
            scores = np.where(seen, -np.inf, scores)
        hit.append(block[scores.max(axis=1) > floors[start : start + _BLOCK]])
        report(progress, "new-item effect", start + len(block), len(pos))
    return np.unique(np.concatenate(hit)).astype(np.int64)


def read_previous_export(directory: Path, export_cfg: Any) -> pl.DataFrame | None:
    """The currently published file (the ``latest`` pointer's), read back; ``None`` if none.

    Read *before* publishing: publishing the same date again overwrites that file.
    """
    from recctl.export import EXTENSIONS, _current, read_export

    name = _current(directory, export_cfg)
    if not name or not name.endswith("." + EXTENSIONS[export_cfg.format]) or not (directory / name).exists():
        return None
    return read_export(directory / name, export_cfg.format)


def write_delta(recs: pl.DataFrame, previous: pl.DataFrame | None, path: Path, write: Any) -> dict[str, Any]:
    """Write the export delta: every row of the users whose list differs from the previous file.

    Parameters
    ----------
    recs
        The long recommendations being published.
    previous
        The previously published rows (``None``: everyone is in the delta).
    path
        Where the delta goes (written atomically).
    write
        ``write(frame, tmp_path) -> rows``: the export's own writer (same format and schema).

    Returns
    -------
    dict
        ``path``, ``rows``, ``users`` (changed), ``new_users``, ``sha256``.
    """
    from recctl.artifacts import atomic_path, sha256_file

    key = [Columns.User, Columns.Rank, Columns.Item]

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(key).with_columns(
            pl.col(Columns.User).cast(pl.String),
            pl.col(Columns.Item).cast(pl.String),
            pl.col(Columns.Rank).cast(pl.Int64),
        )

    cur = keyed(recs)
    new_users = 0
    if previous is None:
        changed = cur.select(Columns.User).unique()
        new_users = changed.height
    else:
        prev = keyed(previous)
        # a user changed when any (rank, item) row differs in either direction
        diff = pl.concat([cur.join(prev, on=key, how="anti"), prev.join(cur, on=key, how="anti")])
        changed = (
            diff.select(Columns.User).unique().join(cur.select(Columns.User).unique(), on=Columns.User, how="semi")
        )
        new_users = (
            cur.select(Columns.User)
            .unique()
            .join(prev.select(Columns.User).unique(), on=Columns.User, how="anti")
            .height
        )
    delta = recs.join(changed, on=Columns.User, how="semi")
    with atomic_path(path) as tmp:
        rows = write(delta, tmp)
    return {
        "path": str(path),
        "rows": int(rows),
        "users": changed.height,
        "new_users": new_users,
        "sha256": sha256_file(path),
    }
