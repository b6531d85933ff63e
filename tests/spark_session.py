"""The one SparkSession of a test session, shared by every in-process Spark test.

Starting a JVM costs seconds and its first jobs cost more (class loading, JIT), so the Spark
engine tests (``tests/engine``) and the ``spark_als`` model-contract tests share one local-mode
session, started on first use and stopped when the test session ends. Tests that need Spark
skip with a reason where it cannot run: no pyspark (``pip install 'recctl[spark]'``; CI installs
it in ``.ci/run``) or no Java runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recctl.engine.spark.session import java_problem, spark_available

#: the test JVMs compile with C1 only and collect with the serial GC: a JVM that lives for a
#: minute or two on tiny data spends most of its CPU in the C2 compiler and parallel GC threads;
#: these flags halve the CPU of the Spark tests (not a product default: long jobs want C2)
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

#: the engine section of the in-process tests: small input splits, so the sample's events file
#: is read as several splits (row numbering across splits is exercised), few shuffle partitions
LOCAL_ENGINE: dict[str, Any] = {
    "kind": "spark",
    "master": "local[2]",
    "partitions": 3,
    "conf": {
        "spark.sql.files.maxPartitionBytes": "1m",
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "2",
        "spark.driver.memory": "768m",
        "spark.driver.extraJavaOptions": TEST_JVM_OPTIONS,
        "spark.executor.extraJavaOptions": TEST_JVM_OPTIONS,
    },
}


def spark_skip_reason() -> str | None:
    """Why Spark cannot run here, or None."""
    if not spark_available():
        return "pyspark is not installed (pip install 'recctl[spark]'; CI installs it)"
    return java_problem()


needs_spark = pytest.mark.skipif(spark_skip_reason() is not None, reason=str(spark_skip_reason()))


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The shared local-mode session (started once; stopped at the end of the test session)."""
    reason = spark_skip_reason()
    if reason:
        pytest.skip(reason)
    from recctl.config.engine import EngineConfig
    from recctl.engine.spark.session import get_spark, stop_spark

    session = get_spark(EngineConfig.model_validate(LOCAL_ENGINE))
    yield session
    stop_spark()
