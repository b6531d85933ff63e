"""The SparkSession recctl runs its jobs in: started once per process, or borrowed.

* Under ``spark-submit``, in a notebook or on a managed platform a session already exists:
  recctl uses it as it is (its master and settings win over ``engine.master``) and never stops it.
* Otherwise :func:`get_spark` starts one from the ``engine:`` section and keeps it for the rest
  of the process (``recctl run`` starts the JVM once, not once per stage); it is stopped at exit
  or by :func:`stop_spark`.
* ``local-cluster[W,C,MB]`` (separate executor JVMs and Python workers on this machine, what the
  tests use to exercise serialisation and broadcasts) needs ``SPARK_HOME`` with ``bin/spark-class``;
  a pip install of pyspark ships both, so ``SPARK_HOME`` defaults to the installed package.

Settings recctl relies on are set unless the user's ``engine.conf`` says otherwise: times are
UTC (``spark.sql.session.timeZone``) and written to Parquet as ``TIMESTAMP_MICROS`` (Spark's
default INT96 loses the UTC marker other readers need), Arrow batches are bounded, the console
progress bar is off (recctl reports its own progress on stderr).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recctl.config.engine import EngineConfig
from recctl.errors import MissingExtraError, RecctlError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = [
    "DEFAULT_CONF",
    "current_spark",
    "get_spark",
    "java_problem",
    "require_spark",
    "spark_available",
    "stop_spark",
]

log = logging.getLogger(__name__)

#: settings recctl needs (the user's ``engine.conf`` may override any of them)
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}
#: extra defaults for masters on this machine: a small footprint on a shared laptop or CI runner
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "8",
}

_state: dict[str, Any] = {"session": None, "key": None, "atexit": False}
#: module lookup (a seam for the tests of the missing-extra path)
_find_spec = importlib.util.find_spec


class SparkJobError(RecctlError):
    """A Spark job failed (a task raised, an executor was lost); the stage published nothing."""


@contextlib.contextmanager
def spark_job(what: str) -> Iterator[None]:
    """Turn a failed Spark job into :class:`SparkJobError` naming the step and the task's own error.

    The stage's staging directory is discarded as for any failure, so the previous outputs
    stay; the message keeps the first line of the task's Python error (or the JVM's).
    """
    try:
        yield
    except Exception as exc:
        name = type(exc).__module__
        if not name.startswith(("pyspark", "py4j")):
            raise
        text = str(exc)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        cause = next(
            (line for line in reversed(lines) if "Error:" in line or "Exception:" in line), lines[0] if lines else text
        )
        raise SparkJobError(
            f"Spark job failed while {what}: {cause[:500]}. Nothing was published; the stage's previous outputs "
            "are unchanged. The executors' logs (Spark UI, or the cluster's log store) have the full trace."
        ) from exc


class JavaMissingError(MissingExtraError):
    """Spark needs a Java runtime, and none was found."""

    def __init__(self, problem: str) -> None:
        Exception.__init__(
            self,
            f"engine: spark needs a Java runtime (17 or 21): {problem}. Install one "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME; or use `engine: local`.",
        )
        self.extra = "spark"
        self.module = "java"


def spark_available() -> bool:
    """Whether pyspark (with the Arrow and pandas packages its Arrow functions need) is importable."""
    return all(_find_spec(m) is not None for m in ("pyspark", "pandas", "pyarrow"))


def require_spark(feature: str = "engine: spark") -> None:
    """Raise :class:`MissingExtraError` (exit 6) naming ``pip install 'recctl[spark]'`` when pyspark is missing.

    Raises
    ------
    MissingExtraError
        pyspark, or pandas (which pyspark's ``mapInArrow`` imports), is not installed.
    JavaMissingError
        No Java runtime (``JAVA_HOME`` or ``java`` on the PATH).
    """
    for module in ("pyspark", "pandas"):
        if _find_spec(module) is None:
            raise MissingExtraError(feature, "spark", module)
    problem = java_problem()
    if problem:
        raise JavaMissingError(problem)


def java_problem() -> str | None:
    """Why no Java runtime can be used (``None`` when one can)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        return None if (Path(home) / "bin" / "java").exists() else f"JAVA_HOME={home} has no bin/java"
    return None if shutil.which("java") else "no `java` on the PATH and JAVA_HOME is not set"


def _prepare_environment(master: str) -> None:
    # executors on this machine run the driver's interpreter (the one recctl is installed in)
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local-cluster") and "SPARK_HOME" not in os.environ:
        import pyspark

        # a pip install of pyspark is a complete Spark home: bin/spark-class, jars/
        os.environ["SPARK_HOME"] = str(Path(pyspark.__file__).resolve().parent)


def get_spark(engine: EngineConfig) -> SparkSession:
    """Return the session recctl's Spark jobs run in, starting one if needed.

    Parameters
    ----------
    engine
        The ``engine:`` section (master, settings).

    Returns
    -------
    pyspark.sql.SparkSession
        A session that already existed in this process (never stopped by recctl), or one
        started here from ``engine`` and kept until :func:`stop_spark` or the process exits.
        A session recctl started for another master or other settings is stopped first.

    Raises
    ------
    MissingExtraError
        pyspark or Java is missing (exit 6).
    """
    require_spark()
    from pyspark.sql import SparkSession

    key = (engine.master, engine.app_name, tuple(sorted(engine.conf.items())))
    ours = _state["session"]
    if ours is not None and _state["key"] == key and _alive(ours):
        return ours
    if ours is not None:
        stop_spark()
    active = SparkSession.getActiveSession()
    if active is not None:  # spark-submit, a notebook, a managed platform: theirs, used as it is
        if engine.master != "local[*]" and active.sparkContext.master != engine.master:
            log.info("using the existing Spark session (master %s), not engine.master", active.sparkContext.master)
        return active
    _prepare_environment(engine.master)
    conf = dict(DEFAULT_CONF)
    if engine.master.startswith("local"):
        conf.update(LOCAL_CONF)
    conf.update(engine.conf)
    builder = SparkSession.builder.master(engine.master).appName(engine.app_name)
    for name, value in conf.items():
        builder = builder.config(name, value)
    log.info("starting Spark (master %s)", engine.master)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    _state.update(session=session, key=key)
    if not _state["atexit"]:
        atexit.register(stop_spark)
        _state["atexit"] = True
    return session


def _alive(session: SparkSession) -> bool:
    try:
        return session.sparkContext._jsc is not None  # noqa: SLF001 - stopped contexts drop it
    except Exception:  # noqa: BLE001 - a dead JVM raises anything
        return False


def stop_spark() -> None:
    """Stop the session recctl started (if any); a borrowed session is left running."""
    session = _state["session"]
    _state.update(session=None, key=None)
    if session is not None:
        try:
            session.stop()
        except Exception:  # noqa: BLE001 - the JVM may already be gone at interpreter exit
            log.debug("stopping Spark failed", exc_info=True)


def current_spark() -> SparkSession:
    """The session a Spark-backed model trains in: recctl's (the ``engine:`` of the running stage), else
    one that already exists, else a new ``local[*]`` one.

    Raises
    ------
    MissingExtraError
        pyspark or Java is missing (exit 6).
    """
    require_spark()
    ours = _state["session"]
    if ours is not None and _alive(ours):
        return ours
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() or get_spark(EngineConfig(kind="spark"))
