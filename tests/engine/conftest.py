"""Spark engine fixtures: the whole pipeline once per engine on the sample, shared read-only.

Every in-process Spark test uses the test session's one SparkSession (``tests/spark_session.py``;
skipped with a reason without pyspark or Java). ``runs`` builds one workdir per engine, once;
tests only read them (a test that writes copies the workdir first). The local-cluster test
runs the CLI in a subprocess (separate executor processes) once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.spark_session import LOCAL_ENGINE, needs_spark, spark_skip_reason

__all__ = ["LOCAL_ENGINE", "MODELS", "engine_config", "needs_spark", "spark_skip_reason"]

#: models that keep the end-to-end runs short; spark_als is the distributed kind
MODELS: dict[str, Any] = {
    "popular": {"kind": "popularity"},
    "knn": {"kind": "item_knn", "neighbors": 20},
    "als": {"kind": "spark_als", "factors": 8, "iterations": 3, "blocks": 2},
}


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
