"""Which serving bundle answers, and switching to a newly published one without a pause.

:class:`BundleHolder` keeps the current :class:`recctl.serving.Bundle` behind one attribute.
A request reads ``holder.current`` once and uses that object to the end, so swapping the
attribute (one reference assignment) is atomic for every request: those in flight finish on the
bundle they started with, the next ones get the new one. A new bundle is loaded and checked
(format, version, sha256 of every file) in a worker thread while the old one keeps answering; a
bundle that fails to load is refused, logged, and shown by ``/readyz`` until a good one is
published; the old bundle keeps serving.

A bundle is identified by the sha256 of its ``bundle.json`` (which records the sha256 of every
other file): the watcher compares the file's (inode, size, mtime) every
``serve.reload_interval_s`` seconds and reloads when they change and the digest differs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.serving import Bundle, load

__all__ = ["BundleHolder", "LoadedBundle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle and what identifies it."""

    bundle: Bundle
    version: str  # first 16 hex digits of sha256(bundle.json)
    loaded_at: str
    path: Path
    stamp: tuple[int, int, int]


@dataclass
class ReloadStatus:
    """Outcome of the latest reload attempts (shown by /readyz)."""

    n_reloads: int = 0
    n_failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    last_attempt_version: str | None = None
    refused: list[str] = field(default_factory=list)


def _stamp(meta: Path) -> tuple[int, int, int]:
    st = os.stat(meta)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _now() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def read_bundle(path: Path) -> LoadedBundle:
    """Load and verify the bundle at ``path`` (raises ``ArtifactError`` when it is broken)."""
    meta = path / "bundle.json"
    stamp = _stamp(meta)
    digest = hashlib.sha256(meta.read_bytes()).hexdigest()[:16]
    bundle = load(path, verify=True)
    bundle.user_positions.warm()  # requests ask about single ids: their look-up is built now
    bundle.item_positions.warm()
    return LoadedBundle(bundle=bundle, version=digest, loaded_at=_now(), path=path, stamp=stamp)


class BundleHolder:
    """The current bundle, reloaded atomically.

    Parameters
    ----------
    path
        The published bundle directory (``<workdir>/export/bundle``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._current: LoadedBundle | None = None
        self.status = ReloadStatus()
        self._lock = asyncio.Lock()
        self._refused: tuple[int, int, int] | None = None  # stamp of the last refused bundle.json

    @property
    def current(self) -> LoadedBundle | None:
        """The bundle answering now (``None`` before the first successful load)."""
        return self._current

    def load_first(self) -> LoadedBundle:
        """Load the bundle at start (raises when it is missing or broken: the service does not start)."""
        self._current = read_bundle(self.path)
        log.info("serving bundle %s from %s", self._current.version, self.path)
        return self._current

    def changed(self) -> bool:
        """Whether ``bundle.json`` looks different from the loaded one (cheap: one stat)."""
        try:
            stamp = _stamp(self.path / "bundle.json")
        except OSError:
            return False  # mid-swap or removed: keep serving, look again later
        if stamp == self._refused:
            return False  # refused already; look again when it changes
        return self._current is None or stamp != self._current.stamp

    async def reload(self, *, force: bool = False) -> tuple[bool, str]:
        """Load the published bundle if it changed; swap it in when it is sound.

        Returns
        -------
        (switched, message)
            Whether a new bundle now answers, and what happened.
        """
        async with self._lock:
            if not force and not self.changed():
                return False, "unchanged"
            loop = asyncio.get_running_loop()
            try:
                stamp = _stamp(self.path / "bundle.json")
            except OSError:
                stamp = None
            try:
                new = await loop.run_in_executor(None, read_bundle, self.path)
            except Exception as exc:  # a broken bundle of any kind is refused, the old one keeps serving
                self._refused = stamp
                self.status.n_failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                self.status.last_error_at = _now()
                log.error("new bundle at %s refused, still serving %s: %s", self.path, self.version, exc)
                return False, self.status.last_error
            if self._current is not None and new.version == self._current.version:
                # same content re-published (e.g. touched): keep the object, remember the stamp
                self._current = LoadedBundle(
                    self._current.bundle, self._current.version, self._current.loaded_at, self.path, new.stamp
                )
                return False, "same bundle"
            old = self.version
            self._refused = None
            self._current = new  # the switch: one reference assignment
            self.status.n_reloads += 1
            self.status.last_error = None
            log.info("switched bundle %s -> %s", old, new.version)
            return True, f"switched {old} -> {new.version}"

    @property
    def version(self) -> str | None:
        """Version of the bundle answering now."""
        return self._current.version if self._current else None

    def describe(self) -> dict[str, Any]:
        """Readiness details of the bundle."""
        cur = self._current
        return {
            "version": cur.version if cur else None,
            "loaded_at": cur.loaded_at if cur else None,
            "generated_at": cur.bundle.meta.get("generated_at") if cur else None,
            "path": str(self.path),
            "reloads": self.status.n_reloads,
            "failed_reloads": self.status.n_failures,
            "last_reload_error": self.status.last_error,
            "last_reload_error_at": self.status.last_error_at,
        }
