"""recctl on Apache Spark (``pip install 'recctl[spark]'``); see ``docs/spark.md``.

* :mod:`~recctl.engine.spark.session`: one SparkSession per run (or the one that already exists),
  the missing-extra and missing-Java errors, the settings recctl relies on;
* :mod:`~recctl.engine.spark.io`: intermediate Parquet written by executors, read by the driver;
* :mod:`~recctl.engine.spark.ingest`: raw files from any path Spark reads, annotated by
  recctl's own polars annotation inside each task;
* :mod:`~recctl.engine.spark.preprocess`: weights, min-count filters and id maps as Spark jobs;
* :mod:`~recctl.engine.spark.partitions`: user partitions scored / evaluated on executors with a
  broadcast payload.
"""

from __future__ import annotations

__all__: list[str] = []
