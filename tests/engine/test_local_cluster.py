"""``recctl run`` with a local-cluster master: separate executor JVMs and Python workers.

Everything that crosses a process boundary (the broadcast serving context and models, the
annotation plan, task closures, scratch Parquet) is exercised here, through the CLI as a user
runs it (``--json``, exit code), and the outputs are compared row by row with the local engine's.
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


def test_run_on_local_cluster_matches_local_engine(runs: dict[str, Path], tmp_path: Path) -> None:
    # what crosses processes: the annotation plan (ingest), the weight rule (preprocess), ALS on
    # executors (train), the broadcast serving context (recommend); evaluate ships its payload the
    # same way as recommend, and the export runs on the driver: both are left out to save minutes
    models = {"popular": MODELS["popular"], "als": MODELS["als"]}
    recommend = {"model": "als", "k": 10, "fallback": ["popular"], "rules": {"exclude_events": ["purchase"]}}
    config = engine_config(tmp_path, CLUSTER_ENGINE, "cluster", models=models, recommend=recommend, evaluate=None)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from recctl.cli.main import app; app()",
            "run",
            str(config),
            "--json",
            "--skip",
            "evaluate",
            "--skip",
            "serve-export",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report  # the run's JSON report, as on the local engine
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
        local = pl.read_parquet(runs["local"] / stage / name)
        assert local.equals(pl.read_parquet(workdir / stage / name)), f"{stage}/{name}"
    # the lists the executors built equal the local engine's lists from the same trained models
    # (ALS itself, trained on other executors, may differ from the local run's in the last bits)
    cluster = pl.read_parquet(workdir / "recommend" / "recommendations.parquet")
    assert cluster.group_by("user_id").len()["len"].min() == 10
    as_local = load_config(config)
    as_local.engine = EngineConfig()
    run_recommend(as_local)
    local = pl.read_parquet(workdir / "recommend" / "recommendations.parquet")
    assert local.drop("score").equals(cluster.drop("score"))
    assert (local["score"] - cluster["score"]).abs().max() < 1e-5
    assert not list(workdir.glob(".spark-scratch*")), "scratch left behind"
