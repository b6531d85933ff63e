"""Exposures: which list each user of an experiment was shown, for ``recctl ab report``.

Under an ``experiment:`` section every list the service returns is recorded in
``<workdir>/events/exposures/<experiment>.csv`` with the columns ``user_id, variant,
experiment, endpoint, items, served_at, bundle`` (``items`` is a JSON array of item ids). The
file reads as an assignments file (``recctl ab report CONFIG --assignments <that file>``: a
user's repeated rows all carry the one variant the salted rule gives them) and says what each
user saw and when.

Exposures are buffered and appended once a second (and when the service stops), not fsync'd
per request: a hard crash can lose the last second of exposures, never an acknowledged event.
The buffer is bounded (``MAX_BUFFERED`` rows; beyond it rows are counted as dropped).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

__all__ = ["COLUMNS", "MAX_BUFFERED", "ExposureLog"]

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "variant", "experiment", "endpoint", "items", "served_at", "bundle"]
#: exposure rows held in memory between flushes at most
MAX_BUFFERED = 100_000


class ExposureLog:
    """Buffered append-only CSV of exposures.

    Parameters
    ----------
    path
        The CSV file (created with a header when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: list[list[str]] = []
        self.n_written = 0
        self.n_dropped = 0

    def record(
        self, user_id: str, variant: str, experiment: str, endpoint: str, items: list[str], when: str, bundle: str
    ) -> None:
        """Buffer one exposure."""
        if len(self._rows) >= MAX_BUFFERED:
            self.n_dropped += 1
            return
        self._rows.append([user_id, variant, experiment, endpoint, json.dumps(items), when, bundle])

    def flush(self) -> int:
        """Append the buffered rows (one write); return how many (runs in a worker thread)."""
        rows, self._rows = self._rows, []
        if not rows:
            return 0
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer.writerow(COLUMNS)
        writer.writerows(rows)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, buf.getvalue().encode("utf-8"))
        finally:
            os.close(fd)
        self.n_written += len(rows)
        return len(rows)

    def close(self) -> None:
        """Flush and fsync (the service is stopping)."""
        self.flush()
        if self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
