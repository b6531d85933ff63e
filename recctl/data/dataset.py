"""The in-memory dataset models are trained on, loaded from the ``preprocess`` stage.

Layout of ``<workdir>/preprocess/`` (the contract between ``preprocess`` and everything after):

* ``users.parquet``      ``user_id, user_idx`` (+ user attributes), one row per known user
* ``items.parquet``      ``item_id, item_idx`` (+ catalogue attributes); includes catalogue
  items without interactions (cold items)
* ``events.parquet``     ``user_idx, item_idx, event, timestamp, weight, split`` — every kept event
  with its own weight; ``split`` is ``tune_train``, ``valid`` or ``test``
* ``<split>.parquet``    ``user_idx, item_idx, weight, last_ts`` — one row per (user, item),
  for split in ``train`` (= tune_train + valid), ``test``, ``tune_train``, ``valid``, ``all``
* ``item_features.npz`` / ``item_feature_names.parquet`` and the same for users, when
  features are configured
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.positions import IdPositions
from recctl.errors import ArtifactError

__all__ = [
    "SPLITS",
    "Dataset",
    "IdIndex",
    "category_matrix",
    "interactions_matrix",
    "load_dataset",
    "load_split_matrix",
]

#: splits written by preprocess; ``train`` is what final models fit on, ``tune_train`` what
#: tuning fits on (``valid`` scores it); ``test`` is read only by ``evaluate``; ``all``
#: (train + test) is what serving models fit on with ``recommend.refit_on_all_data``.
SPLITS = ("train", "test", "tune_train", "valid", "all")


def interactions_matrix(frame: pl.DataFrame, n_users: int, n_items: int, value: str = Columns.Weight) -> sp.csr_matrix:
    """Build a (n_users x n_items) float32 CSR matrix from ``user_idx, item_idx, <value>``.

    Duplicate (user, item) pairs are summed.
    """
    if frame.height == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    rows = frame[Columns.UserIdx].to_numpy().astype(np.int64)
    cols = frame[Columns.ItemIdx].to_numpy().astype(np.int64)
    vals = frame[value].to_numpy().astype(np.float32) if value in frame.columns else np.ones(len(rows), np.float32)
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def category_matrix(values: pl.Series) -> sp.csr_matrix:
    """One-hot (n_rows x n_distinct) float32 CSR of a column's values (nulls form one category).

    Columns are the distinct values in sorted order, so the same column gives the same matrix.
    """
    codes = values.cast(pl.String).fill_null("").to_numpy()
    distinct, inverse = np.unique(codes, return_inverse=True)
    ones = np.ones(len(inverse), np.float32)
    return sp.csr_matrix((ones, (np.arange(len(inverse)), inverse)), shape=(len(inverse), len(distinct)))


class IdIndex:
    """Id -> index look-ups for anything holding ``user_ids`` and ``item_ids`` arrays.

    Subclasses (dataclasses) declare ``user_ids``, ``item_ids`` and the two private lookup
    caches ``_user_lookup`` / ``_item_lookup`` (``None`` until first used): one
    :class:`~recctl.data.positions.IdPositions` each.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    _user_lookup: IdPositions | None
    _item_lookup: IdPositions | None

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (columns), including items without interactions."""
        return len(self.item_ids)

    def user_index(self, ids: Sequence[Any] | np.ndarray | pl.Series) -> np.ndarray:
        """Map user ids to row indices (``int64``); unknown ids map to ``-1``."""
        if self._user_lookup is None:
            self._user_lookup = IdPositions(self.user_ids)
        return self._user_lookup.lookup(ids)

    def item_index(self, ids: Sequence[Any] | np.ndarray | pl.Series) -> np.ndarray:
        """Map item ids to column indices (``int64``); unknown ids map to ``-1``."""
        if self._item_lookup is None:
            self._item_lookup = IdPositions(self.item_ids)
        return self._item_lookup.lookup(ids)


class _EventsOnDemand:
    """The ``Dataset.events`` field: a frame given directly, or read on first access.

    Only sequence and recency models read the per-event frame (``sasrec``, EASE with
    ``recency_half_life``, ``popularity`` with ``mode: recent``), and at 20M events it holds
    ~0.5 GB and costs ~2.7 CPU-s to read: every other model, ``evaluate`` and the second
    (``all``) dataset of a refit must not pay for it. A dataclass field whose default is a
    descriptor routes ``__init__``'s assignment and every read through it (documented
    dataclass behaviour), so ``Dataset(..., events=frame)`` and ``dataset.events`` work as
    for a plain field.
    """

    def __get__(self, obj: Any, objtype: type | None = None) -> pl.DataFrame | None:
        if obj is None:  # the class-level read: the field's default
            return None
        loader = obj.__dict__.get("_events_loader")
        if loader is not None:  # a failed read is retried on the next access, not forgotten
            obj.__dict__["_events"] = loader()
            del obj.__dict__["_events_loader"]
        return obj.__dict__.get("_events")

    def __set__(self, obj: Any, value: pl.DataFrame | None) -> None:
        obj.__dict__.pop("_events_loader", None)
        # ``field(default=...)`` hands __init__ the descriptor itself when no frame is given
        obj.__dict__["_events"] = None if isinstance(value, _EventsOnDemand) else value


@dataclass
class Dataset(IdIndex):
    """Everything a model can learn from, in index space.

    Attributes
    ----------
    user_ids, item_ids
        Arrays mapping a row / column index back to the shop's id.
    interactions
        (n_users x n_items) CSR of aggregated weights for the training split.
    item_features, user_features
        Optional CSR feature matrices (rows aligned with item / user indices).
    events
        Optional per-event frame (``user_idx, item_idx, event, timestamp, weight``) of the
        training split, time-ordered: for recency and sequence models. A dataset from
        :func:`load_dataset` reads it from ``events.parquet`` the first time it is asked for
        (:meth:`events_on_demand`).
    items
        Optional catalogue attributes (``item_idx`` + columns), for content models and rules.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    interactions: sp.csr_matrix
    item_features: sp.csr_matrix | None = None
    item_feature_names: list[str] | None = None
    user_features: sp.csr_matrix | None = None
    user_feature_names: list[str] | None = None
    events: _EventsOnDemand = field(default=_EventsOnDemand(), repr=False, compare=False)
    items: pl.DataFrame | None = None
    split: str = "train"
    _user_lookup: IdPositions | None = field(default=None, repr=False)
    _item_lookup: IdPositions | None = field(default=None, repr=False)

    def events_on_demand(self, loader: Callable[[], pl.DataFrame | None]) -> Dataset:
        """Read ``events`` by calling ``loader`` the first time it is accessed (then keep it).

        ``loader`` must be picklable if the dataset is (a :func:`functools.partial` of a
        module-level function is).
        """
        self.__dict__.pop("_events", None)
        self.__dict__["_events_loader"] = loader
        return self

    @classmethod
    def from_frames(
        cls,
        interactions: pl.DataFrame,
        *,
        user_ids: np.ndarray | list[str] | None = None,
        item_ids: np.ndarray | list[str] | None = None,
    ) -> Dataset:
        """Build a dataset from a frame of ``user_id, item_id[, weight]`` (for notebooks and tests).

        Ids are indexed in sorted order unless ``user_ids`` / ``item_ids`` fix the order.
        """
        if user_ids is None:
            user_ids = sorted(interactions[Columns.User].unique().to_list())
        if item_ids is None:
            item_ids = sorted(interactions[Columns.Item].unique().to_list())
        users = np.asarray(user_ids, dtype=object)
        items = np.asarray(item_ids, dtype=object)
        umap = pl.DataFrame({Columns.User: users.astype(str), Columns.UserIdx: np.arange(len(users))})
        imap = pl.DataFrame({Columns.Item: items.astype(str), Columns.ItemIdx: np.arange(len(items))})
        frame = interactions.with_columns(pl.col(Columns.User).cast(pl.String), pl.col(Columns.Item).cast(pl.String))
        frame = frame.join(umap, on=Columns.User).join(imap, on=Columns.Item)
        return cls(users, items, interactions_matrix(frame, len(users), len(items)))


