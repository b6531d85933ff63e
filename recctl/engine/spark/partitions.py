"""Work over user partitions on the executors: a broadcast payload and one recctl function per task.

:func:`map_user_partitions` is how ``recommend`` and ``evaluate`` run on Spark. The positions
``0 .. n-1`` of the users are range-partitioned (partition ``p`` holds a contiguous run, so the
partitions in order are the users in order); the payload (models, rules, exclusions: what every
task needs) is broadcast once per executor rather than shipped with each task; each task calls
the caller's function on its positions, in Arrow batches, and the results are written by the
executors as Parquet under a scratch folder, which the driver then reads back in partition order.
The function is recctl's own (the list builder, the metric kernels): Spark only decides where it
runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from recctl.config import Config
from recctl.engine.spark.io import Scratch, iter_part_tables
from recctl.engine.spark.session import spark_job

log = logging.getLogger(__name__)

__all__ = ["TaskFn", "map_user_partitions", "n_partitions"]

#: ``fn(payload, positions) -> Arrow tables``: what a task runs on its users' positions
TaskFn = Callable[[Any, np.ndarray], Iterator[pa.Table]]


def n_partitions(spark: Any, cfg: Config, n: int) -> int:
    """Partitions for ``n`` users: ``engine.partitions``, else 2 x Spark's default parallelism (at most n)."""
    wanted = cfg.engine.partitions or 2 * int(spark.sparkContext.defaultParallelism)
    return max(1, min(wanted, n))


def _nullable(schema: pa.Schema) -> pa.Schema:
    # Spark marks every field of a mapInArrow result nullable; the driver casts back to `schema`
    return pa.schema([f.with_nullable(True) for f in schema])


def map_user_partitions(
    spark: Any, cfg: Config, n: int, payload: Any, fn: TaskFn, schema: pa.Schema, *, name: str
) -> Iterator[pa.Table]:
    """Run ``fn(payload, positions)`` on the executors over ``0 .. n-1`` and yield its tables in order.

    Parameters
    ----------
    spark
        The session.
    cfg
        The experiment config (``engine.partitions``, ``engine.scratch_dir``).
    n
        Number of positions (users).
    payload
        Broadcast once to every executor (it must pickle: numpy arrays, polars frames, models).
    fn
        A module-level function (executors import it by name) yielding Arrow tables with
        ``schema``'s columns for the positions it is given, in order.
    schema
        The tables' schema.
    name
        Scratch sub-folder name (the stage's).

    Yields
    ------
    pyarrow.Table
        Results in position order (one table per partition), cast to ``schema``. Nothing is
        yielded before the Spark job has finished, so a failed job yields nothing.
    """
    from pyspark.sql.types import LongType

    from recctl.engine.spark.arrow_types import spark_schema

    if n == 0:
        return
    parts = n_partitions(spark, cfg, n)
    shared = spark.sparkContext.broadcast(payload)
    out_schema = _nullable(schema)

    def task(batches):  # noqa: ANN001, ANN202
        value = shared.value
        for batch in batches:
            positions = batch.column(0).to_numpy()
            for table in fn(value, positions):
                yield from table.cast(out_schema).to_batches()

    positions = spark.range(0, n, numPartitions=parts).toDF("pos")
    positions = positions.select(positions["pos"].cast(LongType()))
    try:
        with Scratch(cfg, name) as scratch:
            location = scratch.path("parts")
            with spark_job(f"running {name} on the executors"):
                positions.mapInArrow(task, spark_schema(out_schema)).write.parquet(location)
            local = None if scratch.local is None else scratch.local / "parts"
            for table in iter_part_tables(spark, location, local):
                yield table.select(schema.names).cast(schema)
    finally:
        shared.unpersist()
