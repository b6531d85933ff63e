"""Preprocess on Spark: the min-count / k-core filters as Spark jobs; everything else shared.

The preprocess stage keeps one definition of every rule: event weights
(:func:`recctl.data.preprocess.weight_events`), id maps (:func:`~recctl.data.preprocess.index_events`),
splits (:mod:`recctl.data.split`) and per-split aggregation run on the driver as on the local engine,
over the events Spark lets through. What grows fastest with the data, and what Spark does
here, is the filtering: distinct (user, item) pairs counted per user and per item, repeated to
a fixed point with ``kcore``, a shuffle per round.

Why the filter's *result* is two id sets: every round only drops events of users (then items)
below their minimum, so the events that survive are exactly the weighted events whose user and
item both survive (an event of a surviving user and surviving item was never dropped, since
dropping it would have removed that user or item). The driver applies the two sets to the
weighted events in their ingest order, so rows, order and ties are those of the local engine.
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import pyarrow as pa

from recctl.columns import Columns
from recctl.config import Config
from recctl.config.preprocess import PreprocessConfig
from recctl.data.preprocess import CodedEvents, keep_ids, weight_events
from recctl.engine.spark.io import Scratch, to_spark_path
from recctl.engine.spark.session import spark_job
from recctl.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["filter_min_counts_spark"]

_U, _I = Columns.User, Columns.Item


def _weighted_pairs_task(pc: PreprocessConfig):  # noqa: ANN202 - returns the mapInArrow function
    """Each task keeps the (user, item) of events with a positive weight, by the shared weight rule."""
    # decay never turns a positive weight into 0, so the base weight decides which events stay
    base = pc.model_copy(update={"half_life_days": None})

    def run(batches):  # noqa: ANN001, ANN202
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(frame, pl.DataFrame)
            kept, _ = weight_events(frame, base)
            yield from kept.select(_U, _I).unique().to_arrow().to_batches()

    return run


def filter_min_counts_spark(spark: Any, cfg: Config, interactions: Any) -> tuple[pl.Series, pl.Series, dict[str, Any]]:
    """Users and items that survive ``preprocess.min_*_interactions`` (and ``kcore``), computed by Spark.

    Parameters
    ----------
    spark
        The session.
    cfg
        The experiment config (``preprocess``, ``engine.scratch_dir``).
    interactions
        Path of ``ingest/interactions.parquet``.

    Returns
    -------
    (users, items, info)
        The surviving user ids and item ids, and ``{"rounds": n}`` (filter passes, as the local
        :func:`~recctl.data.preprocess.filter_min_counts` counts them).

    Raises
    ------
    DataError
        When nothing is left (the local engine's message).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    pc = cfg.preprocess
    min_user, min_item, kcore = pc.min_user_interactions, pc.min_item_interactions, pc.kcore
    pair_schema = StructType([StructField(_U, StringType()), StructField(_I, StringType())])
    events = spark.read.parquet(to_spark_path(interactions))
    rounds = 0
    with spark_job("filtering users and items by their counts"), Scratch(cfg, "preprocess") as scratch:
        pairs = events.mapInArrow(_weighted_pairs_task(pc), pair_schema).distinct()
        location = scratch.path("pairs-0")
        pairs.write.parquet(location)
        pairs = spark.read.parquet(location)
        n_pairs = pairs.count()
        while True:
            rounds += 1
            before = n_pairs
            users = pairs.groupBy(_U).count().filter(F.col("count") >= min_user).select(_U)
            pairs = pairs.join(users, _U, "left_semi")
            items = pairs.groupBy(_I).count().filter(F.col("count") >= min_item).select(_I)
            pairs = pairs.join(items, _I, "left_semi")
            # each round's result is written, so the plan (and lineage) stays one round long
            location = scratch.path(f"pairs-{rounds}")
            pairs.write.parquet(location)
            pairs = spark.read.parquet(location)
            n_pairs = pairs.count()
            if not kcore or n_pairs == before:
                break
        if n_pairs == 0:
            raise DataError(
                f"no interactions left after min-count filtering (min_user_interactions={min_user}, "
                f"min_item_interactions={min_item}, kcore={kcore}); lower preprocess.min_* ."
            )
        user_ids = _column(pairs.select(_U).distinct().toArrow())
        item_ids = _column(pairs.select(_I).distinct().toArrow())
    log.info("spark filter: %d rounds, %d users, %d items", rounds, user_ids.len(), item_ids.len())
    return user_ids, item_ids, {"rounds": rounds}


def _column(table: pa.Table) -> pl.Series:
    frame = pl.from_arrow(table)
    return frame.to_series() if isinstance(frame, pl.DataFrame) else frame


def filter_events_spark(spark: Any, cfg: Config, interactions: Any, coded: CodedEvents) -> tuple[CodedEvents, dict]:
    """:func:`recctl.data.preprocess.filter_min_counts` with the counting done by Spark.

    Parameters
    ----------
    spark
        The session.
    cfg
        The experiment config.
    interactions
        Path of ``ingest/interactions.parquet`` (what Spark reads).
    coded
        The driver's weighted events (:func:`~recctl.data.preprocess.read_weighted_events` of the same file).

    Returns
    -------
    (CodedEvents, dict)
        The weighted events that survive, in their order, and the local engine's summary
        (``rounds``, ``events_dropped``).
    """
    users, items, info = filter_min_counts_spark(spark, cfg, interactions)
    kept, info["events_dropped"] = keep_ids(coded, users, items)
    return kept, info
