"""The one place recctl reads the time of day, so tests (and callers) can inject it.

Everything that stamps a time (manifests' ``started_at``, ``generated_at``) or depends on the
date (the export's file name, whether yesterday's export is stale) calls :func:`now`. Tests
install a clock that starts at a fixed instant and advances with real time, so a run never
crosses a UTC midnight it did not choose. Durations are measured with ``time.perf_counter``,
never with this clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["Clock", "now", "set_clock", "today", "utc_stamp"]

Clock = Callable[[], dt.datetime]


def _system() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_clock: Clock = _system


def now() -> dt.datetime:
    """Return the current time as an aware UTC datetime (from the installed clock)."""
    return _clock().astimezone(dt.timezone.utc)


def today() -> str:
    """Return today's UTC date as ``YYYY-MM-DD``."""
    return now().strftime("%Y-%m-%d")


def utc_stamp() -> str:
    """Return the current UTC time as ISO 8601 with microseconds and a ``Z`` suffix."""
    return now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def set_clock(clock: Clock | None) -> Clock:
    """Install ``clock`` (``None``: the system clock) and return the previous one.

    Parameters
    ----------
    clock
        A function returning an aware datetime.

    Returns
    -------
    Clock
        The clock that was installed before, to restore it.
    """
    global _clock
    previous = _clock
    _clock = clock or _system
    return previous
