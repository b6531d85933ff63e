"""``recommend.refit_on_all_data``: serving models learn from every event; evaluation does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.config import load_config
from tests.conftest import copy_workdir, write_config

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def refit_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("refit")
    config = write_config(
        tmp,
        tune=None,
        models={"popular": {"kind": "popularity"}, "warp": {"kind": "lightfm", "loss": "warp", "epochs": 5}},
        evaluate={"k": [10], "baseline": "popular", "n_bootstrap": 50},
    )
    raw = yaml.safe_load(config.read_text())
    raw["recommend"] = {"model": "warp", "k": 10, "fallback": ["popular"], "refit_on_all_data": True}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in ("ingest", "preprocess", "train", "evaluate", "recommend"):
        result = runner.invoke(app, [command, str(config)])
        assert result.exit_code == 0, result.stderr
    return config


def test_serving_models_are_fitted_on_train_and_test(refit_config: Path) -> None:
    from recctl.data.dataset import load_split_matrix
    from recctl.stages.train import load_trained_model

    cfg = load_config(refit_config)
    evaluated = load_trained_model(cfg, "popular")
    serving = load_trained_model(cfg, "popular", for_serving=True)
    pre = cfg.stage_dir("preprocess")
    n_users, n_items = evaluated.n_users, evaluated.n_items
    train = load_split_matrix(pre, "train", n_users, n_items)
    full = load_split_matrix(pre, "all", n_users, n_items)
    assert full.nnz > train.nnz
    # popularity scores are user counts: the serving copy must count the test period too
    users_train = np.asarray((train > 0).sum(axis=0)).ravel()
    users_all = np.asarray((full > 0).sum(axis=0)).ravel()
    top = int(np.argmax(users_all))
    assert evaluated.item_scores_[top] * users_train.max() == pytest.approx(users_train[top], rel=1e-5)
    assert serving.item_scores_[top] * users_all.max() == pytest.approx(users_all[top], rel=1e-5)


def test_changing_the_flag_makes_train_stale(refit_config: Path, tmp_path: Path) -> None:
    from recctl.pipeline import why_stale

    raw = yaml.safe_load(refit_config.read_text())
    raw["recommend"]["refit_on_all_data"] = False
    other = tmp_path / "no-refit.yaml"
    other.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert why_stale(load_config(refit_config), "train") is None
    assert why_stale(load_config(other), "train") == "recommend.refit_on_all_data changed"


def test_update_grows_the_models_refitted_on_all_data(refit_config: Path, tmp_path: Path) -> None:
    import polars as pl

    from recctl.data.dataset import load_split_matrix
    from recctl.incremental.current import load_serving_model, serving_source

    refit_config = copy_workdir(refit_config, tmp_path)  # appending changes the workdir: a private copy
    cfg = load_config(refit_config)
    pre = cfg.stage_dir("preprocess")
    everything = load_split_matrix(pre, "all", *load_trained_model_shape(cfg))
    day = tmp_path / "day.csv"
    day.write_text(
        "customer_id,product_id,event_type,event_time,quantity\n"
        + "".join(f"C{10001 + i},P0001,purchase,2030-01-01 10:00:{i:02d},1\n" for i in range(30))
    )
    assert runner.invoke(app, ["ingest", str(refit_config), "--append", str(day)]).exit_code == 0
    result = runner.invoke(app, ["update", str(refit_config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["status"] == "updated" and summary["refit_on_all_data"] is True
    # the update grew the serving models' data: every train AND test pair, plus the new day
    source = serving_source(cfg)
    assert source.stage == "update"
    grown = pl.read_parquet(source.data_dir / "train.parquet")
    assert grown.height >= everything.nnz
    popular = load_serving_model(cfg, "popular", source)
    item = int(pl.read_parquet(source.data_dir / "items.parquet").filter(pl.col("item_id") == "P0001")["item_idx"][0])
    buyers = grown.filter(pl.col("item_idx") == item)["user_idx"].n_unique()
    assert buyers >= 30
    counts = grown.group_by("item_idx").agg(pl.col("user_idx").n_unique().alias("n"))
    assert popular.item_scores_[item] == pytest.approx(buyers / counts["n"].max(), rel=1e-5)


def load_trained_model_shape(cfg) -> tuple[int, int]:  # noqa: ANN001
    from recctl.stages.train import load_trained_model

    model = load_trained_model(cfg, "popular")
    return model.n_users, model.n_items
