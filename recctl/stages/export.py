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

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl import clock
from recctl.artifacts import Manifest, read_manifest, write_json_atomic
from recctl.columns import Columns
from recctl.config import Config, is_uri
from recctl.errors import ArtifactError, ExportValidationError
from recctl.export import (
    ExportExpectations,
    prune_old,
    publish,
    published_dict,
    read_pointer,
    sort_rows,
    today_utc,
)
from recctl.gates import Evaluation, check_gates
from recctl.lists.audience import Audience
from recctl.memory import no_hugepage_advice
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
    serving_model_names,
)
from recctl.versions import new_version_id, prune_versions, record_version
from recctl.workdir import Ledger, export_folder, lock_wait, refuse_foreign, writes_workdir

__all__ = ["export_directory", "remote_directory", "run_serve_export"]

log = logging.getLogger(__name__)


def export_directory(cfg: Config) -> Path:
    """Where published files go: ``export.directory``, relative to the workdir unless absolute."""
    p = Path(cfg.export.directory).expanduser()
    return p if p.is_absolute() else cfg.workdir_path / p


def remote_directory(cfg: Config) -> str | None:
    """``export.directory`` when it is a URI (published through Spark: staging, validation, pointer), else None."""
    return cfg.export.directory.rstrip("/") if is_uri(cfg.export.directory) else None


def _remote_fs(cfg: Config) -> Any:
    from recctl.engine.spark.hadoopfs import HadoopFS
    from recctl.engine.spark.session import get_spark

    return HadoopFS(get_spark(cfg.engine))


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


def _evaluation(cfg: Config) -> tuple[Evaluation | None, str | None]:
    """The serving model's evaluation, when ``evaluate`` ran on the models trained now."""
    rc = recommend_section(cfg)
    eval_dir, train_dir = cfg.stage_dir("evaluate"), cfg.stage_dir("train")
    try:
        eval_manifest = read_manifest(eval_dir, stage="evaluate")
        train_manifest = read_manifest(train_dir, stage="train")
        metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    except (ArtifactError, OSError, ValueError):
        return None, "`recctl evaluate` has not run"
    trained = {Path(r.path).name: r.sha256 for r in train_manifest.outputs}
    evaluated = {Path(r.path).name: r.sha256 for r in eval_manifest.inputs}
    model_file = f"{rc.model}.pkl"
    if model_file not in evaluated:
        return None, f"the evaluation did not include {rc.model}"
    if evaluated[model_file] != trained.get(model_file):
        return None, "the evaluation is of an earlier training run; run `recctl evaluate` again"
    metric = str(metrics.get("primary_metric") or "")
    models = metrics.get("models", {})
    baseline = metrics.get("baseline")

    def mean(name: str | None) -> float | None:
        value = models.get(name, {}).get("mean", {}).get(metric) if name else None
        return None if value is None else float(value)

    return Evaluation(metric, rc.model, mean(rc.model), baseline, mean(baseline)), None


def _serving_model_files(cfg: Config, names: list[str]) -> tuple[dict[str, Path], dict[Path, str]]:
    """The serving models' files, and their sha256 as their manifest records them (checked on loading)."""
    from recctl.incremental.current import serving_source

    source = serving_source(cfg)
    out, known = {}, {}
    recorded = {Path(rec.path).name: rec.sha256 for rec in source.manifest.outputs}
    for name in names:
        path = source.model_file(name)
        if cfg.recommend is not None and cfg.recommend.refit_on_all_data and source.stage == "train":
            entry = source.manifest.summary.get("models", {}).get(name, {})
            path = source.models_dir / entry.get("serve_file", path.name)
        if path.exists():
            out[name] = path
            if path.name in recorded:
                known[path] = recorded[path.name]
    return out, known


