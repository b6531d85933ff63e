"""Spark engine fixtures: one local-mode SparkSession for the whole test session, tiny data.

The Spark tests skip with a reason where they cannot run: no pyspark (``pip install
'recctl[spark]'``; CI installs it in ``.ci/run``) or no Java runtime. Each JVM start costs
seconds, so every in-process Spark test shares the session the engine section below starts;
the local-cluster test runs the CLI in a subprocess (separate executor processes) once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recctl.engine.spark.session import java_problem, spark_available

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
    },
}

#: models that keep the end-to-end runs short; spark_als is the distributed kind
MODELS: dict[str, Any] = {
    "popular": {"kind": "popularity"},
    "knn": {"kind": "item_knn", "neighbors": 20},
    "als": {"kind": "spark_als", "factors": 8, "iterations": 3, "blocks": 2},
}


def spark_skip_reason() -> str | None:
    """Why Spark cannot run here, or None."""
    if not spark_available():
        return "pyspark is not installed (pip install 'recctl[spark]'; CI installs it)"
    return java_problem()


needs_spark = pytest.mark.skipif(spark_skip_reason() is not None, reason=str(spark_skip_reason()))


@pytest.fixture(scope="session")
def spark() -> Any:
    """The shared local-mode session (started once; stopped at the end of the test session)."""
    reason = spark_skip_reason()
    if reason:
        pytest.skip(reason)
    from recctl.config.engine import EngineConfig
    from recctl.engine.spark.session import get_spark, stop_spark

    session = get_spark(EngineConfig.model_validate(LOCAL_ENGINE))
    yield session
    stop_spark()


@pytest.fixture(scope="session")
def runs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The whole pipeline on the sample, once per engine (local engine; Spark local mode): their workdirs."""
    from recctl.config import load_config
    from recctl.pipeline import run_all

    tmp = tmp_path_factory.mktemp("engines")
    out = {}
    for name, engine in (("local", None), ("spark", LOCAL_ENGINE)):
        cfg = load_config(engine_config(tmp, engine, name))
        run_all(cfg)
        out[name] = cfg.workdir_path
    return out


def engine_config(tmp_path: Path, engine: dict[str, Any] | None, name: str, **overrides: Any) -> Path:
    """The quickstart config with small models, ``engine`` (None: local) and a workdir of its own."""
    from tests.conftest import write_config

    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    sections: dict[str, Any] = {
        "models": MODELS,
        "tune": None,
        "evaluate": {
            "k": [5, 10],
            "metrics": ["precision", "recall", "ndcg", "coverage"],
            "baseline": "popular",
            "n_bootstrap": 50,
            "report": False,
        },
        "recommend": {
            "model": "als",
            "k": 10,
            "fallback": ["knn", "popular"],
            "rules": {"exclude_events": ["purchase"], "in_stock_column": "in_stock"},
        },
        "export": {"format": "csv", "directory": str(folder / "exports"), "basename": "recs"},
    }
    if engine is not None:
        sections["engine"] = engine
    sections.update(overrides)
    return write_config(folder, **sections)
