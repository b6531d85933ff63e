"""The service's durable, append-only event log (``<workdir>/events/``).

Layout::

    <workdir>/events/
      .writer.lock               held (flock) by the one service writing this log
      events-000001.csv          closed segments: complete, fsync'd, never written again
      events-000002.csv.open     the open segment (its name keeps `ingest --append` globs off it)
      exposures/                 lists served under an experiment (see exposures.py)

**Acknowledged means on disk.** ``append`` returns only after the bytes are written *and*
``fsync``'d; POST /v1/events answers 200 after that. Concurrent requests share one write and
one fsync (group commit), so the cost of the fsync is paid once per batch of requests, not per
event. A crash can leave a partial last line, which was never acknowledged: on start the open
segment is cut back to its last complete line and closed.

**Safe next to ``recctl ingest --append``.** Closed segments are immutable: the open segment is
renamed to its final name only after its last fsync (and the directory is fsync'd), so a reader
that globs ``events/*.csv`` only ever sees complete files, and the sha256 ingest records for a
batch stays true (a full re-ingest re-reads it unchanged). The open segment has a ``.open``
suffix, which ingest does not recognise as a data file. The service never takes the workdir's
writer lock; it only holds ``events/.writer.lock`` so two services cannot write one log.

**Rotation**: the open segment is closed past ``serve.events.rotate_mb`` or ``rotate_s``, on
``POST /v1/admin/rotate``, and when the service stops. Empty segments are never created.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recctl.service.layout import EventLayout, RawEvent

__all__ = ["EventLog", "EventLogBusy", "EventLogFull", "Segment", "fsync_dir"]

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^events-(\d{6,})\.(csv|tsv|jsonl)(\.open)?$")


class EventLogBusy(Exception):
    """Another process holds the log's writer lock."""


class EventLogFull(Exception):
    """Too many events are waiting for the disk (back-pressure)."""


