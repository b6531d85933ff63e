"""Who gets a list, and everything the shop told recctl about each of them.

The nightly file serves **every customer the inputs name**: every user with an accepted event
(all ingested files and appended batches) and every id of the customer file. Which users the
models were trained on is an evaluation matter (minimum counts, cold test users, the split)
and never removes anyone from serving.

Each customer's **full history** comes from the ingested interactions, not from the
preprocessed splits: train and test events, events of users or items the preprocess filters
dropped, zero-weight event types, batches appended since. It is kept in the index space of
the serving catalogue; events of items outside it are dropped (such items can never be
recommended). Two matrices follow from it:

* ``history``: every item the user had any event with; what models score a user they do not
  know from (their "basket");
* ``exclude``: what the user must never be recommended: the whole history
  (``recommend.exclude_seen``), or only items with the events in
  ``recommend.rules.exclude_events`` (e.g. purchases); ``None`` when nothing is excluded.

Ids stay Arrow strings (a polars Series) throughout: memory depends on the total length of the
ids, never on the longest one.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.positions import IdPositions
from recctl.errors import ConfigError
from recctl.lists.builder import Request

__all__ = ["ORIGINS", "Audience", "build_audience"]

#: how a user reaches the file: the models know them / only their history / only the customer file
ORIGINS = ("model", "fallback", "customer_file")
_POS = "__pos"


@dataclass
class Audience:
    """Every customer to serve, in byte order of their ids, with their history.

    Attributes
    ----------
    user_ids
        polars String Series, sorted, unique.
    rows
        int64: each user's row in the models (``-1``: the models do not know them).
    has_events
        bool: the user has at least one accepted event.
    history
        CSR ``(n_users, n_items)``: items with any event.
    exclude
        CSR ``(n_users, n_items)`` of items never to recommend, or ``None``.
    """

    user_ids: pl.Series
    rows: np.ndarray
    has_events: np.ndarray
    history: sp.csr_matrix
    exclude: sp.csr_matrix | None

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def origin(self) -> np.ndarray:
        """int8 codes into :data:`ORIGINS` per user."""
        return np.where(self.rows >= 0, 0, np.where(self.has_events, 1, 2)).astype(np.int8)

    def origin_counts(self) -> dict[str, int]:
        """Users per origin (``model``, ``fallback``, ``customer_file``)."""
        counts = np.bincount(self.origin, minlength=len(ORIGINS))
        return {name: int(n) for name, n in zip(ORIGINS, counts, strict=True)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The audience as plain numpy arrays (for a cache file; :meth:`from_arrays` reverses it).

        Ids are kept as an Arrow IPC stream of the id column (bytes), never as numpy strings;
        ``exclude`` is stored only when it is not the history itself.
        """
        buffer = io.BytesIO()
        self.user_ids.cast(pl.String).rename(Columns.User).to_frame().write_ipc(buffer, compression="uncompressed")
        out = {
            "user_ids_ipc": np.frombuffer(buffer.getbuffer(), np.uint8),
            "rows": self.rows,
            "has_events": self.has_events,
            "history_indptr": self.history.indptr,
            "history_indices": self.history.indices,
            "exclude": np.array(0 if self.exclude is None else 1 if self.exclude is self.history else 2, np.int8),
            "shape": np.array(self.history.shape, np.int64),
        }
        if self.exclude is not None and self.exclude is not self.history:
            out["exclude_indptr"], out["exclude_indices"] = self.exclude.indptr, self.exclude.indices
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Audience:
        """The audience :meth:`to_arrays` gave (the same ids, rows, history and exclusions)."""
        user_ids = pl.read_ipc(io.BytesIO(np.asarray(arrays["user_ids_ipc"], np.uint8).tobytes()))[Columns.User]
        shape = tuple(int(x) for x in arrays["shape"])

        def csr(prefix: str) -> sp.csr_matrix:
            indices = np.asarray(arrays[f"{prefix}_indices"])
            return sp.csr_matrix(
                (np.ones(len(indices), np.float32), indices, np.asarray(arrays[f"{prefix}_indptr"])), shape=shape
            )

        history = csr("history")
        kind = int(arrays["exclude"])
        exclude = None if kind == 0 else history if kind == 1 else csr("exclude")
        return cls(user_ids, np.asarray(arrays["rows"]), np.asarray(arrays["has_events"]), history, exclude)

    def request(self, start: int = 0, stop: int | None = None) -> Request:
        """The list builder's request for users ``start:stop``."""
        stop = len(self) if stop is None else stop
        return Request(
            self.rows[start:stop],
            self.history[start:stop],
            None if self.exclude is None else self.exclude[start:stop],
        )

    def take(self, positions: np.ndarray) -> Audience:
        """The users at ``positions``, in that order."""
        positions = np.asarray(positions, np.int64)
        return Audience(
            self.user_ids.gather(positions),
            self.rows[positions],
            self.has_events[positions],
            self.history[positions],
            None if self.exclude is None else self.exclude[positions],
        )

    def select(self, ids: list[str]) -> Audience:
        """The given users, in the given order; ids the shop never named are new, empty users."""
        found = IdPositions(self.user_ids).lookup(ids)
        missing = found < 0
        sub = self.take(np.where(missing, 0, found))
        if missing.any():
            n_items = self.history.shape[1]
            keep = sp.diags((~missing).astype(np.float32), format="csr")
            sub = Audience(
                pl.Series(Columns.User, ids, dtype=pl.String),
                np.where(missing, -1, sub.rows),
                np.where(missing, False, sub.has_events),
                sp.csr_matrix(keep @ sub.history, shape=(len(ids), n_items)),
                None if sub.exclude is None else sp.csr_matrix(keep @ sub.exclude, shape=(len(ids), n_items)),
            )
            for mat in (sub.history, sub.exclude):
                if mat is not None:
                    mat.eliminate_zeros()
        return sub


