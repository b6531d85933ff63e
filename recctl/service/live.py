"""Events since the bundle: a bounded in-memory view, and how they change a user's list.

**Bounded memory.** :class:`RecentEvents` keeps, per user, the newest ``max_recent`` events
accepted since the bundle was built, for at most ``max_users`` users; past that, the least
recently active user's events leave memory (never the log: the nightly run still learns from
them). A flood of events from millions of new users therefore costs at most
``max_users x max_recent`` entries (about 150 bytes each: 100,000 x 50 events is under 1 GB
worst case, and typical users have a handful of events).

**What an event changes** (:func:`personalise`). The bundle holds the nightly lists and, when a
model of the chain has item similarity, each item's nearest neighbours. For a user with new
events:

* items whose event is excluded by the rules (``recommend.rules.exclude_events``, or every seen
  item when it is unset and ``exclude_seen`` is on) leave the list at once;
* the neighbours of the user's recent items (newest first, weighted by the preprocess
  ``event_weights``) form a second list, and the two are merged by reciprocal-rank fusion
  (``1 / (60 + rank)`` summed over the lists), so items close to what the user just did move up
  while the nightly ranking still counts; items the user already had never come back;
* a user the bundle does not know is answered from their recent items' neighbours, then the
  fallback list (as an anonymous session).

INTERIM: this merge lives here until the one list builder of issue 15 takes a user's new
events itself (fold-in for factor models); the service then calls that and this module keeps
only the bounded view.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recctl.serving import Bundle

__all__ = ["LiveEvent", "RecentEvents", "RRF_K", "personalise"]

#: the constant of reciprocal-rank fusion (Cormack et al. 2009 use 60)
RRF_K = 60


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of a user since the bundle, as kept in memory."""

    item_id: str
    event: str
    segment: int  # the log segment holding it (to forget it once a bundle has learnt from it)
    key: bytes  # 16-byte digest of the logged fields: equal events are one event


def event_key(fields: Iterable[str]) -> bytes:
    """The identity of a logged event (a digest of its fields in the raw layout)."""
    return hashlib.blake2b("\x1f".join(fields).encode("utf-8"), digest_size=16).digest()


class RecentEvents:
    """Per-user recent events, least recently active users evicted beyond ``max_users``.

    Parameters
    ----------
    max_users
        Users held at most.
    max_recent
        Events held per user (the newest).
    """

    def __init__(self, max_users: int, max_recent: int) -> None:
        self.max_users = max_users
        self.max_recent = max_recent
        self._users: OrderedDict[str, deque[LiveEvent]] = OrderedDict()
        self.n_evicted_users = 0

    def __len__(self) -> int:
        return len(self._users)

    @property
    def n_events(self) -> int:
        """Events held in memory."""
        return sum(len(d) for d in self._users.values())

    def get(self, user_id: str) -> list[LiveEvent]:
        """The user's events, oldest first (empty when none are held)."""
        d = self._users.get(user_id)
        return list(d) if d else []

    def has(self, user_id: str, key: bytes) -> bool:
        """Whether this exact event is already held for the user."""
        d = self._users.get(user_id)
        return d is not None and any(e.key == key for e in d)

    def add(self, user_id: str, event: LiveEvent) -> None:
        """Hold a new event; the user becomes the most recently active."""
        d = self._users.get(user_id)
        if d is None:
            d = self._users[user_id] = deque(maxlen=self.max_recent)
        else:
            self._users.move_to_end(user_id)
        d.append(event)
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)
            self.n_evicted_users += 1

    def forget_segments(self, segments: set[int]) -> int:
        """Drop events of log segments a new bundle learnt from; return how many were dropped."""
        dropped = 0
        for user in list(self._users):
            d = self._users[user]
            keep = [e for e in d if e.segment not in segments]
            if len(keep) != len(d):
                dropped += len(d) - len(keep)
                if keep:
                    self._users[user] = deque(keep, maxlen=self.max_recent)
                else:
                    del self._users[user]
        return dropped


def _excluded(event: str, exclude_seen: bool, exclude_events: list[str] | None) -> bool:
    if not exclude_seen:
        return False
    return exclude_events is None or event in exclude_events


def personalise(
    bundle: Bundle,
    user_id: str,
    k: int,
    exclude: list[str],
    events: list[LiveEvent],
    *,
    exclude_seen: bool = True,
    exclude_events: list[str] | None = None,
    event_weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """A user's list with their events since the bundle taken into account (see the module docstring).

    Parameters
    ----------
    bundle
        The serving bundle.
    user_id
        The user (known to the bundle or not).
    k
        List length.
    exclude
        Item ids the request excludes.
    events
        The user's events since the bundle, oldest first (non-empty).
    exclude_seen, exclude_events
        ``recommend.exclude_seen`` and ``recommend.rules.exclude_events`` of the config.
    event_weights
        ``preprocess.event_weights`` (weight of each event type's items; default 1).

    Returns
    -------
    list of dict
        ``{"item_id", "rank", "score", "source"}``; ``score`` is the source model's own score.
    """
    banned = {e.item_id for e in events if _excluded(e.event, exclude_seen, exclude_events)}
    excluded = [*exclude, *banned]
    # newest first, each item once, items of zero-weight events left out
    weights = event_weights or {}
    recent: list[str] = []
    for e in reversed(events):
        if e.item_id not in recent and weights.get(e.event, 1.0) > 0:
            recent.append(e.item_id)
    known = user_id in bundle._user_row
    if not known:
        return bundle.recommend(user_id, k, exclude=excluded, items=recent)
    nightly = bundle.recommend(user_id, k + len(recent), exclude=excluded)
    if not recent or bundle.neighbors is None:
        return _rerank(nightly, k)
    row = bundle._user_row[user_id]
    seen: set[int] = set()
    if bundle.seen_indptr is not None and bundle.seen_indices is not None:
        seen = set(bundle.seen_indices[bundle.seen_indptr[row] : bundle.seen_indptr[row + 1]].tolist())
    source = str(bundle.meta.get("neighbors_from", "neighbors"))
    session = [
        r
        for r in bundle.recommend(None, k, exclude=excluded, items=recent)
        if r["source"] == source and bundle._item_col[r["item_id"]] not in seen
    ]
    fused: dict[str, tuple[float, int, dict[str, Any]]] = {}
    for rank, r in enumerate(nightly):
        fused[r["item_id"]] = (1.0 / (RRF_K + rank + 1), rank, r)
    for rank, r in enumerate(session):
        score, first, prev = fused.get(r["item_id"], (0.0, len(nightly) + rank, r))
        fused[r["item_id"]] = (score + 1.0 / (RRF_K + rank + 1), first, prev)
    order = sorted(fused.values(), key=lambda t: (-t[0], t[1]))
    return _rerank([r for _, _, r in order], k)


def _rerank(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    return [{**r, "rank": i + 1} for i, r in enumerate(rows[:k])]
