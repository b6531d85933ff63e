"""A Spark job that fails publishes nothing; a missing extra or Java runtime is exit 6 with the hint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recctl.artifacts import sha256_file
from recctl.cli.main import app
from recctl.config import load_config
from recctl.engine.spark import session as spark_session
from recctl.engine.spark.session import SparkJobError
from recctl.errors import MissingExtraError
from tests.engine.conftest import LOCAL_ENGINE, engine_config, needs_spark


@needs_spark
def test_failed_executor_job_leaves_previous_lists(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recctl.stages.recommend as recommend

    config = engine_config(tmp_path, LOCAL_ENGINE, "failing")
    workdir = config.parent / "work"
    shutil.copytree(runs["spark"], workdir)
    published = workdir / "recommend" / "recommendations.parquet"
    before = sha256_file(published)

    def explode(payload: Any, positions: Any) -> Any:
        raise RuntimeError("executor lost mid-job")

    # a lambda-like local function is pickled by value, so the executors run it instead of the list builder
    monkeypatch.setattr(recommend, "_spark_list_task", explode)
    with pytest.raises(SparkJobError, match="executor lost mid-job") as err:
        recommend.run_recommend(load_config(config))
    assert "Nothing was published" in str(err.value)
    assert sha256_file(published) == before
    assert not list(workdir.glob(".recommend.partial-*"))
    assert not (workdir / ".spark-scratch").exists() or not list((workdir / ".spark-scratch").iterdir())


def test_missing_pyspark_is_exit_6_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_session, "_find_spec", lambda name: None if name == "pyspark" else object())
    with pytest.raises(MissingExtraError, match=r"pip install 'recctl\[spark\]'") as err:
        spark_session.require_spark()
    assert err.value.exit_code == 6
    config = engine_config(tmp_path, {"kind": "spark", "master": "local[1]"}, "nospark")
    result = CliRunner().invoke(app, ["ingest", str(config), "--json"])
    assert result.exit_code == 6, result.output
    assert "recctl[spark]" in result.output


def test_missing_java_is_exit_6_naming_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_session, "_find_spec", lambda name: object())
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(MissingExtraError, match="Java runtime") as err:
        spark_session.require_spark()
    assert err.value.exit_code == 6
    assert "JAVA_HOME" in str(err.value)
