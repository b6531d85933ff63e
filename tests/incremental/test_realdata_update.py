"""MovieLens: the last 90 days arrive as one batch; the update must stay close to a full retrain."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from recctl.config import load_config
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess
from recctl.stages.train import run_train
from recctl.stages.update import run_update

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"


@pytest.mark.slow
@pytest.mark.realdata
def test_movielens_update_versus_full_retrain(tmp_path: Path) -> None:
    src = SHARED / "ml-latest-small"
    if not (src / "ratings.csv").exists():
        pytest.skip(f"MovieLens not found at {src.resolve()} (shared data absent)")
    ratings = pl.read_csv(src / "ratings.csv")
    cut = ratings["timestamp"].max() - 90 * 86400
    ratings.filter(pl.col("timestamp") < cut).write_csv(tmp_path / "base.csv")
    ratings.filter(pl.col("timestamp") >= cut).write_csv(tmp_path / "batch.csv")
    raw = yaml.safe_load((REPO / "configs" / "movielens.yaml").read_text())
    raw["workdir"] = str(tmp_path / "work")
    raw["data"]["interactions"]["path"] = str(tmp_path / "base.csv")
    raw["data"]["items"]["path"] = str((src / "movies.csv").resolve())
    raw["models"] = {
        "popular": {"kind": "popularity"},
        "knn": {"kind": "item_knn", "neighbors": 100},
        # one thread: LightFM's multi-threaded (Hogwild) epochs race, so the gap to a full
        # retrain would change from run to run; with one thread and the config's seed it is fixed
        "lightfm_warp": {**raw["models"]["lightfm_warp"], "num_threads": 1},
    }
    for key in ("tune", "recommend", "experiment"):
        raw.pop(key, None)
    raw["evaluate"]["baseline"] = "popular"
    raw["evaluate"].pop("models", None)
    (tmp_path / "ml.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "ml.yaml")
    run_ingest(cfg)
    run_preprocess(cfg)
    run_train(cfg)
    run_ingest(cfg, append=[tmp_path / "batch.csv"])
    s = run_update(cfg, check_drift=True).summary
    assert s["n_changed_users"] > 10 and s["n_new_users"] > 0
    drift = s["drift"]["models"]
    for exact in ("popular", "knn"):
        assert drift[exact]["jaccard"] == 1.0 and drift[exact]["relative_drop"] == 0.0
    lfm = drift["lightfm_warp"]
    assert lfm["relative_drop"] <= 0.05, lfm
    assert lfm["overlap_ratio"] >= 0.8, lfm
    assert not s["drift"]["retrain_needed"]
