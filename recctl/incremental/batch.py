"""Which ingested rows are new since a model was trained, and the dataset grown with them.

``recctl ingest --append`` keeps the earlier rows of ``interactions.parquet`` first and in
order, and records every batch (with the rows it ``added``) in the ingest manifest. So the
rows a dataset has not seen are a *suffix* of the file: everything after the rows of the
batches already consumed.

The grown dataset keeps every old user and item at its old index and appends new ones at the
end (sorted by id among themselves), so model rows stay valid. New events are weighted with
the same code as ``preprocess`` (:func:`recctl.data.preprocess.weight_events`) and aggregated
into the old training matrix with the configured ``aggregate``. With a recency half-life the
old weights are first decayed to the new reference time (every weight is relative to the
latest event, so this is one constant factor: exact). New items get catalogue features
projected onto the existing feature columns (a category value or token never seen before
has no column: it is dropped until the next full preprocess).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.artifacts import Manifest
from recctl.columns import Columns
from recctl.config import Config
from recctl.data.dataset import Dataset, interactions_matrix
from recctl.data.positions import IdPositions
from recctl.data.preprocess import LAST_TS, decay_weights, weight_events
from recctl.errors import ArtifactError

if TYPE_CHECKING:
    from recctl.data.features import FeatureBlock

__all__ = ["GrownData", "PendingRows", "consumed_by_preprocess", "grow_dataset", "pending_rows"]

log = logging.getLogger(__name__)


@dataclass
class PendingRows:
    """Ingested interaction rows a dataset has not seen yet."""

    frame: pl.DataFrame
    batches: list[dict[str, Any]]
    start_row: int
    end_row: int


def consumed_by_preprocess(pre_manifest: Manifest, ingest_manifest: Manifest) -> tuple[int, list[str]]:
    """Rows of ``interactions.parquet`` (and batch hashes) the preprocess run had read.

    Ingest writes the configured sources' rows first, then the ``--append`` batches in the
    order they were appended (a full re-ingest re-reads them in that order, keeping their
    ``ingested_at``). So preprocess read every source batch plus the append batches ingested
    before it started, and the rows it read are a prefix of the file. This assumes the
    configured source files did not change since; when they did, retrain.

    Raises
    ------
    ArtifactError
        When the batch list is not in the order described above.
    """
    rows, shas, seen_pending = 0, [], False
    for batch in ingest_manifest.summary.get("batches", []):
        consumed = batch.get("kind") != "append" or batch.get("ingested_at", "") <= pre_manifest.started_at
        if consumed and seen_pending:
            raise ArtifactError(
                f"ingest batch {batch['path']} comes after batches preprocess never read; the "
                "ingested data was reordered. Run `recctl preprocess CONFIG` and "
                "`recctl train CONFIG` (a full retrain)."
            )
        if consumed:
            rows += int(batch["added"])
            shas.append(batch["sha256"])
        else:
            seen_pending = True
    return rows, shas


def pending_rows(
    ingest_dir: Path, ingest_manifest: Manifest, consumed_rows: int, consumed_shas: list[str]
) -> PendingRows:
    """The rows after the first ``consumed_rows`` of ``interactions.parquet``.

    Raises
    ------
    ArtifactError
        When the file has fewer rows than were consumed (it was rewritten).
    """
    batches = [b for b in ingest_manifest.summary.get("batches", []) if b["sha256"] not in set(consumed_shas)]
    lazy = pl.scan_parquet(ingest_dir / "interactions.parquet")
    total = lazy.select(pl.len()).collect().item()
    if total < consumed_rows:
        raise ArtifactError(
            f"{ingest_dir / 'interactions.parquet'}: {total} rows but the model has seen "
            f"{consumed_rows}; "
            "ingest was rewritten. Run `recctl preprocess CONFIG` and `recctl train CONFIG`."
        )
    frame = lazy.slice(consumed_rows).collect()
    return PendingRows(frame=frame, batches=batches, start_row=consumed_rows, end_row=total)


@dataclass
class GrownData:
    """The dataset after a batch, in the ``preprocess`` directory layout (as frames)."""

    users: pl.DataFrame
    items: pl.DataFrame
    train: pl.DataFrame
    new_events: pl.DataFrame
    n_old_users: int
    n_old_items: int
    changed_users: np.ndarray
    item_features: sp.csr_matrix | None = None
    item_feature_names: pl.DataFrame | None = None
    user_features: sp.csr_matrix | None = None
    user_feature_names: pl.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        """Users after the batch."""
        return self.users.height

    @property
    def n_items(self) -> int:
        """Items after the batch."""
        return self.items.height

    def dataset(self, events: pl.DataFrame | None = None) -> Dataset:
        """The in-memory :class:`~recctl.data.dataset.Dataset` models train on."""
        return Dataset(
            user_ids=self.users[Columns.User].to_numpy().astype(object),
            item_ids=self.items[Columns.Item].to_numpy().astype(object),
            interactions=interactions_matrix(self.train, self.n_users, self.n_items),
            item_features=self.item_features,
            item_feature_names=None
            if self.item_feature_names is None
            else self.item_feature_names["feature"].to_list(),
            user_features=self.user_features,
            user_feature_names=None
            if self.user_feature_names is None
            else self.user_feature_names["feature"].to_list(),
            events=events,
            items=self.items,
        )


def _append_ids(known: pl.DataFrame, id_col: str, idx_col: str, ids: pl.Series) -> pl.DataFrame:
    """Give ids not in ``known`` the next indices (sorted by id, so the result is stable)."""
    new = ids.cast(pl.String).unique().to_frame(id_col).join(known.select(id_col), on=id_col, how="anti").sort(id_col)
    start = known.height
    new = new.with_row_index(idx_col, offset=start).with_columns(pl.col(idx_col).cast(pl.Int32)).select(id_col, idx_col)
    return new


def _project_features(
    table: pl.DataFrame,
    rows: np.ndarray,
    old_names: pl.DataFrame,
    spec: Sequence[FeatureBlock],
    key: str,
    max_vocab: int,
    min_df: int,
) -> tuple[sp.csr_matrix, int]:
    """Features of ``rows`` of ``table`` on the *existing* feature columns (others dropped)."""
    from recctl.data.features import build_features

    n_cols = old_names.height
    if len(rows) == 0:
        return sp.csr_matrix((0, n_cols), dtype=np.float32), 0
    # build over the whole table so quantile edges and idf see the catalogue, then keep the
    # new rows' entries on columns that already exist
    matrix, names = build_features(table, spec, key=key, max_vocab=max_vocab, min_df=min_df)
    mapping = IdPositions(old_names["feature"]).lookup(names["feature"])
    sub = sp.csr_matrix(matrix[rows]).tocoo()
    cols = mapping[sub.col] if len(mapping) else sub.col
    keep = cols >= 0
    out = sp.csr_matrix((sub.data[keep], (sub.row[keep], cols[keep])), shape=(len(rows), n_cols), dtype=np.float32)
    return out, int((~keep).sum())


def _load_features(base_dir: Path, prefix: str) -> tuple[sp.csr_matrix, pl.DataFrame] | None:
    """A saved feature matrix and its column names, or None when preprocess wrote none."""
    path = base_dir / f"{prefix}_features.npz"
    if not path.exists():
        return None
    return sp.load_npz(path).tocsr().astype(np.float32), pl.read_parquet(base_dir / f"{prefix}_feature_names.parquet")


def grow_dataset(
    cfg: Config,
    base_dir: Path,
    pending: pl.DataFrame,
    *,
    catalogue: pl.DataFrame | None = None,
    user_table: pl.DataFrame | None = None,
    split: str = "train",
) -> GrownData:
    """Add new canonical interaction rows (and new catalogue items) to a dataset.

    Parameters
    ----------
    cfg
        The experiment config (``preprocess`` section).
    base_dir
        A directory in the preprocess layout (``preprocess/`` or a previous ``update/``).
    pending
        New canonical interactions (``user_id, item_id, event, timestamp, value``).
    catalogue
        The ingested catalogue (``item_id`` + attributes); items in it but not in the base are
        added as new (cold) items, with features.
    user_table
        The ingested user attributes, for new users' features.
    split
        The aggregated pairs the models were fitted on: ``train``, or ``all`` (train + test)
        for the serving models refitted on every event (``recommend.refit_on_all_data``).

    Returns
    -------
    GrownData
    """
    pc = cfg.preprocess
    users = pl.read_parquet(base_dir / "users.parquet").sort(Columns.UserIdx)
    items = pl.read_parquet(base_dir / "items.parquet").sort(Columns.ItemIdx)
    train = pl.read_parquet(base_dir / f"{split}.parquet")
    n_old_users, n_old_items = users.height, items.height

    weighted, weight_info = (
        weight_events(pending, pc)
        if pending.height
        else (
            pending.with_columns(pl.lit(None, pl.Float64).alias(Columns.Weight)),
            {"events_in": 0, "zero_weight_events_dropped": 0},
        )
    )
    if pc.half_life_days is not None and weighted.height:
        # relative to the batch's own latest event (per user or overall); _merge_train then
        # brings the old pairs and the new events to a common reference
        weighted = decay_weights(weighted, pc.half_life_days, pc.decay_reference)
    new_users = _append_ids(users, Columns.User, Columns.UserIdx, weighted[Columns.User])
    item_sources = [weighted[Columns.Item]]
    if catalogue is not None:
        item_sources.append(catalogue[Columns.Item].cast(pl.String))
    new_items = _append_ids(items, Columns.Item, Columns.ItemIdx, pl.concat(item_sources))
    if user_table is not None and new_users.height:
        new_users = new_users.join(user_table, on=Columns.User, how="left")
    if catalogue is not None and new_items.height:
        new_items = new_items.join(
            catalogue.with_columns(pl.col(Columns.Item).cast(pl.String)),
            on=Columns.Item,
            how="left",
        )
    users_all = pl.concat([users, new_users], how="diagonal_relaxed").sort(Columns.UserIdx)
    items_all = pl.concat([items, new_items], how="diagonal_relaxed").sort(Columns.ItemIdx)

    umap = users_all.select(Columns.User, Columns.UserIdx)
    imap = items_all.select(Columns.Item, Columns.ItemIdx)
    # by user and time, equal timestamps in the batch's file order (the joins may reorder rows)
    events = (
        weighted.with_row_index("__row")
        .join(umap, on=Columns.User)
        .join(imap, on=Columns.Item)
        .sort(Columns.UserIdx, Columns.Timestamp, "__row")
        .select(Columns.UserIdx, Columns.ItemIdx, Columns.Event, Columns.Timestamp, Columns.Weight)
    )
    train = _merge_train(train, events, pc.aggregate, pc.half_life_days, pc.decay_reference)
    changed = np.unique(events[Columns.UserIdx].to_numpy()).astype(np.int64)

    grown = GrownData(
        users=users_all,
        items=items_all,
        train=train,
        new_events=events,
        n_old_users=n_old_users,
        n_old_items=n_old_items,
        changed_users=changed,
    )
    dropped: dict[str, int] = {}
    item_loaded = _load_features(base_dir, "item")
    if item_loaded is not None:
        item_f, item_names = item_loaded
        from recctl.data.features import item_feature_spec

        fc = pc.features
        rows = np.arange(n_old_items, items_all.height)
        new_rows, dropped["item"] = _project_features(
            items_all,
            rows,
            item_names,
            item_feature_spec(fc),
            "preprocess.features",
            fc.text_max_vocab,
            fc.text_min_df,
        )
        grown.item_features = sp.vstack([item_f, new_rows], format="csr", dtype=np.float32)
        grown.item_feature_names = item_names
    user_loaded = _load_features(base_dir, "user")
    if user_loaded is not None:
        user_f, user_names = user_loaded
        spec: list[FeatureBlock] = [("categorical", c, None) for c in pc.features.user_categorical]
        rows = np.arange(n_old_users, users_all.height)
        new_rows, dropped["user"] = _project_features(
            users_all, rows, user_names, spec, "preprocess.features.user_categorical", 1, 1
        )
        grown.user_features = sp.vstack([user_f, new_rows], format="csr", dtype=np.float32)
        grown.user_feature_names = user_names
    grown.info = {
        "weights": weight_info,
        "n_new_events": events.height,
        "n_new_users": new_users.height,
        "n_new_items": new_items.height,
        "n_changed_users": int(len(changed)),
        "unknown_feature_values_dropped": dropped,
    }
    return grown


def _merge_train(
    train: pl.DataFrame,
    events: pl.DataFrame,
    how: str,
    half_life_days: float | None,
    reference: str = "user",
) -> pl.DataFrame:
    """Fold new weighted events into the aggregated training pairs.

    With a half-life, ``train`` holds weights decayed to its own reference time (each user's
    latest event, or the latest event of all, per ``reference``) and ``events`` to theirs; the
    older of the two sides is moved to the later reference (one factor per user, or one overall),
    which is exactly what decaying every event at once gives.
    """
    from recctl.data.preprocess import aggregate

    if events.height == 0:
        return train
    if half_life_days is not None and train.height:
        key = [Columns.UserIdx] if reference == "user" else []
        if key:
            old = train.group_by(key).agg(pl.col(LAST_TS).max().alias("__old"))
            new = events.group_by(key).agg(pl.col(Columns.Timestamp).max().alias("__new"))
            refs = old.join(new, on=key, how="inner")
        else:
            old = pl.DataFrame({"__old": [train[LAST_TS].max()]})
            new = pl.DataFrame({"__new": [events[Columns.Timestamp].max()]})
            refs = old.hstack(new)
        refs = refs.with_columns(
            ((pl.col("__new") - pl.col("__old")).dt.total_seconds() / 86400.0).alias("__gap")
        ).select(*key, "__gap")

        def shift(frame: pl.DataFrame, sign: float) -> pl.DataFrame:
            joined = (
                frame.join(refs, on=key, how="left")
                if key
                else frame.with_columns(pl.lit(refs["__gap"][0]).alias("__gap"))
            )
            factor = pl.lit(0.5).pow((pl.col("__gap") * sign).clip(lower_bound=0.0) / half_life_days)
            return joined.with_columns((pl.col(Columns.Weight) * factor.fill_null(1.0)).alias(Columns.Weight)).drop(
                "__gap"
            )

        train = shift(train, 1.0)  # the new events are later: age the old pairs
        events = shift(events, -1.0)  # late-arriving events: age them to the old reference
    fresh = aggregate(events, how).with_columns(pl.col(LAST_TS).cast(train.schema[LAST_TS]))
    fresh = fresh.cast(
        {
            Columns.UserIdx: train.schema[Columns.UserIdx],
            Columns.ItemIdx: train.schema[Columns.ItemIdx],
        }
    )
    both = pl.concat([train.select(fresh.columns), fresh], how="vertical_relaxed")
    if how == "sum":
        weight = pl.col(Columns.Weight).sum()
    elif how == "max":
        weight = pl.col(Columns.Weight).max()
    else:  # last: the pair's weight is that of its latest event (equal times: the new batch's, it comes later)
        weight = pl.col(Columns.Weight).sort_by(LAST_TS, maintain_order=True).last()
    return (
        both.group_by(Columns.UserIdx, Columns.ItemIdx)
        .agg(weight.alias(Columns.Weight), pl.col(LAST_TS).max())
        .sort(Columns.UserIdx, Columns.ItemIdx)
    )
