"""Engines that run the heavy work of the stages: ``local`` (this process) and ``spark``.

The stages (:mod:`recctl.stages`) own what is computed; an engine only changes where. With
``engine: {kind: spark}`` the stages hand their heavy steps to :mod:`recctl.engine.spark`, which
runs recctl's *own* per-row and per-block functions inside Spark tasks (``mapInArrow``): the
ingest annotation (parsing, reject reasons), the event weights, the list builder with the
shared top-K kernel, the metric kernels. Spark adds what one machine lacks (reading from
object stores and HDFS, shuffles across machines, executors scoring user partitions); the
rules themselves are written once. Nothing here imports pyspark at module level.
"""

from __future__ import annotations

__all__: list[str] = []
