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

:func:`recommend_changed` writes a full ``recommend/`` output (unchanged users' rows copied
from the previous run, changed users re-scored) plus ``changed_users.parquet``;
:func:`write_delta` writes the export's delta file: the users whose published list differs
from the previous published file.
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

from recctl.artifacts import Manifest, utc_now
from recctl.columns import Columns
from recctl.config import Config
from recctl.errors import ArtifactError, DataError
from recctl.incremental.current import UPDATE_STAGE, current_update
from recctl.progress import Progress, report

__all__ = [
    "CHANGED_USERS_FILE",
    "ChangedUsers",
    "changed_users",
    "new_item_scorer",
    "new_item_scores",
    "read_previous_export",
    "recommend_changed",
    "write_delta",
]

log = logging.getLogger(__name__)

CHANGED_USERS_FILE = "changed_users.parquet"
LAST_UPDATE = "last-update"
_BLOCK = 4096


@dataclass
class ChangedUsers:
    """Users whose lists must be re-scored, and why."""

    user_idx: np.ndarray
    since: str
    n_with_events: int
    n_new_item_effect: int
    new_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def frame(self, user_ids: np.ndarray, with_events: np.ndarray) -> pl.DataFrame:
        """``user_id, user_idx, reason`` (``events`` or ``new_items``)."""
        reason = np.where(np.isin(self.user_idx, with_events), "events", "new_items")
        return pl.DataFrame(
            {
                Columns.User: user_ids[self.user_idx].astype(str),
                Columns.UserIdx: self.user_idx,
                "reason": reason,
            }
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


def _users_with_events(data_dir: Path, since: str, update: tuple[Path, Manifest] | None) -> np.ndarray:
    if since == LAST_UPDATE:
        if update is None:
            raise ArtifactError(
                f"--changed-since {LAST_UPDATE}: there is no current update; "
                "run `recctl update CONFIG` first "
                "(or pass an ISO time)."
            )
        return pl.read_parquet(update[0] / "changes.parquet")[Columns.UserIdx].to_numpy().astype(np.int64)
    cut = _parse_since(since)
    events = data_dir / "events.parquet"
    if not events.exists():
        raise ArtifactError(f"{events}: missing; --changed-since needs the events of the serving data.")
    frame = pl.scan_parquet(events).filter(pl.col(Columns.Timestamp) >= cut).select(Columns.UserIdx).unique().collect()
    return np.sort(frame[Columns.UserIdx].to_numpy().astype(np.int64))


def changed_users(
    ctx: Any, since: str, previous: pl.DataFrame | None, *, progress: Progress | None = None
) -> ChangedUsers:
    """Users to re-score: new events since ``since`` plus the new-item effect.

    Parameters
    ----------
    ctx
        The loaded :class:`~recctl.stages.recommend.ServingContext`.
    since
        ``last-update`` or an ISO date/time.
    previous
        The previous ``recommendations.parquet`` (for each user's lowest listed score), or
        ``None`` to treat every user as reachable by new items.
    progress
        Optional progress callback.
    """
    update = current_update(ctx.cfg)
    with_events = _users_with_events(ctx.preprocess_dir, since, update)
    new_items = np.empty(0, np.int64)
    if update is not None and (update[0] / "new_items.parquet").exists():
        new_items = pl.read_parquet(update[0] / "new_items.parquet")[Columns.ItemIdx].to_numpy().astype(np.int64)
        if since != LAST_UPDATE and update[1].started_at < _parse_since(since).strftime("%Y-%m-%dT%H:%M:%S"):
            new_items = np.empty(0, np.int64)  # the update predates `since`: its items are not new
    if ctx.rules.item_mask is not None and len(new_items):
        new_items = new_items[ctx.rules.item_mask[new_items]]
    affected = np.empty(0, np.int64)
    if len(new_items):
        affected = _new_item_effect(ctx, new_items, previous, progress)
    users = np.union1d(with_events, affected).astype(np.int64)
    return ChangedUsers(
        users,
        since,
        int(len(with_events)),
        int(len(np.setdiff1d(affected, with_events))),
        new_items,
    )


def _new_item_effect(
    ctx: Any, new_items: np.ndarray, previous: pl.DataFrame | None, progress: Progress | None
) -> np.ndarray:
    """Users for whom the best new item beats the lowest score of their current list."""
    n_users = ctx.n_users
    if previous is None:
        return np.arange(n_users, dtype=np.int64)
    model = ctx.models[ctx.rc.model]
    idx = ctx.user_index(previous[Columns.User].to_numpy())
    # floor = lowest score of the main model's items in the list; lists that are short or
    # backfilled by a fallback (other score scale) are always re-scored
    prev = previous.with_columns(pl.Series("__u", idx))
    per_user = (
        prev.group_by("__u")
        .agg(
            pl.len().alias("n"),
            pl.col(Columns.Score).min().alias("floor"),
            (pl.col(Columns.Source) != ctx.rc.model).any().alias("mixed"),
        )
        .filter(pl.col("__u") >= 0)
    )
    floor = np.full(n_users, -np.inf, np.float64)
    u = per_user["__u"].to_numpy()
    ok = (per_user["n"].to_numpy() >= ctx.rc.k) & ~per_user["mixed"].to_numpy()
    floor[u[ok]] = per_user["floor"].to_numpy()[ok]
    hit = []
    scorer = new_item_scorer(model, new_items)
    for start in range(0, n_users, _BLOCK):
        users = np.arange(start, min(start + _BLOCK, n_users))
        scores = scorer(users)
        if ctx.exclusions is not None:
            seen = ctx.exclusions[users][:, new_items].toarray() > 0
            scores = np.where(seen, -np.inf, scores)
        hit.append(users[scores.max(axis=1) > floor[users]])
        report(progress, "new-item effect", users[-1] + 1, n_users)
    return np.concatenate(hit) if hit else np.empty(0, np.int64)


def recommend_changed(cfg: Config, since: str, *, progress: Progress | None = None) -> Manifest:
    """Re-score only the changed users and rewrite ``recommend/`` (others' rows copied).

    Parameters
    ----------
    cfg
        The experiment config.
    since
        ``last-update`` (the users of the current update) or an ISO date/time.
    progress
        Optional progress callback.

    Returns
    -------
    Manifest
        The recommend manifest, with ``summary.changed_since``, ``n_rescored`` and ``n_kept``.

    Raises
    ------
    ArtifactError
        No previous full ``recommend`` run, or no current update for ``last-update``.
    """
    from recctl.stages._common import StageRun, require_stage
    from recctl.stages.recommend import (
        ASSIGNMENTS_FILE,
        HOLDOUT,
        RECOMMEND_FILE,
        _StreamWriter,
        block_to_table,
        iter_list_blocks,
        load_context,
        recommend_section,
        recommendation_schema,
    )

    rc = recommend_section(cfg)
    rerun = f"run `recctl recommend {cfg.source_path or 'CONFIG'}` once in full first"
    try:
        prev_dir, prev_manifest = require_stage(
            cfg, "recommend", [RECOMMEND_FILE], sections=["recommend", "experiment"]
        )
    except ArtifactError as exc:
        raise ArtifactError(f"--changed-since needs the previous lists: {exc}; {rerun}.") from exc
    previous = pl.read_parquet(prev_dir / RECOMMEND_FILE)
    ctx = load_context(cfg)
    changed = changed_users(ctx, since, previous, progress=progress)
    user_ids = ctx.user_ids[changed.user_idx]
    variants = None
    assignments = None
    if cfg.experiment is not None:
        from recctl.abtest.assign import assign_variants

        assigned = np.asarray(assign_variants(list(ctx.user_ids), cfg.experiment), dtype=object)
        assignments = pl.DataFrame({Columns.User: ctx.user_ids.astype(str), Columns.Variant: assigned.astype(str)})
        keep = assigned[changed.user_idx] != HOLDOUT
        user_ids, variants = user_ids[keep], assigned[changed.user_idx][keep]
    with_events = _users_with_events(ctx.preprocess_dir, since, current_update(cfg))
    generated_at = utc_now()
    with StageRun(cfg, "recommend", sections=["recommend", "experiment"], inputs=ctx.inputs) as run:
        fresh_path = run.dir / ".rescored.parquet"
        writer = _StreamWriter(fresh_path, recommendation_schema(variants is not None))
        try:
            for block, sources, models in iter_list_blocks(ctx, user_ids, variants=variants, progress=progress):
                writer.write(block_to_table(block, ctx, sources, models))
        finally:
            writer.close()
        fresh = pl.read_parquet(fresh_path)
        fresh_path.unlink()
        rescored = pl.DataFrame({Columns.User: ctx.user_ids[changed.user_idx].astype(str)})
        kept = previous.join(rescored, on=Columns.User, how="anti")
        order = pl.DataFrame({Columns.User: ctx.user_ids.astype(str), "__o": np.arange(ctx.n_users)})
        merged = (
            pl.concat([kept, fresh.cast(kept.schema)], how="vertical")
            .join(order, on=Columns.User, how="left")
            .sort("__o", Columns.Rank, nulls_last=True)
            .drop("__o")
        )
        path = run.dir / RECOMMEND_FILE
        merged.write_parquet(path, compression="zstd")
        run.add_output(path, merged.height)
        frame = changed.frame(ctx.user_ids, with_events)
        frame.write_parquet(run.dir / CHANGED_USERS_FILE, compression="zstd")
        run.add_output(run.dir / CHANGED_USERS_FILE, frame.height)
        if assignments is not None:
            assignments.write_parquet(run.dir / ASSIGNMENTS_FILE, compression="zstd")
            run.add_output(run.dir / ASSIGNMENTS_FILE, assignments.height)
        lengths = merged.group_by(Columns.User).agg(pl.len().alias("n"))
        by_source = dict(merged.group_by(Columns.Source).agg(pl.len()).iter_rows())
        run.summary.update(
            k=rc.k,
            model=rc.model,
            fallback=list(rc.fallback),
            n_users=int(lengths.height),
            n_rows=merged.height,
            n_short_lists=int((lengths["n"] < rc.k).sum()),
            rows_by_source={k: int(v) for k, v in by_source.items()},
            rule_exclusions=ctx.rules.excluded,
            n_eligible_items=int(ctx.rules.item_mask.sum()) if ctx.rules.item_mask is not None else ctx.n_items,
            exclusions=prev_manifest.summary.get("exclusions"),
            n_holdout=int((assignments[Columns.Variant] == HOLDOUT).sum()) if assignments is not None else 0,
            generated_at=generated_at,
            users_requested=False,
            changed_since=since,
            n_rescored=int(len(user_ids)),
            n_kept=int(kept[Columns.User].n_unique()),
            n_changed_with_events=changed.n_with_events,
            n_changed_by_new_items=changed.n_new_item_effect,
            serving=UPDATE_STAGE if current_update(cfg) is not None else "train",
            previous_generated_at=prev_manifest.summary.get("generated_at"),
        )
    log.info(
        "recommend --changed-since %s: %d users re-scored, %d kept",
        since,
        len(user_ids),
        kept.height,
    )
    return run.manifest


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
