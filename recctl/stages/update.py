"""The ``update`` stage: fold the batches ingested since training into the trained models.

Reads the batches ``recctl ingest --append`` added after the models' data was prepared (or
after the previous update), grows the dataset (new users and items appended at the end of the
index, so every old index stays put), updates every model (:mod:`recctl.incremental.update`),
and writes ``<workdir>/update/``:

* ``users.parquet``, ``items.parquet``, ``train.parquet``, ``test.parquet``, ``events.parquet``
  and the feature matrices — the grown dataset, in the ``preprocess`` layout;
* ``<model>.pkl`` — the updated models;
* ``changes.parquet`` (``user_id, user_idx, is_new, n_events, first_ts, last_ts``: the users
  with new events) and ``new_items.parquet`` (``item_id, item_idx``);
* ``drift.json`` with ``check_drift``; ``manifest.json`` (batches consumed, new users and
  items, per model exact / approximate and timings).

``recommend`` and ``serve-export`` serve the update while it belongs to the current train run
(:mod:`recctl.incremental.current`); updates chain: the next one starts from this one.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.artifacts import (
    MANIFEST_NAME,
    Manifest,
    config_hash,
    sha256_file,
    write_json_atomic,
    write_parquet_atomic,
)
from recctl.columns import Columns
from recctl.config import Config
from recctl.data.dataset import interactions_matrix
from recctl.data.features import save_features
from recctl.data.split import SPLIT, SPLIT_FILES
from recctl.errors import ArtifactError, ConfigError
from recctl.incremental.batch import GrownData, consumed_by_preprocess, grow_dataset, pending_rows
from recctl.incremental.current import UPDATE_STAGE, current_update
from recctl.incremental.drift import DriftRule, compare_models
from recctl.incremental.update import ModelUpdate, fresh_model, update_model
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

__all__ = ["CHANGES_FILE", "NEW_ITEMS_FILE", "run_update"]

log = logging.getLogger(__name__)

CHANGES_FILE = "changes.parquet"
NEW_ITEMS_FILE = "new_items.parquet"
_SECTIONS = ["update", "preprocess", "models", "recommend.refit_on_all_data"]


def _base_state(
    cfg: Config,
    train_manifest: Manifest,
    pre_dir: Path,
    pre_manifest: Manifest,
    ingest_manifest: Manifest,
) -> dict[str, Any]:
    """Where the update starts: the previous current update, or preprocess + train."""
    refit = _refit(cfg)
    current = current_update(cfg)
    if current is not None and bool(current[1].summary.get("refit_on_all_data", False)) == refit:
        upd_dir, manifest = current
        return {
            "stage": UPDATE_STAGE,
            "data_dir": upd_dir,
            "models_dir": upd_dir,
            "manifest": manifest,
            "split": "train",  # an update's train.parquet already holds what its models fit on
            "model_key": "file",
            "consumed_rows": int(manifest.summary["consumed_rows"]),
            "consumed_batches": list(manifest.summary["consumed_batches"]),
        }
    if refit and not train_manifest.summary.get("refit_on_all_data"):
        raise ArtifactError(
            f"{cfg.workdir_path / 'train'}: the trained models were not refitted on all data, but "
            f"recommend.refit_on_all_data is set; run `recctl train {cfg.source_path or 'CONFIG'}` first."
        )
    rows, shas = consumed_by_preprocess(pre_manifest, ingest_manifest)
    train_dir = cfg.workdir_path / "train"
    return {
        "stage": "train",
        "data_dir": pre_dir,
        "models_dir": train_dir,
        "manifest": train_manifest,
        # the serving models: refitted on every event (all.parquet), or the train-split ones
        "split": "all" if refit else "train",
        "model_key": "serve_file" if refit else "file",
        "consumed_rows": rows,
        "consumed_batches": shas,
    }


def _refit(cfg: Config) -> bool:
    return bool(cfg.recommend is not None and cfg.recommend.refit_on_all_data)


def _model_names(cfg: Config, base_manifest: Manifest, train_manifest: Manifest) -> list[str]:
    trained = list(train_manifest.summary.get("models", {}))
    names = cfg.update.models or trained
    for i, name in enumerate(names):
        if name not in trained:
            raise ConfigError(
                f"{cfg.source_path or 'config'}: update.models.{i}: model '{name}' was not trained "
                f"(trained: {', '.join(trained) or 'none'}); run `recctl train` with it first."
            )
        if name not in base_manifest.summary.get("models", {}):
            raise ArtifactError(
                f"model '{name}' is not in the current update (it updated: "
                f"{', '.join(base_manifest.summary.get('models', {}))}); "
                "run `recctl train` to start afresh."
            )
    return list(names)


def _load_model(models_dir: Path, manifest: Manifest, name: str, key: str = "file") -> Any:
    from recctl.models.base import Recommender

    entry = manifest.summary["models"][name]
    return Recommender.load(models_dir / entry[key], manifest.output(entry[key]).sha256)


def _events_frame(base_dir: Path, grown: GrownData) -> pl.DataFrame:
    """Every event of the grown dataset (base events, then the new ones as training events)."""
    new = grown.new_events.with_columns(pl.lit("tune_train").alias(SPLIT))
    path = base_dir / "events.parquet"
    if not path.exists():
        return new
    old = pl.read_parquet(path)
    new = new.select(old.columns).cast(old.schema)
    return pl.concat([old, new], how="vertical")


def _changes(grown: GrownData) -> pl.DataFrame:
    ev = grown.new_events
    agg = ev.group_by(Columns.UserIdx).agg(
        pl.len().alias("n_events"),
        pl.col(Columns.Timestamp).min().alias("first_ts"),
        pl.col(Columns.Timestamp).max().alias("last_ts"),
    )
    ids = grown.users.select(Columns.User, Columns.UserIdx)
    return (
        agg.join(ids, on=Columns.UserIdx)
        .with_columns((pl.col(Columns.UserIdx) >= grown.n_old_users).alias("is_new"))
        .select(Columns.User, Columns.UserIdx, "is_new", "n_events", "first_ts", "last_ts")
        .sort(Columns.UserIdx)
    )


def _up_to_date(cfg: Config, base: dict[str, Any], pending_rows_: int) -> Manifest:
    section = {name: cfg.section(name) for name in _SECTIONS}
    manifest = Manifest(stage=UPDATE_STAGE, config_section=section, config_hash=config_hash(section), seed=cfg.seed)
    manifest.finished_at = manifest.started_at
    manifest.duration_s = 0.0
    manifest.summary = {
        "status": "up to date",
        "base": {"stage": base["stage"]},
        "n_new_events": 0,
        "n_new_users": 0,
        "n_new_items": 0,
        "consumed_rows": base["consumed_rows"],
        "pending_rows": pending_rows_,
        "models": {},
    }
    return manifest


def _drift_users(grown: GrownData, sample: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(grown.n_users), grown.changed_users)
    picked = rng.choice(others, size=min(sample, len(others)), replace=False) if len(others) else others
    return np.union1d(grown.changed_users, picked).astype(np.int64)


@writes_workdir
@timed_stage
def run_update(cfg: Config, *, check_drift: bool = False, progress: Progress | None = None) -> Manifest:
    """Update the trained models with the batches ingested since, and write ``<workdir>/update/``.

    Parameters
    ----------
    cfg
        The experiment config (``update`` section; ``preprocess`` for weights and features).
    check_drift
        Also fit every incrementally updated model from scratch on the same grown data and
        compare (``update.drift``): metric on the test split and top-K overlap. When the rule
        fires and ``update.drift.on_drift`` is ``retrain``, the retrained model is published
        instead of the update.
    progress
        Optional ``progress(task, done, total)`` callback.

    Returns
    -------
    Manifest
        The update manifest. When no new rows or catalogue items exist, nothing is written and
        the returned (unwritten) manifest's ``summary.status`` is ``"up to date"``.

    Raises
    ------
    ArtifactError
        Missing upstream stages, an ingest re-run in full since training, a model file changed.
    ConfigError
        ``update.models`` naming a model that was not trained.
    """
    t_start = time.perf_counter()
    # with recommend.refit_on_all_data (the default) the update grows the serving models, the
    # ones refitted on every event, over the train + test pairs; otherwise the train-split ones
    refit = _refit(cfg)
    ingest_dir, ingest_manifest = require_stage(cfg, "ingest", ["interactions.parquet", "items.parquet"])
    # preprocess and train may lag behind ingest by appended batches: folding those in is the point
    pre_dir, pre_manifest = require_stage(
        cfg, "preprocess", ["users.parquet", "items.parquet", "train.parquet"], allow_appended=True
    )
    train_dir, train_manifest = require_stage(cfg, "train", allow_appended=True)
    train_sha = sha256_file(train_dir / MANIFEST_NAME)
    base = _base_state(cfg, train_manifest, pre_dir, pre_manifest, ingest_manifest)
    names = _model_names(cfg, base["manifest"], train_manifest)

    report(progress, "update", 0, len(names) + 2)
    pending = pending_rows(ingest_dir, ingest_manifest, base["consumed_rows"], base["consumed_batches"])
    catalogue = pl.read_parquet(ingest_dir / "items.parquet")
    users_path = ingest_dir / "users.parquet"
    user_table = pl.read_parquet(users_path) if users_path.exists() else None
    base_items = pl.read_parquet(base["data_dir"] / "items.parquet", columns=[Columns.Item])
    n_new_catalogue = (
        catalogue.select(pl.col(Columns.Item).cast(pl.String))
        .join(
            base_items.with_columns(pl.col(Columns.Item).cast(pl.String)),
            on=Columns.Item,
            how="anti",
        )
        .height
    )
    if pending.frame.height == 0 and n_new_catalogue == 0:
        log.info("update: nothing new since %s", base["stage"])
        return _up_to_date(cfg, base, 0)

    t0 = time.perf_counter()
    grown = grow_dataset(
        cfg, base["data_dir"], pending.frame, catalogue=catalogue, user_table=user_table, split=base["split"]
    )
    events = _events_frame(base["data_dir"], grown)
    fitted_on = list(SPLIT_FILES["all" if refit else "train"])
    dataset = grown.dataset(
        events=events.filter(pl.col(SPLIT).is_in(fitted_on))
        .drop(SPLIT)
        .sort(Columns.UserIdx, Columns.Timestamp, maintain_order=True)
    )
    grow_s = time.perf_counter() - t0
    report(progress, "update", 1, len(names) + 2)

    inputs = [ingest_dir / "interactions.parquet", ingest_dir / "items.parquet"]
    inputs += [base["models_dir"] / base["manifest"].summary["models"][n][base["model_key"]] for n in names]
    with StageRun(cfg, UPDATE_STAGE, sections=_SECTIONS, inputs=inputs) as run:
        d = run.dir
        _write_dataset(run, grown, events, base["data_dir"])
        updates: dict[str, ModelUpdate] = {}
        for i, name in enumerate(names):
            model = _load_model(base["models_dir"], base["manifest"], name, base["model_key"])
            upd = update_model(
                cfg,
                name,
                model,
                dataset,
                grown.changed_users,
                progress=lambda f, i=i, n=name: report(progress, f"update {n}", i + f, len(names)),
            )
            updates[name] = upd
            log.info(
                "update %s (%s): %s in %.2fs, exact=%s",
                name,
                upd.kind,
                upd.how,
                upd.seconds,
                upd.exact,
            )
            report(progress, "update", i + 2, len(names) + 2)
        drift: dict[str, Any] = {}
        drift_s = 0.0
        if check_drift:
            t1 = time.perf_counter()
            drift = _check_drift(cfg, updates, dataset, grown, base["data_dir"], progress)
            drift_s = time.perf_counter() - t1
            write_json_atomic(d / "drift.json", drift)
            run.add_output(d / "drift.json")
        models_summary = {}
        for name, upd in updates.items():
            record = upd.model.save(d / f"{name}.pkl")
            run.add_output(d / f"{name}.pkl")
            models_summary[name] = {**upd.to_dict(), "file": f"{name}.pkl", "sha256": record.sha256}
        report(progress, "update", len(names) + 2, len(names) + 2)
        run.summary.update(
            status="updated",
            refit_on_all_data=refit,
            base={
                "stage": base["stage"],
                "train_manifest_sha256": train_sha,
                "previous_update_started_at": base["manifest"].started_at if base["stage"] == UPDATE_STAGE else None,
            },
            batches=[{k: b.get(k) for k in ("path", "sha256", "added", "ingested_at")} for b in pending.batches],
            consumed_rows=pending.end_row,
            consumed_batches=list(dict.fromkeys(base["consumed_batches"] + [b["sha256"] for b in pending.batches])),
            rows_read=pending.frame.height,
            n_users=grown.n_users,
            n_items=grown.n_items,
            n_interactions=int(grown.train.height),
            models=models_summary,
            drift=drift,
            timings={
                "grow_s": round(grow_s, 3),
                "models_s": round(sum(u.seconds for u in updates.values()), 3),
                "drift_s": round(drift_s, 3),
                "total_s": round(time.perf_counter() - t_start, 3),
            },
            **grown.info,
        )
    return run.manifest


def _write_dataset(run: StageRun, grown: GrownData, events: pl.DataFrame, base_dir: Path) -> None:
    d = run.dir
    frames = {
        "users.parquet": grown.users,
        "items.parquet": grown.items,
        "train.parquet": grown.train,
        "events.parquet": events,
        CHANGES_FILE: _changes(grown),
        NEW_ITEMS_FILE: grown.items.filter(pl.col(Columns.ItemIdx) >= grown.n_old_items).select(
            Columns.Item, Columns.ItemIdx
        ),
    }
    for name, frame in frames.items():
        write_parquet_atomic(frame, d / name)
        run.add_output(d / name, frame.height)
    # the test split is untouched by an update; indices are stable, so it is reused as it is
    if (base_dir / "test.parquet").exists():
        shutil.copy2(base_dir / "test.parquet", d / "test.parquet")
        run.add_output(
            d / "test.parquet",
            pl.scan_parquet(d / "test.parquet").select(pl.len()).collect().item(),
        )
    for prefix, matrix, names in (
        ("item", grown.item_features, grown.item_feature_names),
        ("user", grown.user_features, grown.user_feature_names),
    ):
        if matrix is not None and names is not None:  # grown together from preprocess's features
            for path in save_features(d, prefix, matrix, names):
                run.add_output(path, matrix.shape[0] if path.suffix == ".npz" else names.height)


def _check_drift(
    cfg: Config,
    updates: dict[str, ModelUpdate],
    dataset: Any,
    grown: GrownData,
    base_dir: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    """Retrain each updated model on the same data and compare (replace it if the rule says so)."""
    dc = cfg.update.drift
    rule = DriftRule(metric=dc.metric, max_metric_drop=dc.max_metric_drop, min_overlap=dc.min_overlap)
    test_path = base_dir / "test.parquet"
    target = (
        interactions_matrix(pl.read_parquet(test_path), grown.n_users, grown.n_items)
        if test_path.exists()
        else sp.csr_matrix((grown.n_users, grown.n_items), dtype=np.float32)
    )
    users = _drift_users(grown, dc.sample_users, cfg.seed)
    out: dict[str, Any] = {
        "rule": {
            "metric": dc.metric,
            "max_metric_drop": dc.max_metric_drop,
            "min_overlap": dc.min_overlap,
            "on_drift": dc.on_drift,
        },
        "models": {},
    }
    for i, (name, upd) in enumerate(updates.items()):
        report(progress, "drift check", i, len(updates))
        if upd.how == "rebuilt":
            out["models"][name] = {"skipped": "rebuilt from scratch: identical to a full retrain"}
            continue
        t0 = time.perf_counter()
        retrained = fresh_model(cfg, name).fit(dataset)
        retrain_s = time.perf_counter() - t0
        reference = None
        model_cfg = cfg.model_config_for(name)
        if "random_state" in type(model_cfg).model_fields:
            # a stochastic model: a second retrain with another seed is the yardstick of overlap
            seed = (model_cfg.random_state if model_cfg.random_state is not None else cfg.seed) + 1
            reference = fresh_model(cfg, name)
            reference.config = reference.config.model_copy(update={"random_state": seed})
            reference.fit(dataset)
        rep = compare_models(
            name,
            upd.model,
            retrained,
            exclude=dataset.interactions,
            target=target,
            rule=rule,
            users=users,
            overlap_k=dc.overlap_k,
            reference=reference,
        )
        entry = {
            **rep.to_dict(),
            "retrain_seconds": round(retrain_s, 3),
            "update_seconds": round(upd.seconds, 3),
            "action": "kept update",
        }
        if rep.retrain_needed and dc.on_drift == "retrain":
            updates[name] = ModelUpdate(
                name,
                upd.kind,
                retrained,
                "retrained (drift)",
                True,
                upd.seconds + retrain_s,
                {"replaced_update": upd.info, "reasons": rep.reasons},
            )
            entry["action"] = "replaced by full retrain"
            log.warning(
                "update %s: drift too large (%s); publishing the full retrain",
                name,
                "; ".join(rep.reasons),
            )
        out["models"][name] = entry
    report(progress, "drift check", len(updates), len(updates))
    out["retrain_needed"] = any(m.get("retrain_needed") for m in out["models"].values())
    return out
