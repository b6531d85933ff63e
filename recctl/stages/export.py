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
from recctl.lists.audience import Audience
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.stages.recommend import (
    ASSIGNMENTS_FILE,
    HOLDOUT,
    RECOMMEND_FILE,
    SHORT_FILE,
    Serving,
    load_audience,
    load_serving,
    recommend_section,
)
from recctl.workdir import writes_workdir

__all__ = ["export_directory", "run_serve_export"]

log = logging.getLogger(__name__)


def export_directory(cfg: Config) -> Path:
    """Where published files go: ``export.directory``, relative to the workdir unless absolute."""
    p = Path(cfg.export.directory).expanduser()
    return p if p.is_absolute() else cfg.workdir_path / p


def _expectations(
    cfg: Config, serving: Serving, audience: Audience, recs: pl.DataFrame, holdout: pl.Series | None
) -> ExportExpectations:
    """What the file must satisfy, from the inputs and the rules (not from the recommend stage)."""
    rc = recommend_section(cfg)
    expected = audience.user_ids
    if holdout is not None and len(holdout):
        expected = pl.DataFrame({Columns.User: expected}).join(
            pl.DataFrame({Columns.User: holdout}), on=Columns.User, how="anti"
        )[Columns.User]
    rules = serving.rules
    return ExportExpectations(
        k=rc.k,
        users=expected,
        user_ids=audience.user_ids,
        item_ids=serving.item_ids,
        exclusions=audience.exclude,
        item_mask=rules.item_mask,
        with_source=cfg.export.include_source,
        with_variant=Columns.Variant in recs.columns,
        cap_codes=rules.cap_codes,
        cap=rules.cap,
    )


@writes_workdir
@timed_stage
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
    rec_dir, rec_manifest = require_stage(cfg, "recommend", [RECOMMEND_FILE])
    report(progress, "serve-export", 0, 3)
    recs = pl.read_parquet(rec_dir / RECOMMEND_FILE)
    assignments = pl.read_parquet(rec_dir / ASSIGNMENTS_FILE) if cfg.experiment is not None else None
    holdout = (
        assignments.filter(pl.col(Columns.Variant) == HOLDOUT)[Columns.User].cast(pl.String)
        if assignments is not None
        else None
    )
    # the models are needed only for the bundle (its cold scores and similar items)
    serving = load_serving(cfg, model_names=None if cfg.export.bundle else [])
    audience = load_audience(cfg, serving)
    exp = _expectations(cfg, serving, audience, recs, holdout)
    report(progress, "serve-export", 1, 3)
    inputs = [rec_dir / RECOMMEND_FILE] + ([rec_dir / ASSIGNMENTS_FILE] if assignments is not None else [])
    short_path = rec_dir / SHORT_FILE
    short = pl.read_parquet(short_path) if short_path.exists() else None
    if short is not None:
        inputs.append(short_path)
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

            served = audience
            if holdout is not None and len(holdout):
                keep = np.flatnonzero(~audience.user_ids.is_in(holdout).to_numpy())
                served = audience.take(keep)
            bundle = build_bundle(
                cfg,
                serving,
                served,
                recs,
                run.dir / "bundle",
                holdout=[] if holdout is None else holdout.to_list(),
                generated_at=generated_at,
            )
            run.summary["bundle"] = {"directory": str(cfg.stage_dir("export") / "bundle"), **bundle}
        extra: dict[str, pl.DataFrame] = {}
        if assignments is not None:
            extra["assignments"] = assignments
        if short is not None:
            extra["short_lists"] = short
        main, validation, side = publish(
            recs,
            cfg.export,
            directory,
            exp,
            date=date or today_utc(),
            generated_at=generated_at,
            extra=extra,
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
                "short_lists": validation.short_users,
                "checks": [
                    "schema",
                    "exactly k unique items and ranks per user (every eligible item when fewer)",
                    "every customer present (customers with no eligible item excepted)",
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
            short_lists=validation.short_users,
            k=rc.k,
            generated_at=generated_at,
            pruned=removed,
        )
        report(progress, "serve-export", 3, 3)
    log.info("published %s (%d rows, %d users)", main.path, main.rows, main.users or 0)
    return run.manifest
