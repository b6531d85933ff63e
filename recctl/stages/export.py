"""The ``serve-export`` stage: publish the recommend stage's lists as the shop's nightly file.

Reads ``<workdir>/recommend/recommendations.parquet`` (hash-checked against its manifest and
refused when the ``recommend``/``experiment`` config changed since), writes the configured
format to ``export.directory`` (default ``<workdir>/exports/``) through
:func:`recctl.export.publish` — validated against expectations recomputed here from the
preprocess outputs and the rules, not taken from the recommend stage — and records what it
published in ``<workdir>/export/manifest.json`` (sha256, rows, users) next to a
``validation.json``. When validation fails nothing is published and exit code 7 follows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from recctl.artifacts import Manifest, write_json_atomic
from recctl.columns import Columns
from recctl.config import Config
from recctl.export import ExportExpectations, prune_old, publish, published_dict, today_utc
from recctl.progress import Progress, report
from recctl.rules import build_exclusions, build_item_rules
from recctl.stages._common import StageRun, require_stage
from recctl.stages.recommend import ASSIGNMENTS_FILE, HOLDOUT, RECOMMEND_FILE, recommend_section

__all__ = ["export_directory", "run_serve_export"]

log = logging.getLogger(__name__)


def export_directory(cfg: Config) -> Path:
    """Where published files go: ``export.directory``, relative to the workdir unless absolute."""
    p = Path(cfg.export.directory).expanduser()
    return p if p.is_absolute() else cfg.workdir_path / p


def _expectations(cfg: Config, rec_dir: Path, recs: pl.DataFrame) -> tuple[ExportExpectations, pl.DataFrame | None]:
    rc = recommend_section(cfg)
    from recctl.incremental.current import serving_source

    pre_dir = serving_source(cfg).data_dir  # preprocess, or the current `recctl update`'s grown data
    users = pl.read_parquet(pre_dir / "users.parquet").sort(Columns.UserIdx)
    items = pl.read_parquet(pre_dir / "items.parquet").sort(Columns.ItemIdx)
    user_ids = users[Columns.User].cast(pl.String).to_numpy().astype(object)
    expected = user_ids
    assignments = None
    if cfg.experiment is not None:
        path = rec_dir / ASSIGNMENTS_FILE
        assignments = pl.read_parquet(path)
        kept = assignments.filter(pl.col(Columns.Variant) != HOLDOUT)[Columns.User].to_numpy().astype(object)
        expected = kept
    rules = build_item_rules(rc.rules, items, resolve=cfg.resolve)
    exclusions = build_exclusions(rc.rules, pre_dir, users.height, items.height, exclude_seen=rc.exclude_seen)
    exp = ExportExpectations(
        k=rc.k,
        users=np.asarray(expected, dtype=object),
        user_ids=user_ids,
        item_ids=items[Columns.Item].cast(pl.String).to_numpy().astype(object),
        exclusions=exclusions,
        item_mask=rules.item_mask,
        with_source=cfg.export.include_source,
        with_variant=Columns.Variant in recs.columns,
    )
    return exp, assignments


def run_serve_export(cfg: Config, *, date: str | None = None, progress: Progress | None = None) -> Manifest:
    """Publish the nightly recommendations file (validated, atomic, with a latest pointer).

    Parameters
    ----------
    cfg
        The experiment config (``recommend`` and ``export`` sections).
    date
        ``YYYY-MM-DD`` for the file name (default: today in UTC).
    progress
        ``progress(task, done, total)``.

    Returns
    -------
    Manifest
        ``summary.published`` lists each published file with its sha256, bytes and rows.

    Raises
    ------
    ExportValidationError
        The file failed its contract checks; nothing was published (exit 7).
    ArtifactError
        The recommend stage is missing, stale or changed.
    """
    rc = recommend_section(cfg)
    rec_dir, rec_manifest = require_stage(cfg, "recommend", [RECOMMEND_FILE], sections=["recommend", "experiment"])
    report(progress, "serve-export", 0, 3)
    recs = pl.read_parquet(rec_dir / RECOMMEND_FILE)
    exp, assignments = _expectations(cfg, rec_dir, recs)
    report(progress, "serve-export", 1, 3)
    inputs = [rec_dir / RECOMMEND_FILE] + ([rec_dir / ASSIGNMENTS_FILE] if assignments is not None else [])
    generated_at = rec_manifest.summary.get("generated_at") or rec_manifest.finished_at or rec_manifest.started_at
    generated_at = str(generated_at).split(".")[0].rstrip("Z") + "Z"
    directory = export_directory(cfg)
    if cfg.export.delta:  # read yesterday's file before publishing can overwrite it
        from recctl.incremental.changes import read_previous_export

        previous = read_previous_export(directory, cfg.export)
    with StageRun(cfg, "serve-export", sections=["export", "recommend", "experiment"], inputs=inputs) as run:
        # the bundle first: if it cannot be built (e.g. a model file is gone) nothing is published
        if cfg.export.bundle:  # arrays + JSON a web application loads with recctl.serving.load
            from recctl.stages.bundle import build_bundle

            bundle = build_bundle(cfg, recs, run.dir / "bundle", assignments=assignments, generated_at=generated_at)
            run.summary["bundle"] = {"directory": str(cfg.stage_dir("export") / "bundle"), **bundle}
        main, validation, side = publish(
            recs,
            cfg.export,
            directory,
            exp,
            date=date or today_utc(),
            generated_at=generated_at,
            extra={"assignments": assignments} if assignments is not None else None,
        )
        report(progress, "serve-export", 2, 3)
        write_json_atomic(
            run.dir / "validation.json",
            {
                "file": main.path,
                "ok": validation.ok,
                "rows": validation.rows,
                "users": validation.users,
                "k": rc.k,
                "checks": [
                    "schema",
                    "exactly k unique items and ranks per user",
                    "every expected user present",
                    "no unexpected user",
                    "items in catalogue",
                    "no rule-excluded item",
                    "no excluded (seen) item",
                ],
            },
        )
        run.add_output(run.dir / "validation.json")
        if cfg.export.delta:  # users whose list differs from the previous published file
            from recctl.export import dated_name, write_export
            from recctl.incremental.changes import write_delta

            run.summary["delta"] = write_delta(
                recs,
                previous,
                directory / dated_name(cfg.export, date or today_utc(), "delta"),
                lambda frame, tmp: write_export(frame, tmp, cfg.export, k=rc.k, generated_at=generated_at),
            )
        removed = prune_old(directory, cfg.export, cfg.export.keep) if cfg.export.keep else []
        run.summary.update(
            format=cfg.export.format,
            directory=str(directory),
            file=Path(main.path).name,
            published=published_dict([main, *side]),
            rows=main.rows,
            users=main.users,
            k=rc.k,
            generated_at=generated_at,
            pruned=removed,
        )
        report(progress, "serve-export", 3, 3)
    log.info("published %s (%d rows, %d users)", main.path, main.rows, main.users or 0)
    return run.manifest