def _matrix(frame: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    if frame.height == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    # only the pattern matters: each (row, item) pair once, sorted, as one int64 key (polars'
    # unique + sort run on all cores; scipy's COO -> CSR + sum_duplicates is 2-5x the CPU)
    key = (frame[_POS].cast(pl.Int64) * n_items + frame[Columns.ItemIdx].cast(pl.Int64)).unique().sort().to_numpy()
    rows = key // n_items
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    cols = (key - rows * n_items).astype(np.int32)
    return sp.csr_matrix((np.ones(len(key), np.float32), cols, indptr), shape=(n_users, n_items))


def build_audience(
    interactions: pl.LazyFrame | pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    *,
    customers: pl.Series | None = None,
    exclude_seen: bool = True,
    exclude_events: list[str] | None = None,
) -> Audience:
    """Every customer with their full history, in the serving catalogue's index space.

    Parameters
    ----------
    interactions
        The ingested events (``user_id, item_id, event``; ``ingest/interactions.parquet``).
    users
        The models' id map (``user_id, user_idx``).
    items
        The serving catalogue's id map (``item_id, item_idx``).
    customers
        Ids from the customer file (``ingest/users.parquet``), or ``None``.
    exclude_seen
        ``recommend.exclude_seen``: exclude history at all.
    exclude_events
        ``recommend.rules.exclude_events``: exclude only items with these events.

    Returns
    -------
    Audience

    Raises
    ------
    ConfigError
        If ``exclude_events`` names an event that never occurs in the data.
    """
    lazy = interactions.lazy() if isinstance(interactions, pl.DataFrame) else interactions
    events = lazy.select(
        pl.col(Columns.User).cast(pl.String),
        pl.col(Columns.Item).cast(pl.String),
        pl.col(Columns.Event).cast(pl.String),
    )
    # collected once: a lazy frame used twice is scanned (and made unique) twice
    with_events = events.select(Columns.User).unique().collect()
    ids = with_events.lazy()
    if customers is not None:
        ids = pl.concat([ids, customers.cast(pl.String).rename(Columns.User).to_frame().lazy()])
    audience = (
        ids.filter(pl.col(Columns.User).is_not_null() & (pl.col(Columns.User).str.len_bytes() > 0))
        .unique()
        .sort(Columns.User)
        .with_row_index(_POS)
        .collect()
    )
    item_map = items.select(pl.col(Columns.Item).cast(pl.String), pl.col(Columns.ItemIdx).cast(pl.Int64))
    # no unique(): _matrix sums repeated pairs into one entry; the event is kept only when
    # exclude_events picks among them
    by_event = exclude_seen and exclude_events is not None
    pairs = (
        events.join(audience.lazy(), on=Columns.User)
        .join(item_map.lazy(), on=Columns.Item)
        .select(_POS, Columns.ItemIdx, *([Columns.Event] if by_event else []))
        .collect()
    )
    n_users, n_items = audience.height, items.height
    history = _matrix(pairs, n_users, n_items)
    exclude = None
    if exclude_seen and exclude_events is None:
        exclude = history
    elif exclude_seen and exclude_events is not None:
        present = set(events.select(Columns.Event).unique().collect().to_series().drop_nulls().to_list())
        unknown = [e for e in exclude_events if e not in present]
        if unknown:
            raise ConfigError(
                f"recommend.rules.exclude_events: event(s) {unknown} never occur in the data; events present: "
                f"{', '.join(sorted(present)) or 'none'}."
            )
        exclude = _matrix(pairs.filter(pl.col(Columns.Event).is_in(exclude_events)), n_users, n_items)
    # each customer's row in the models' id map, then that row's user_idx (-1: no model row)
    at = IdPositions(users[Columns.User]).lookup(audience[Columns.User])
    model_rows = np.full(len(at), -1, dtype=np.int64)
    model_rows[at >= 0] = users[Columns.UserIdx].to_numpy()[at[at >= 0]]
    active = audience.join(with_events, on=Columns.User, how="semi")[_POS].to_numpy()
    has_events = np.zeros(n_users, bool)
    has_events[active] = True
    return Audience(audience[Columns.User], model_rows, has_events, history, exclude)