def _unit_mean(matrix: sp.csr_matrix) -> sp.csr_matrix:
    # weights are relative: the scale of event_weights or of the recency decay must not change what
    # a model's regularisation (EASE l2, kNN shrink, BM25 k1) means, so training weights have mean 1
    if matrix.nnz:
        mean = float(matrix.data.astype(np.float64).mean())
        if mean > 0 and np.isfinite(mean):
            matrix.data = (matrix.data.astype(np.float64) / mean).astype(np.float32)
    return matrix


def load_split_matrix(preprocess_dir: Path, split: str, n_users: int, n_items: int) -> sp.csr_matrix:
    """Load one split's aggregated interactions as a CSR matrix."""
    path = Path(preprocess_dir) / f"{split}.parquet"
    if not path.exists():
        raise ArtifactError(f"{path}: split '{split}' missing; re-run `recctl preprocess CONFIG`.")
    return interactions_matrix(pl.read_parquet(path), n_users, n_items)


def load_dataset(preprocess_dir: str | Path, split: str = "train") -> Dataset:
    """Load the dataset a model trains on from a ``preprocess`` output directory.

    Parameters
    ----------
    preprocess_dir
        ``<workdir>/preprocess``.
    split
        ``train`` (models that are evaluated), ``tune_train`` (tuning) or ``all`` (models
        that only serve, refitted on every event). ``test`` alone is refused: it is never
        trained on.

    The training interactions are scaled so that their mean stored weight is 1: weights are
    relative, and a model's regularisation means the same whatever the scale of
    ``event_weights`` or of the recency decay.
    """
    if split not in ("train", "tune_train", "all"):
        raise ValueError(f"models train on 'train', 'tune_train' or 'all', not '{split}'")
    d = Path(preprocess_dir)
    for name in ("users.parquet", "items.parquet"):
        if not (d / name).exists():
            raise ArtifactError(f"{d / name}: missing; run `recctl preprocess CONFIG` first.")
    users = pl.read_parquet(d / "users.parquet").sort(Columns.UserIdx)
    items = pl.read_parquet(d / "items.parquet").sort(Columns.ItemIdx)
    n_users, n_items = users.height, items.height
    train = _unit_mean(load_split_matrix(d, split, n_users, n_items))

    def features(prefix: str) -> tuple[sp.csr_matrix | None, list[str] | None]:
        mat_path, names_path = d / f"{prefix}_features.npz", d / f"{prefix}_feature_names.parquet"
        if not mat_path.exists():
            return None, None
        return sp.load_npz(mat_path).tocsr().astype(np.float32), pl.read_parquet(names_path)["feature"].to_list()

    item_features, item_names = features("item")
    user_features, user_names = features("user")
    dataset = Dataset(
        user_ids=users[Columns.User].to_numpy().astype(object),
        item_ids=items[Columns.Item].to_numpy().astype(object),
        interactions=train,
        item_features=item_features,
        item_feature_names=item_names,
        user_features=user_features,
        user_feature_names=user_names,
        items=items,
        split=split,
    )
    if (d / "events.parquet").exists():
        dataset.events_on_demand(partial(_read_split_events, d / "events.parquet", split))
    return dataset


def _read_split_events(path: Path, split: str) -> pl.DataFrame:
    """The events of ``split`` (``train`` = tune_train + valid, ``all`` adds test), time-ordered."""
    wanted = {"tune_train": ["tune_train"], "train": ["tune_train", "valid"]}.get(
        split, ["tune_train", "valid", "test"]
    )
    return (
        pl.scan_parquet(path)
        .filter(pl.col("split").is_in(wanted))
        .drop("split")
        # stable: events at one timestamp keep the file's order (as events.parquet holds them)
        .sort([Columns.UserIdx, Columns.Timestamp], maintain_order=True)
        .collect()
    )
