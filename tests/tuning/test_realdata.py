"""Tuning on real data (MovieLens latest-small through configs/movielens.yaml), kept tiny."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recctl.config import load_config
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess
from recctl.stages.tune import run_tune
from tests.conftest import write_config

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_lightfm_tuning_on_movielens_never_reads_test(shared_data: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    tune = {
        "model": "lightfm_warp",
        "n_trials": 3,
        "objective": "ndcg@10",
        "max_epochs": 4,
        "patience": 2,
        "space": {
            "no_components": {"type": "choice", "values": [8, 16]},
            "learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.1},
        },
    }
    cfg = load_config(write_config(tmp_path, "movielens.yaml", tune=tune, recommend=None))
    run_ingest(cfg)
    run_preprocess(cfg)
    pre = cfg.stage_dir("preprocess")
    (pre / "test.parquet").write_bytes(b"not parquet: tuning must not read the test split")
    read: list[str] = []
    real_read = pl.read_parquet

    def spy(source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        read.append(Path(str(source)).name)
        return real_read(source, *args, **kwargs)

    monkeypatch.setattr(pl, "read_parquet", spy)
    summary = run_tune(cfg).summary
    assert "test.parquet" not in read and "tune_train.parquet" in read and "valid.parquet" in read
    assert summary["n_complete"] >= 2 and summary["n_failed"] == 0
    assert 0 < summary["best_value"] < 1
    assert 1 <= summary["tuned_params"]["epochs"] <= 4
    best = load_config(cfg.stage_dir("tune") / "best.yaml")
    assert best.model_config_for("lightfm_warp").no_components in (8, 16, 32)