@dataclass(frozen=True)
class Segment:
    """One file of the log."""

    seq: int
    path: Path
    closed: bool


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or a new file inside it survives a crash (POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def list_segments(directory: Path) -> list[Segment]:
    """Every segment in ``directory``, oldest first."""
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            m = _SEGMENT.match(p.name)
            if m:
                found.append(Segment(int(m.group(1)), p, m.group(3) is None))
    return sorted(found, key=lambda s: s.seq)


class EventLog:
    """Append-only, fsync'd segments in the shop's raw layout.

    Parameters
    ----------
    directory
        ``<workdir>/events``.
    layout
        How a row is written (the first interaction source's layout).
    rotate_bytes, rotate_s
        Close the open segment past this size or age.
    max_pending
        Events waiting for the disk beyond which :meth:`append` raises :class:`EventLogFull`.
    clock
        Seconds, for the age of the open segment (monotonic; injected by tests).
    """

    def __init__(
        self,
        directory: Path,
        layout: EventLayout,
        *,
        rotate_bytes: int = 64 << 20,
        rotate_s: float = 3600.0,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.layout = layout
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.max_pending = max_pending
        self.clock = clock
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seq = 0
        self._size = 0  # bytes of the open segment acknowledged so far
        self._opened_at = 0.0
        self._queue: list[tuple[bytes, int, asyncio.Future[int]]] = []
        self._pending = 0
        self._drainer: asyncio.Task[None] | None = None
        # one thread does every file operation, so writes, fsyncs and renames never interleave
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="recctl-eventlog")
        self.fsync_seconds: list[float] = []  # drained by the metrics collector
        self.n_written = 0
        self.n_fsyncs = 0

    # -- start / stop ----------------------------------------------------------------------------
    def open(self) -> list[Segment]:
        """Take the writer lock, close any segment a crash left open; return every segment.

        Raises
        ------
        EventLogBusy
            Another process writes this log.
        OSError
            The directory cannot be created or written (a machine fault).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        for seg in list_segments(self.directory):
            if not seg.closed:
                self._recover(seg)
            self._seq = max(self._seq, seg.seq)
        return list_segments(self.directory)

    def _lock(self) -> None:
        path = self.directory / ".writer.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
            log.warning("no flock on this platform; make sure only one recctl serve writes %s", self.directory)
        except OSError as exc:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise EventLogBusy(
                    f"{self.directory}: the event log is being written by {holder}; run one recctl serve per workdir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._lock_fd = fd

    def _recover(self, seg: Segment) -> None:
        """Cut a crashed open segment back to its last complete line, then close it (or drop it if empty)."""
        data = seg.path.read_bytes()
        header = self.layout.file_header()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s: dropped %d bytes of an unacknowledged partial line", seg.path, len(data) - end)
            with open(seg.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        if end <= len(header):
            seg.path.unlink()
        else:
            seg.path.rename(seg.path.with_name(seg.path.name.removesuffix(".open")))
        fsync_dir(self.directory)

    async def close(self) -> None:
        """Wait for queued events, close the open segment (so it can be ingested), release the lock."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)
        await asyncio.get_running_loop().run_in_executor(self._io, self._close_segment)
        self._io.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- appending -------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events accepted but not yet acknowledged."""
        return self._pending

    @property
    def open_segment(self) -> Path | None:
        """The segment being written, if any."""
        return self._segment_path(self._seq, open_=True) if self._fd is not None else None

    def _segment_path(self, seq: int, *, open_: bool) -> Path:
        name = f"events-{seq:06d}{self.layout.suffix}"
        return self.directory / (name + ".open" if open_ else name)

    async def append(self, events: list[RawEvent], received_at: object) -> int:
        """Write ``events`` durably; return the segment number they went to.

        Raises
        ------
        EventLogFull
            ``max_pending`` events are already waiting for the disk.
        OSError
            The write or the fsync failed (nothing was acknowledged).
        """
        if self._pending + len(events) > self.max_pending:
            raise EventLogFull(f"{self._pending} events are waiting for the disk")
        data = b"".join(self.layout.line(e, received_at) for e in events)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._queue.append((data, len(events), fut))
        self._pending += len(events)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        # shield: a client that disconnects must not cancel the shared write
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            data = b"".join(d for d, _, _ in batch)
            n = sum(c for _, c, _ in batch)
            try:
                seq = await loop.run_in_executor(self._io, self._write, data, n)
            except OSError as exc:
                for _, _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
            else:
                for _, _, f in batch:
                    if not f.done():
                        f.set_result(seq)
            finally:
                self._pending -= n

    def _write(self, data: bytes, n: int) -> int:
        if self._fd is not None and self._due():
            self._close_segment()
        if self._fd is None:
            self._open_segment()
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            start = time.perf_counter()
            os.fsync(self._fd)
            self.fsync_seconds.append(time.perf_counter() - start)
            self.n_fsyncs += 1
        except OSError:
            self._abandon_segment()
            raise
        self._size += len(data)
        self.n_written += n
        return self._seq

    def _due(self) -> bool:
        return self._size >= self.rotate_bytes or self.clock() - self._opened_at >= self.rotate_s

    def _open_segment(self) -> None:
        self._seq += 1
        path = self._segment_path(self._seq, open_=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        header = self.layout.file_header()
        try:
            if header:
                os.write(fd, header)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)
        self._fd, self._size, self._opened_at = fd, len(header), self.clock()
        log.info("event log: writing %s", path)

    def _close_segment(self) -> Path | None:
        if self._fd is None:
            return None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        src = self._segment_path(self._seq, open_=True)
        dst = self._segment_path(self._seq, open_=False)
        os.rename(src, dst)
        fsync_dir(self.directory)
        log.info("event log: closed %s", dst)
        return dst

    def _abandon_segment(self) -> None:
        """After a failed write or fsync: cut back to what was acknowledged and close the segment."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, self._size)
            os.fsync(fd)
        except OSError:
            log.error(
                "event log: could not cut %s back after a failed write", self._segment_path(self._seq, open_=True)
            )
        finally:
            os.close(fd)
        try:
            src = self._segment_path(self._seq, open_=True)
            if self._size <= len(self.layout.file_header()):
                src.unlink(missing_ok=True)
            else:
                os.rename(src, self._segment_path(self._seq, open_=False))
            fsync_dir(self.directory)
        except OSError:
            log.error("event log: left %s open after a failed write; it is closed at the next start", src)

    async def rotate(self, *, only_if_due: bool = False) -> Path | None:
        """Close the open segment (when it is due, with ``only_if_due``); return the closed file."""
        loop = asyncio.get_running_loop()

        def work() -> Path | None:
            if self._fd is None or (only_if_due and not self._due()):
                return None
            return self._close_segment()

        return await loop.run_in_executor(self._io, work)
