"""The ``preprocess`` stage: canonical interactions -> weights, id maps, splits and features.

Reads ``<workdir>/ingest/`` (hash-checked against its manifest) and writes
``<workdir>/preprocess/`` in the layout documented in :mod:`recctl.data.dataset`:

1. weight every event (:func:`recctl.data.preprocess.weight_events`);
2. drop users / items under the minimum counts, iteratively with ``kcore``;
3. index ids in sorted order (stable: same input, same indices), keeping catalogue items
   without interactions; the events are sorted by user and time (equal timestamps in file
   order) right after reading, and every step keeps that order;
4. label every event ``tune_train`` / ``valid`` / ``test`` (:mod:`recctl.data.split`);
5. aggregate each split to one row per (user, item) (``train`` = ``tune_train`` + ``valid``;
   :class:`recctl.data.preprocess.LabelledEvents`); the training splits (``train``,
   ``tune_train``, ``all``) are decayed first, each relative to its own time
   (:func:`recctl.data.preprocess.decay_weights`), and their weights checked;
6. build item (and user) features when configured (:mod:`recctl.data.features`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recctl.artifacts import INTERMEDIATE_PARQUET, Manifest, atomic_path
from recctl.columns import Columns
from recctl.config import Config
from recctl.data.embeddings import embedding_feature_names, load_item_embeddings
from recctl.data.features import build_features, item_feature_spec, save_features
from recctl.data.preprocess import (
    USER_CODE,
    CodedEvents,
    LabelledEvents,
    check_weights,
    filter_min_counts,
    index_events,
    read_weighted_events,
    sort_events,
)
from recctl.data.split import (
    SPLIT,
    SPLIT_DTYPE,
    SPLIT_FILES,
    TRAINING_SPLITS,
    assign_splits,
    label_codes,
    read_pairs_file,
)
from recctl.errors import ConfigError
from recctl.memory import no_hugepage_advice
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

__all__ = ["run_preprocess"]

log = logging.getLogger(__name__)

_STEPS = 6


@writes_workdir
@timed_stage
def run_preprocess(cfg: Config, *, progress: Progress | None = None) -> Manifest:
    """Turn the ingested interactions into the dataset models train and are evaluated on.

    Parameters
    ----------
    cfg
        The experiment config (``preprocess`` section and ``seed``).
    progress
        Optional progress callback.

    Returns
    -------
    Manifest
        ``summary`` holds counts at every step (events weighted / filtered / per split,
        users, items, cold items, cold test users dropped), the split cut times and the
        feature matrix shapes.

    Raises
    ------
    ArtifactError
        When ingest has not run or its outputs changed since.
    ConfigError
        An event type without a weight, a feature column not in the catalogue, an empty split.
    DataError
        Nothing left after filtering.

    Notes
    -----
    numpy's huge-page advice is off while it runs (:func:`recctl.memory.no_hugepage_advice`).
    """
    with no_hugepage_advice():
        return _run_preprocess(cfg, progress=progress)


def _run_preprocess(cfg: Config, *, progress: Progress | None = None) -> Manifest:
    """:func:`run_preprocess`'s steps."""
    ingest_dir, _ = require_stage(cfg, "ingest", ["interactions.parquet", "items.parquet"])
    pc = cfg.preprocess
    inputs = [ingest_dir / "interactions.parquet", ingest_dir / "items.parquet"]
    for name in ("test_file", "valid_file"):
        if getattr(pc.split, name):
            inputs.append(cfg.resolve(getattr(pc.split, name)))
    users_path = ingest_dir / "users.parquet"
    if users_path.exists():
        inputs.append(users_path)
    inputs += _embedding_paths(cfg)
    summary: dict[str, Any] = {}

    # the frame goes through the steps under one name, so each step's input is freed as soon as
    # the next exists; ids are integer codes from the first read on (see recctl.data.preprocess)
    report(progress, "preprocess", 0, _STEPS)
    catalogue = pl.read_parquet(ingest_dir / "items.parquet")
    coded, info = read_weighted_events(ingest_dir / "interactions.parquet", catalogue[Columns.Item], pc)
    summary["weights"] = info
    summary["weights"]["decay"] = (
        None
        if pc.half_life_days is None
        else {
            "half_life_days": pc.half_life_days,
            "reference": pc.decay_reference,
            "applied_to": "training splits only (train, tune_train, all), each relative to its own time",
        }
    )

    # by user and time from here on, ties in file order (the order events.parquet holds and the
    # splits rank "latest" by): user codes are in id order as the indices will be, and the filters
    # and the indexing below keep the rows in place
    coded = CodedEvents(sort_events(coded.frame, user=USER_CODE), coded.user_ids, coded.item_ids, coded.in_catalogue)

    report(progress, "preprocess", 1, _STEPS)
    if cfg.engine.is_spark:  # the pair counts and k-core rounds as Spark jobs (same rule, same result)
        from recctl.engine.spark.preprocess import filter_events_spark
        from recctl.engine.spark.session import get_spark

        spark = get_spark(cfg.engine)
        coded, info = filter_events_spark(spark, cfg, ingest_dir / "interactions.parquet", coded)
        summary["engine"] = {"kind": "spark", "master": spark.sparkContext.master}
    else:
        coded, info = filter_min_counts(coded, pc.min_user_interactions, pc.min_item_interactions, pc.kcore)
    summary["filter"] = info

    report(progress, "preprocess", 2, _STEPS)
    frame, user_map, item_map = index_events(coded)
    del coded

    report(progress, "preprocess", 3, _STEPS)
    held_out = _held_out_pairs(cfg, user_map, item_map)
    frame = frame.select(Columns.UserIdx, Columns.ItemIdx, Columns.Event, Columns.Timestamp, Columns.Weight)
    # the pairs per label are counted below, as the rows of the per-label split files
    labelled, info = assign_splits(frame, pc.split, cfg.seed, held_out=held_out, count_pairs=False)
    del frame
    summary["split"] = info
    # cold test users dropped by the split leave no trace in the id maps
    if _distinct(labelled[Columns.UserIdx]) != user_map.height:
        labelled, user_map = _reindex_users(labelled, user_map)

    with StageRun(cfg, "preprocess", sections=["preprocess"], inputs=inputs) as run:
        d = run.dir
        users_out = user_map
        if users_path.exists():
            users_out = user_map.join(pl.read_parquet(users_path), on=Columns.User, how="left")
        items_out = item_map.join(catalogue, on=Columns.Item, how="left").sort(Columns.ItemIdx)
        users_out = users_out.sort(Columns.UserIdx)
        _write(run, users_out, d / "users.parquet")
        _write(run, items_out, d / "items.parquet")
        # still in sort_events' order: the split labels and the user re-index keep the rows in place
        events = labelled
        del labelled
        _write(run, events, d / "events.parquet", text=(Columns.Event, SPLIT))
        n_events = events.height
        interacted = _distinct(events[Columns.ItemIdx])

        report(progress, "preprocess", 4, _STEPS)
        # every split file aggregates the events of its labels (recctl.data.preprocess.LabelledEvents:
        # straight from this (user, time) order with the compiled kernel, no copy per file)
        labelled_events = LabelledEvents(events, events[SPLIT].to_physical().to_numpy())
        del events
        split_rows = {}
        weight_ranges = {}
        for name, labels in SPLIT_FILES.items():
            # training splits are decayed relative to their own time: a test event never ages a training one
            half_life = pc.half_life_days if name in TRAINING_SPLITS else None
            agg = labelled_events.aggregate(
                label_codes(labels), pc.aggregate, half_life_days=half_life, reference=pc.decay_reference
            )
            if name in TRAINING_SPLITS or agg.height:
                weight_ranges[name] = check_weights(agg[Columns.Weight], f"preprocess: {name} split weights")
            _write(run, agg, d / f"{name}.parquet")
            split_rows[name] = agg.height
            del agg
        del labelled_events
        summary["weights"]["ranges"] = weight_ranges
        # a label's distinct (user, item) pairs are the rows of its own file
        summary["split"]["pairs"] = {label: split_rows[label] for label in SPLIT_DTYPE.categories}

        report(progress, "preprocess", 5, _STEPS)
        features = _write_features(cfg, run, items_out, users_out)

        summary.update(
            n_users=users_out.height,
            n_items=items_out.height,
            n_items_with_interactions=interacted,
            n_cold_items=items_out.height - interacted,
            n_events=n_events,
            split_rows=split_rows,
            features=features,
        )
        run.summary.update(summary)
    report(progress, "preprocess", _STEPS, _STEPS)
    log.info("preprocess: %d users, %d items, %d events", users_out.height, items_out.height, n_events)
    return run.manifest


