"""Events since the bundle, per user, in bounded memory (what re-scores their lists).

:class:`RecentEvents` keeps, per user, the newest ``max_recent`` events accepted since the
bundle was built, for at most ``max_users`` users; past that, the least recently active user's
events leave memory (never the log: the nightly run still learns from them). A flood of events
from millions of new users therefore costs at most ``max_users x max_recent`` entries (about
150 bytes each: 100,000 x 50 events is under 1 GB worst case, and typical users have a handful
of events).

How the events change a list is the bundle's business, not the service's:
:meth:`recctl.serving.Bundle.recommend` takes them (``events=``) and re-scores the user per
model kind (:mod:`recctl.lists.live`) through the list builder's fill step.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LiveEvent", "RecentEvents", "event_key"]


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
