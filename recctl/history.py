"""Run history: one small record per finished evaluate run, kept in the workdir.

The report compares this run with the previous one, and ``recctl history`` (planned) lists
them. What is stored, and where:

* ``<workdir>/history/evaluate.jsonl``: one JSON object per line, oldest first, appended when an
  ``evaluate`` run has finished (its outputs are in place), never rewritten. A line cut short by
  a crash is skipped on reading, so appending needs no lock beyond the stage's own.
* a record (``schema_version`` 1)::

      {"schema_version": 1, "stage": "evaluate", "experiment": "shop", "finished_at": "...Z",
       "config_hash": "...", "test_sha256": "...", "n_users": 1234,
       "primary_metric": "ndcg@10", "baseline": "popular", "best": "lightfm_warp",
       "serving_model": "lightfm_warp",
       "decision": {"action": "keep", "ship": "lightfm_warp", "headline": "Keep lightfm_warp"},
       "models": {"lightfm_warp": {"mean": {"ndcg@10": 0.12, ...}, "interval": {"ndcg@10": [0.11, 0.13]},
                                   "fit_seconds": 30.1, "score_seconds": 2.3}, ...}}

``test_sha256`` tells whether two runs were scored on the same test split (then their numbers
compare directly); ``config_hash`` is the evaluate stage's config hash from its manifest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_KEEP",
    "HISTORY_DIR",
    "SCHEMA_VERSION",
    "append_record",
    "compare_last_runs",
    "history_path",
    "previous_record",
    "read_history",
]

log = logging.getLogger(__name__)

HISTORY_DIR = "history"
SCHEMA_VERSION = 1
#: records kept per stage when the caller does not say (config ``history.keep``)
DEFAULT_KEEP = 100


def history_path(workdir: Path, stage: str = "evaluate") -> Path:
    """``<workdir>/history/<stage>.jsonl``."""
    return Path(workdir) / HISTORY_DIR / f"{stage}.jsonl"


def append_record(
    workdir: Path, record: dict[str, Any], stage: str = "evaluate", *, keep: int | None = DEFAULT_KEEP
) -> Path:
    """Append one record (a finished run) to the stage's history, flushed to disk.

    Parameters
    ----------
    workdir
        The experiment's workdir.
    record
        Plain JSON data; ``schema_version`` and ``stage`` are added.
    stage
        Which stage's history.
    keep
        Keep only the newest ``keep`` records (``None``: all). Older ones are dropped by an
        atomic rewrite of the file, so a reader sees the file before or after, never half.

    Returns
    -------
    Path
        The history file.
    """
    path = history_path(workdir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"schema_version": SCHEMA_VERSION, "stage": stage, **record}, sort_keys=True, allow_nan=False)
    # one write of a whole line: a crash leaves at worst a torn last line, which readers skip
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if keep is not None:
        _keep_newest(path, keep)
    return path


def _keep_newest(path: Path, keep: int) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) <= keep:
        return
    from recctl.artifacts import write_text_atomic

    write_text_atomic(path, "".join(lines[-keep:] if keep > 0 else []))


def read_history(workdir: Path, stage: str = "evaluate", limit: int | None = None) -> list[dict[str, Any]]:
    """The stage's records, oldest first (the last ``limit`` only, when given); unreadable lines skipped."""
    path = history_path(workdir, stage)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: line %d is not a complete record (an interrupted write?); skipped", path, number)
                continue
            if isinstance(record, dict) and record.get("schema_version") == SCHEMA_VERSION:
                records.append(record)
    return records[-limit:] if limit else records


def previous_record(workdir: Path, stage: str = "evaluate") -> dict[str, Any] | None:
    """The latest record of the stage (the run before the one being made), or None."""
    records = read_history(workdir, stage, limit=1)
    return records[0] if records else None


def _serving_value(record: dict[str, Any]) -> tuple[str | None, float | None, list[float] | None]:
    model = record.get("serving_model") or record.get("best")
    entry = (record.get("models") or {}).get(model) or {}
    metric = record.get("primary_metric")
    value = (entry.get("mean") or {}).get(metric)
    interval = (entry.get("interval") or {}).get(metric)
    return model, value, interval


def compare_last_runs(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How the serving model's primary metric moved between the last two evaluate records.

    Compares what serves now with what served at the previous run (the model may have changed).

    Parameters
    ----------
    records
        Evaluate records, oldest first (:func:`read_history`).

    Returns
    -------
    dict or None
        ``metric, previous_model, previous, model, current, change`` (current - previous),
        ``relative_change`` (``change / previous``), ``same_test_split`` (whether both were
        scored on the same test pairs, so the numbers compare directly), ``previous_finished_at``,
        ``finished_at``; ``None`` with fewer than two records, a changed primary metric or a
        missing value.
    """
    if len(records) < 2:
        return None
    previous, latest = records[-2], records[-1]
    if previous.get("primary_metric") != latest.get("primary_metric"):
        return None
    prev_model, prev_value, _ = _serving_value(previous)
    model, value, interval = _serving_value(latest)
    if prev_value is None or value is None:
        return None
    change = value - prev_value
    return {
        "metric": latest.get("primary_metric"),
        "previous_model": prev_model,
        "previous": prev_value,
        "model": model,
        "current": value,
        "interval": interval,
        "change": change,
        "relative_change": change / prev_value if prev_value else None,
        "same_test_split": previous.get("test_sha256") == latest.get("test_sha256"),
        "previous_finished_at": previous.get("finished_at"),
        "finished_at": latest.get("finished_at"),
    }
