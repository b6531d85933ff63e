"""``recctl run`` with a local-cluster master: separate executor JVMs and Python workers.

Everything recctl ships across a process boundary is exercised here, through the CLI as a user
runs it (``--json``, exit code): the annotation plan (ingest), the weight rule (preprocess), the
evaluation payload (models, exclusions, candidates: evaluate) and the serving plan (list
builders with models and rules, the audience: recommend), each broadcast to two executor JVMs
and unpickled by their own Python workers, with scratch Parquet written by other processes.
The outputs are compared row by row with the local engine's (the shared ``runs`` fixture).

Left to the local-mode parity (``test_parity.py``), to keep this run short: ``spark_als``
(MLlib's ALS runs inside the JVMs only, no recctl code crosses a process there) and
serve-export (the driver's work, the same on every master).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recctl.config import load_config
from recctl.config.engine import EngineConfig
from recctl.stages.recommend import run_recommend
from tests.engine.conftest import LOCAL_ENGINE, MODELS, engine_config, needs_spark

pytestmark = [needs_spark, pytest.mark.slow]

#: 2 workers x 1 core x 1 GB: the smallest cluster that still has two executor processes
CLUSTER_ENGINE = {
    **LOCAL_ENGINE,
    "master": "local-cluster[2,1,1024]",
    "conf": {**LOCAL_ENGINE["conf"], "spark.executor.memory": "512m"},
}


def _same(local: Path, cluster: Path) -> None:
    a, b = pl.read_parquet(local), pl.read_parquet(cluster)
    assert a.schema == b.schema, local.name
    assert a.equals(b), f"{local.parent.name}/{local.name} differs on the local cluster"


def test_run_on_local_cluster_matches_local_engine(runs: dict[str, Path], tmp_path: Path) -> None:
    models = {"popular": MODELS["popular"], "knn": MODELS["knn"]}
    recommend = {
        "model": "knn",
        "k": 10,
        "fallback": ["popular"],
        "rules": {"exclude_events": ["purchase"], "in_stock_column": "in_stock"},
    }
    config = engine_config(tmp_path, CLUSTER_ENGINE, "cluster", models=models, recommend=recommend)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", "from recctl.cli.main import app; app()", "run", str(config), "--json"]
        + ["--skip", "serve-export"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert {s["stage"]: s["status"] for s in report["stages"]}["recommend"] == "ran"
    workdir = config.parent / "work"
    ingest = json.loads((workdir / "ingest" / "manifest.json").read_text())["summary"]
    assert ingest["engine"]["master"].startswith("local-cluster")
    for stage, name in (
        ("ingest", "interactions.parquet"),
        ("ingest", "rejected.parquet"),
        ("preprocess", "events.parquet"),
        ("preprocess", "train.parquet"),
        ("preprocess", "test.parquet"),
    ):
        _same(runs["local"] / stage / name, workdir / stage / name)
    # users ranked on the executors: the same per-user metrics as the local engine's run of
    # the same two models on the same data
    local = pl.read_parquet(runs["local"] / "evaluate" / "per_user.parquet").filter(pl.col("model").is_in(list(models)))
    cluster = pl.read_parquet(workdir / "evaluate" / "per_user.parquet")
    assert set(cluster["model"]) == set(models)
    keys = ["model", "user_idx"]
    assert local.sort(keys).drop(pl.selectors.float()).equals(cluster.sort(keys).drop(pl.selectors.float()))
    for column in local.select(pl.selectors.float()).columns:
        diff = (local.sort(keys)[column] - cluster.sort(keys)[column]).abs().max()
        assert diff is None or diff < 1e-9, column
    # the lists the executors built equal the local engine's lists from the same trained models
    lists = pl.read_parquet(workdir / "recommend" / "recommendations.parquet")
    assert lists.group_by("user_id").len()["len"].min() == 10
    as_local = load_config(config)
    as_local.engine = EngineConfig()
    run_recommend(as_local)
    local_lists = pl.read_parquet(workdir / "recommend" / "recommendations.parquet")
    assert local_lists.drop("score").equals(lists.drop("score"))
    assert (local_lists["score"] - lists["score"]).abs().max() < 1e-6
    assert not list(workdir.glob(".spark-scratch*")), "scratch left behind"
