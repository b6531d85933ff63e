"""Trial records on disk: the resumable checkpoint and the ``trials.parquet`` table.

The checkpoint lives outside the stage's staging directory, in
``<workdir>/.tune-checkpoint/<key>.parquet``, and is rewritten atomically after every trial,
so an interrupted search (Ctrl-C, a crash, a killed CI job) keeps every trial that finished.
``key`` hashes everything that makes trials comparable: the tuned model's parameters, the
space, objective, method and early-stopping settings, the seed, and the sha256 of the
``tune_train`` and ``valid`` splits. The budget (``n_trials``, ``timeout_s``) and ``n_jobs``
are not part of it, so raising ``n_trials`` extends the same search.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.artifacts import config_hash, write_parquet_atomic
from recctl.tuning.trial import TrialResult

__all__ = ["CHECKPOINT_DIR", "checkpoint_key", "checkpoint_path", "read_checkpoint", "trials_frame", "write_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = ".tune-checkpoint"

#: ``tune:`` keys that do not change what a trial computes
_BUDGET_KEYS = ("n_trials", "timeout_s", "n_jobs")

_CHECKPOINT_SCHEMA = pl.Schema(
    {
        "trial": pl.Int64(),
        "status": pl.String(),
        "value": pl.Float64(),
        "params": pl.String(),
        "metrics": pl.String(),
        "best_epoch": pl.Int64(),
        "epochs_run": pl.Int64(),
        "stopped_early": pl.Boolean(),
        "cut_at_budget": pl.Boolean(),
        "duration_s": pl.Float64(),
        "error": pl.String(),
        "curve": pl.List(pl.Float64()),
        "per_user": pl.List(pl.Float32()),
    }
)


def checkpoint_key(
    tune_section: dict[str, Any], model_params: dict[str, Any], seed: int, split_hashes: dict[str, str]
) -> str:
    """The hash that identifies a search whose finished trials can be reused."""
    section = {k: v for k, v in tune_section.items() if k not in _BUDGET_KEYS}
    return config_hash({"tune": section, "model": model_params, "seed": seed, "splits": split_hashes})


def checkpoint_path(workdir: Path, key: str) -> Path:
    """``<workdir>/.tune-checkpoint/<key[:16]>.parquet``."""
    return Path(workdir) / CHECKPOINT_DIR / f"{key[:16]}.parquet"


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def write_checkpoint(path: Path, results: list[TrialResult]) -> None:
    """Rewrite the checkpoint with every finished trial (atomically)."""
    rows = {
        "trial": [r.number for r in results],
        "status": [r.status for r in results],
        "value": [_json_float(r.value) for r in results],
        "params": [json.dumps(r.params, sort_keys=True) for r in results],
        "metrics": [json.dumps(r.metrics, sort_keys=True) for r in results],
        "best_epoch": [r.best_epoch for r in results],
        "epochs_run": [r.epochs_run for r in results],
        "stopped_early": [r.stopped_early for r in results],
        "cut_at_budget": [r.cut_at_budget for r in results],
        "duration_s": [r.duration_s for r in results],
        "error": [r.error for r in results],
        "curve": [[_json_float(v) for v in r.curve] for r in results],
        "per_user": [None if r.per_user is None else r.per_user.astype("float32").tolist() for r in results],
    }
    write_parquet_atomic(pl.DataFrame(rows, schema=_CHECKPOINT_SCHEMA), path)


def read_checkpoint(path: Path) -> list[TrialResult]:
    """The trials of a checkpoint (empty when there is none or it cannot be read)."""
    if not path.exists():
        return []
    try:
        frame = pl.read_parquet(path)
        return [
            TrialResult(
                number=int(row["trial"]),
                params=json.loads(row["params"]),
                status=row["status"],
                value=row["value"],
                metrics=json.loads(row["metrics"]),
                best_epoch=row["best_epoch"],
                epochs_run=int(row["epochs_run"]),
                stopped_early=bool(row["stopped_early"]),
                cut_at_budget=bool(row.get("cut_at_budget")),  # absent from older checkpoints
                duration_s=float(row["duration_s"]),
                error=row["error"],
                curve=[v if v is not None else float("nan") for v in row["curve"]],
                per_user=None if row.get("per_user") is None else np.asarray(row["per_user"], np.float64),
            )
            for row in frame.iter_rows(named=True)
        ]
    except Exception as exc:  # a damaged checkpoint only costs the trials it held: start over
        log.warning("%s: unreadable tuning checkpoint (%s); starting the search afresh", path, exc)
        return []


def _column(values: list[Any]) -> pl.Series | list[Any]:
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Boolean)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pl.Series([None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series(
        [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values], dtype=pl.String
    )


def trials_frame(results: list[TrialResult], objective: str) -> pl.DataFrame:
    """The ``trials.parquet`` table: one row per trial, ordered by trial number.

    Columns: ``trial, status, <objective>``, one ``param.<name>`` column per searched
    parameter, one column per recorded metric (``precision@10`` ...), ``best_epoch,
    epochs_run, stopped_early, cut_at_budget, duration_s, error``, and ``params`` (JSON) and ``curve`` (the
    objective after every epoch).
    """
    results = sorted(results, key=lambda r: r.number)
    param_names = sorted({k for r in results for k in r.params})
    metric_names = sorted({k for r in results for k in r.metrics} - {objective})
    columns: dict[str, Any] = {
        "trial": pl.Series([r.number for r in results], dtype=pl.Int64),
        "status": pl.Series([r.status for r in results], dtype=pl.String),
        objective: pl.Series([_json_float(r.value) for r in results], dtype=pl.Float64),
    }
    for name in param_names:
        columns[f"param.{name}"] = _column([r.params.get(name) for r in results])
    for name in metric_names:
        columns[name] = pl.Series([_json_float(r.metrics.get(name)) for r in results], dtype=pl.Float64)
    columns.update(
        best_epoch=pl.Series([r.best_epoch for r in results], dtype=pl.Int64),
        epochs_run=pl.Series([r.epochs_run for r in results], dtype=pl.Int64),
        stopped_early=pl.Series([r.stopped_early for r in results], dtype=pl.Boolean),
        cut_at_budget=pl.Series([r.cut_at_budget for r in results], dtype=pl.Boolean),
        duration_s=pl.Series([r.duration_s for r in results], dtype=pl.Float64),
        error=pl.Series([r.error for r in results], dtype=pl.String),
        params=pl.Series([json.dumps(r.params, sort_keys=True) for r in results], dtype=pl.String),
        curve=pl.Series([[_json_float(v) for v in r.curve] for r in results], dtype=pl.List(pl.Float64)),
    )
    return pl.DataFrame(columns)
