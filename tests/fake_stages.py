"""Write finished stages from ready-made frames, for tests that need a workdir but not the data layer."""

from __future__ import annotations

import polars as pl
import scipy.sparse as sp

from recctl import graph
from recctl.artifacts import write_parquet_atomic
from recctl.columns import Columns
from recctl.config import Config
from recctl.stages._common import StageRun


def write_preprocess_stage(
    cfg: Config,
    frames: dict[str, pl.DataFrame],
    item_features: tuple[sp.csr_matrix, list[str]] | None = None,
    *,
    with_ingest: bool = True,
) -> None:
    """Write ``<workdir>/preprocess/`` with a manifest, as the preprocess stage would.

    Parameters
    ----------
    cfg
        The config whose workdir receives the stage.
    frames
        File stem -> frame (``users``, ``items``, ``train``, ``test``, ``tune_train``, ``valid``...).
    item_features
        Optional (matrix, feature names) written as ``item_features.npz`` / ``item_feature_names.parquet``.
    with_ingest
        Also write the ingest stage before it (a stage graph needs its upstream).
    """
    full = "events" in frames and "users" in frames and "items" in frames
    # the stage graph wants every stage's upstream finished and fresh: a faked preprocess gets
    # a faked ingest before it, one that read the config's raw files
    if with_ingest:  # else the test wrote its own ingest first
        write_ingest_stage(cfg, frames if full else None)
    with StageRun(cfg, "preprocess", sections=["preprocess"]) as run:
        for name, frame in frames.items():
            write_parquet_atomic(frame, run.dir / f"{name}.parquet")
            run.add_output(run.dir / f"{name}.parquet", rows=frame.height)
        if item_features is not None:
            matrix, names = item_features
            sp.save_npz(run.dir / "item_features.npz", sp.csr_matrix(matrix))
            pl.DataFrame({"feature": names}).write_parquet(run.dir / "item_feature_names.parquet")
            run.add_output(run.dir / "item_features.npz")
            run.add_output(run.dir / "item_feature_names.parquet")


def write_ingest_stage(
    cfg: Config,
    frames: dict[str, pl.DataFrame] | None,
    *,
    extra_events: pl.DataFrame | None = None,
    customers: list[str] | None = None,
) -> None:
    """Write ``<workdir>/ingest/`` consistent with preprocess-layout ``frames``.

    ``interactions.parquet`` holds every event of ``frames["events"]`` with ids in place of
    indices (plus ``extra_events``: ``user_id, item_id, event, timestamp`` rows preprocess
    would have dropped); ``users.parquet`` the customer file when ``customers`` is given.
    Without ``frames`` the stage holds an empty catalogue only. Its inputs are the config's raw
    files, so the stage graph sees it fresh.
    """
    if frames is None:
        with StageRun(cfg, "ingest", inputs=graph.raw_inputs(cfg, "ingest")) as run:
            empty = pl.DataFrame({Columns.Item: []}, schema={Columns.Item: pl.String})
            write_parquet_atomic(empty, run.dir / "items.parquet")
            run.add_output(run.dir / "items.parquet", rows=0)
        return
    events = (
        frames["events"]
        .join(frames["users"].select(Columns.User, Columns.UserIdx), on=Columns.UserIdx)
        .join(frames["items"].select(Columns.Item, Columns.ItemIdx), on=Columns.ItemIdx)
        .select(
            pl.col(Columns.User).cast(pl.String),
            pl.col(Columns.Item).cast(pl.String),
            pl.col(Columns.Event).cast(pl.String),
            pl.col(Columns.Timestamp),
            pl.lit(1.0).alias(Columns.Value),
        )
    )
    if extra_events is not None:
        if Columns.Value not in extra_events.columns:
            extra_events = extra_events.with_columns(pl.lit(1.0).alias(Columns.Value))
        events = pl.concat([events, extra_events.select(events.columns).cast(events.schema)])
    with StageRun(cfg, "ingest", inputs=graph.raw_inputs(cfg, "ingest")) as run:
        write_parquet_atomic(events, run.dir / "interactions.parquet")
        run.add_output(run.dir / "interactions.parquet", rows=events.height)
        items = frames["items"].drop(Columns.ItemIdx)
        write_parquet_atomic(items, run.dir / "items.parquet")
        run.add_output(run.dir / "items.parquet", rows=items.height)
        if customers is not None:
            users = pl.DataFrame({Columns.User: customers})
            write_parquet_atomic(users, run.dir / "users.parquet")
            run.add_output(run.dir / "users.parquet", rows=users.height)