def _prepare_related(
    cfg: Config, serving: Serving, directory: Path, date: str
) -> tuple[dict[str, tuple[Path, int]], dict[str, Any]]:
    """Build, write and validate the related-products files under temporary names (not yet published).

    Raises
    ------
    ExportValidationError
        A related file broke its contract: nothing is published (exit 7).
    """
    import tempfile

    from recctl.export import dated_name
    from recctl.lists import ListBuilder, Lists
    from recctl.related import RelatedExpectations, related_frame, validate_related, write_related

    rel = cfg.export.related
    assert rel is not None
    chain = [(name, serving.models[name]) for name in [rel.model, *rel.fallback]]
    builder = ListBuilder(chain, serving.rules, rel.k, candidates=serving.rc.rules.candidates)
    parts = [
        lists
        for _, lists in builder.iter_similar(np.arange(serving.n_items), rel.k, fill=True, min_score=rel.min_score)
    ]
    lists = Lists(
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.sources for p in parts]),
        parts[0].source_names,
    )
    frame = related_frame(lists, serving.item_ids)
    filled = any(m.supports_cold_users and m.supports_item_history for _, m in chain[1:])
    exp = RelatedExpectations(rel.k, serving.item_ids, serving.rules, filled)
    parquet = cfg.export.format == "parquet"
    prepared: dict[str, tuple[Path, int]] = {}
    summary: dict[str, Any] = {
        "model": rel.model,
        "k": rel.k,
        "items": serving.n_items,
        "rows": frame.height,
        "items_short": int((lists.lengths < rel.k).sum()),
        "items_empty": int((lists.lengths == 0).sum()),
        "files": [],
    }
    try:
        for layout in rel.layouts:
            kind = "related" if layout == "long" else "related_skus"
            name = dated_name(cfg.export, date, kind)
            if layout == "long" and not parquet:
                name = name.rsplit(".", 1)[0] + ".csv"
            if layout == "sku_list":
                name = name.rsplit(".", 1)[0] + ".csv"
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            os.close(fd)
            tmp = Path(tmp_name)
            prepared[name] = (tmp, 0)
            rows = write_related(frame, serving.item_ids, tmp, layout, rel, parquet=parquet and layout == "long")
            problems = validate_related(tmp, layout, rel, exp, parquet=parquet and layout == "long")
            if problems:
                raise ExportValidationError(
                    f"{name}: the related-products file failed validation, nothing was published:\n  - "
                    + "\n  - ".join(problems)
                )
            prepared[name] = (tmp, rows)
            summary["files"].append({"file": name, "layout": layout, "rows": rows})
    except BaseException:
        for tmp, _ in prepared.values():
            tmp.unlink(missing_ok=True)
        raise
    return prepared, summary


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
        The file failed its contract checks or a publication gate (``export.gates``): nothing
        was published (exit 7), the published file and pointer are untouched.
    ArtifactError
        The recommend stage is missing, stale or changed.
    """
    # numpy's huge-page advice off (recctl.memory): the stage's big arrays are all fresh (the
    # bundle's lists, exclusions, live state: 5M events / 50k items, 1-4 system CPU-s of
    # compaction in page faults with the advice, ~0.1 without)
    with no_hugepage_advice():
        return _serve_export(cfg, date=date, progress=progress)


def _serve_export(cfg: Config, *, date: str | None, progress: Progress | None) -> Manifest:
    """:func:`run_serve_export`'s work."""
    rc = recommend_section(cfg)
    rec_dir, rec_manifest = require_stage(cfg, "recommend", [RECOMMEND_FILE])
    report(progress, "serve-export", 0, 3)
    # in file order once (normally as read: no copy), so the export's rows share its buffers
    recs = sort_rows(pl.read_parquet(rec_dir / RECOMMEND_FILE))
    remote = remote_directory(cfg)
    directory = export_directory(cfg)
    # a bad night (half the input, a broken model) is refused before anything is written
    if remote is not None:
        from recctl.engine.spark.publish import read_remote_pointer

        previous_pointer = read_remote_pointer(_remote_fs(cfg), remote, cfg.export)
    else:
        previous_pointer = read_pointer(directory, cfg.export)
    if previous_pointer is not None and previous_pointer.get("format") != cfg.export.format:
        previous_pointer = None  # rows of another format are not comparable
    evaluation, why = _evaluation(cfg)
    n_users = recs[Columns.User].n_unique()
    gate = check_gates(
        cfg.export.gates,
        users=n_users,
        rows=recs.height if cfg.export.format in ("csv", "parquet") else n_users,
        k=rc.k,
        previous=previous_pointer,
        evaluation=evaluation,
        evaluation_problem=why,
    )
    if not gate.ok:
        current = previous_pointer.get("file") if previous_pointer else None
        raise ExportValidationError(
            "the new lists did not pass the publication gates, nothing was published"
            f"{f' ({current} is still the latest file)' if current else ''}:\n  - "
            + "\n  - ".join(gate.problems)
            + "\n  (after checking the input, `recctl rollback CONFIG --list` shows the versions kept)"
        )
    assignments = pl.read_parquet(rec_dir / ASSIGNMENTS_FILE) if cfg.experiment is not None else None
    holdout = (
        assignments.filter(pl.col(Columns.Variant) == HOLDOUT)[Columns.User].cast(pl.String)
        if assignments is not None
        else None
    )
    # the models are needed only for the bundle (its cold scores and similar items)
    related_cfg = cfg.export.related
    related_models = [] if related_cfg is None else [related_cfg.model, *related_cfg.fallback]
    names = [*serving_model_names(cfg), *related_models] if cfg.export.bundle else related_models
    serving = load_serving(cfg, model_names=list(dict.fromkeys(names)))
    audience = load_audience(cfg, serving, cache=True)
    exp = _expectations(cfg, serving, audience, recs, holdout)
    report(progress, "serve-export", 1, 3)
    inputs = [rec_dir / RECOMMEND_FILE] + ([rec_dir / ASSIGNMENTS_FILE] if assignments is not None else [])
    short_path = rec_dir / SHORT_FILE
    short = pl.read_parquet(short_path) if short_path.exists() else None
    if short is not None:
        inputs.append(short_path)
    generated_at = rec_manifest.summary.get("generated_at") or rec_manifest.finished_at or rec_manifest.started_at
    generated_at = str(generated_at).split(".")[0].rstrip("Z") + "Z"
    published_at = clock.now()
    recs_sha = rec_manifest.output(RECOMMEND_FILE).sha256
    version_id = new_version_id(published_at, recs_sha) if cfg.export.versions else None
    if cfg.export.delta:  # read yesterday's file before publishing can overwrite it
        from recctl.incremental.changes import read_previous_export

        previous = read_previous_export(directory, cfg.export)
    # the shop's folder is locked too (two workdirs may publish into it); workdir lock first, always
    # (an object store has no lock: concurrent publishers each commit a whole validated file, last wins)
    folder = export_folder(directory, wait_s=lock_wait(cfg.lock_wait_s)) if remote is None else contextlib.nullcontext()
    local_copies: Path | None = None
    with (
        contextlib.ExitStack() as cleanup,
        folder,
        StageRun(cfg, "serve-export", sections=["export", "recommend", "experiment"], inputs=inputs) as run,
    ):
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
            for name, digest in bundle["files"].items():  # hashed as written: not read back to hash again
                run.add_output(run.dir / "bundle" / name, sha256=digest)
        prepared, related_summary = (
            _prepare_related(cfg, serving, directory, date or today_utc()) if related_cfg is not None else ({}, None)
        )
        if related_summary is not None:
            run.summary["related"] = related_summary
        extra: dict[str, pl.DataFrame] = {}
        if assignments is not None:
            extra["assignments"] = assignments
        if short is not None:
            extra["short_lists"] = short
        removed: list[str] = []
        common: dict[str, Any] = {  # what the file and its pointer say, remote or local alike
            "date": date or today_utc(),
            "generated_at": generated_at,
            "extra": extra,
            "pointer_extra": {"version": version_id} if version_id else None,
        }
        if remote is not None:
            from recctl.engine.spark.publish import publish_remote
            from recctl.engine.spark.session import get_spark

            # written locally first (kept for the version record), then staged and validated remotely
            local_copies = Path(tempfile.mkdtemp(prefix=".export-remote.", suffix=".tmp", dir=cfg.workdir_path))
            cleanup.callback(shutil.rmtree, local_copies, True)
            main, validation, side, removed = publish_remote(
                get_spark(cfg.engine),
                recs,
                cfg.export,
                remote,
                exp,
                local_copies,
                **common,
            )
        else:
            main, validation, side = publish(
                recs,
                cfg.export,
                directory,
                exp,
                prepared=prepared,
                **common,
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

            delta_path = directory / dated_name(cfg.export, date or today_utc(), "delta")
            refuse_foreign(directory, [delta_path.name])
            run.summary["delta"] = write_delta(
                recs,
                previous,
                delta_path,
                lambda frame, tmp: write_export(frame, tmp, cfg.export, k=rc.k, generated_at=generated_at),
            )
            ledger = Ledger(directory)
            if delta_path.exists():
                ledger.record(delta_path.name)
            ledger.save()
        if remote is None and cfg.export.keep:
            removed = prune_old(directory, cfg.export, cfg.export.keep)
        kept_version = None
        if version_id is not None:
            if remote is not None and local_copies is not None:  # the local copies of what was published
                from recctl.engine.spark.publish import read_remote_pointer

                pointer = read_remote_pointer(_remote_fs(cfg), remote, cfg.export) or {}
                files = [local_copies / Path(f.path).name for f in [main, *side]]
            else:
                pointer = read_pointer(directory, cfg.export) or {}
                files = [Path(main.path), *[Path(f.path) for f in side]]
            model_files, known = _serving_model_files(cfg, list(serving.models))
            if remote is None:  # hashed as published: not read back to hash again
                known.update({Path(f.path): f.sha256 for f in [main, *side]})
            if cfg.export.bundle:
                known.update({run.dir / "bundle" / name: digest for name, digest in bundle["files"].items()})
            kept_version = record_version(
                cfg.workdir_path,
                version_id,
                pointer=pointer,
                published=files,
                bundle=run.dir / "bundle" if cfg.export.bundle else None,
                models=model_files,
                metrics=cfg.stage_dir("evaluate") / "metrics.json" if evaluation is not None else None,
                summary={
                    "users": main.users,
                    "rows": main.rows,
                    "short_lists": validation.short_users,
                    "generated_at": generated_at,
                    "metric": None
                    if evaluation is None
                    else {"name": evaluation.metric, "model": evaluation.model, "value": evaluation.value},
                },
                known_sha256=known,
            )
            pruned_versions = prune_versions(cfg.workdir_path, cfg.export.versions, protect={version_id})
            run.summary["versions_pruned"] = pruned_versions
        run.summary.update(
            format=cfg.export.format,
            directory=remote or str(directory),
            file=Path(main.path).name,
            published=published_dict([main, *side]),
            rows=main.rows,
            users=main.users,
            short_lists=validation.short_users,
            k=rc.k,
            generated_at=generated_at,
            published_at=published_at.isoformat().replace("+00:00", "Z"),
            pruned=removed,
            gates=gate.to_dict(),
            version=None if kept_version is None else kept_version.id,
        )
        report(progress, "serve-export", 3, 3)
    log.info("published %s (%d rows, %d users)", main.path, main.rows, main.users or 0)
    return run.manifest