def _held_out_pairs(cfg: Config, user_map: pl.DataFrame, item_map: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``strategy: files``: the listed pairs as indices (pairs of unknown users or items are dropped)."""
    sc = cfg.preprocess.split
    source = cfg.data.interaction_sources()[0]
    out = {}
    for split, name in (("test", "test_file"), ("valid", "valid_file")):
        spec = getattr(sc, name)
        if not spec:
            continue
        pairs = read_pairs_file(cfg.resolve(spec), source, f"preprocess.split.{name}")
        out[split] = pairs.join(user_map, on=Columns.User).join(item_map, on=Columns.Item)
    return out


def _write(run: StageRun, frame: pl.DataFrame, path: Path, *, text: tuple[str, ...] = ()) -> None:
    """Write ``frame`` atomically; the ``text`` columns (Enums while preprocess runs) as strings.

    Written as every file recctl reads back itself is (:data:`recctl.artifacts.INTERMEDIATE_PARQUET`).
    The ``text`` columns go to Parquet as what they are, dictionary-encoded strings: the Enum's
    codes are the dictionary indices, so no string is built per event (a polars cast to String
    then re-encoded each value: events.parquet 0.5 against 0.33 CPU-s at 5M events). The Arrow
    schema is not stored in the file, so every reader sees plain strings, as before; timestamps
    keep their UTC zone from the Parquet type (another zone takes the polars path below).
    """
    with atomic_path(path) as tmp:
        if text and all(getattr(d, "time_zone", "UTC") in ("UTC", None) for d in frame.schema.values()):
            pq.write_table(
                frame.to_arrow(),
                tmp,
                compression=INTERMEDIATE_PARQUET["compression"],
                write_statistics=INTERMEDIATE_PARQUET["statistics"],
                use_dictionary=list(text),
                store_schema=False,
            )
        else:
            frame.lazy().with_columns(pl.col(c).cast(pl.String) for c in text).sink_parquet(tmp, **INTERMEDIATE_PARQUET)
    run.add_output(path, frame.height)


def _distinct(indices: pl.Series) -> int:
    """How many distinct values non-negative indices hold (counted, not hashed)."""
    return int(np.count_nonzero(np.bincount(indices.to_numpy()))) if indices.len() else 0


def _reindex_users(labelled: pl.DataFrame, user_map: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Number the users left after the split ``0..n-1`` (still in id order), keeping the rows' order."""
    users = labelled[Columns.UserIdx].to_numpy()
    present = np.bincount(users, minlength=user_map.height) > 0
    new_index = (np.cumsum(present) - 1).astype(np.int32)
    labelled = labelled.with_columns(pl.Series(Columns.UserIdx, new_index[users]))
    # user_map is in index order (indices are positions in the sorted ids)
    kept = user_map.sort(Columns.UserIdx).filter(pl.Series(present))
    return labelled, kept.with_columns(pl.Series(Columns.UserIdx, np.arange(kept.height, dtype=np.int32)))


def _embedding_paths(cfg: Config) -> list[Path]:
    """The item-embedding files (hashed as inputs, so a new file makes preprocess stale)."""
    emb = cfg.preprocess.features.item_embeddings
    if emb is None:
        return []
    paths = [cfg.resolve(emb.path)] + ([cfg.resolve(emb.ids)] if emb.ids else [])
    for path, key in zip(paths, ("path", "ids"), strict=False):
        if not path.exists():
            raise ConfigError(
                f"preprocess.features.item_embeddings.{key}: file not found: {path}; check the path "
                "(relative to the config file)"
            )
    return paths


def _write_features(cfg: Config, run: StageRun, items: pl.DataFrame, users: pl.DataFrame) -> dict[str, Any]:
    fc = cfg.preprocess.features
    out: dict[str, Any] = {}
    spec = item_feature_spec(fc)
    if spec or fc.item_embeddings is not None:
        matrix, names = build_features(
            items, spec, key="preprocess.features", max_vocab=fc.text_max_vocab, min_df=fc.text_min_df
        )
        if fc.item_embeddings is not None:
            emb = fc.item_embeddings
            block, info = load_item_embeddings(
                emb, cfg.resolve(emb.path), cfg.resolve(emb.ids) if emb.ids else None, items[Columns.Item]
            )
            # a dense block beside the sparse ones: every model reading item features sees it
            import scipy.sparse as sp  # here, not at the top: preprocess without features never needs scipy

            matrix = sp.hstack([matrix, sp.csr_matrix(block)], format="csr", dtype=np.float32)
            names = pl.concat([names, embedding_feature_names(block.shape[1])])
            out["item_embeddings"] = info
        for path in save_features(run.dir, "item", matrix, names):
            run.add_output(path, matrix.shape[0] if path.suffix == ".npz" else names.height)
        out["item"] = {
            "shape": list(matrix.shape),
            "nnz": int(matrix.nnz),
            "groups": dict(names.group_by("group").agg(pl.len()).sort("group").iter_rows()),
        }
    if fc.user_categorical:
        user_spec = [("categorical", c, None) for c in fc.user_categorical]
        matrix, names = build_features(users, user_spec, key="preprocess.features.user_categorical")
        for path in save_features(run.dir, "user", matrix, names):
            run.add_output(path, matrix.shape[0] if path.suffix == ".npz" else names.height)
        out["user"] = {"shape": list(matrix.shape), "nnz": int(matrix.nnz)}
    return out
