"""``recctl.Experiment``: lists by shop ids equal the CLI's, A/B variants and holdout included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import recctl
from recctl.cli.main import app
from tests.conftest import write_config

pytestmark = pytest.mark.slow
runner = CliRunner()

#: a two-arm experiment with a holdout, so the lists follow variants as the nightly file does
AB = {
    "name": "api_test",
    "salt": "api-2026",
    "control": "control",
    "holdout": 0.1,
    "variants": {"control": {"model": "popular", "weight": 1}, "treatment": {"model": "lightfm_warp", "weight": 1}},
}
FAST = ["models.lightfm_warp.epochs=5", "models.lightfm_bpr.epochs=5"]


@pytest.fixture(scope="module")
def exp(tmp_path_factory: pytest.TempPathFactory) -> recctl.Experiment:
    """The sample shop under an A/B experiment, run through ``recommend`` by the API itself."""
    tmp = tmp_path_factory.mktemp("api")
    config = write_config(tmp, tune=None, experiment=AB)
    experiment = recctl.Experiment(config, overrides=FAST)
    for stage in (experiment.ingest, experiment.preprocess, experiment.train, experiment.recommend_all):
        stage()
    return experiment


def _nightly(exp: recctl.Experiment) -> pl.DataFrame:
    return pl.read_parquet(exp.workdir / "recommend" / "recommendations.parquet")


def _same_lists(left: pl.DataFrame, right: pl.DataFrame) -> None:
    # ids, ranks, models and sources exactly; scores within float32 noise (batched BLAS paths differ)
    keys = [c for c in left.columns if c != "score"]
    assert_frame_equal(left.select(keys), right.select(keys))
    assert np.allclose(left["score"].to_numpy(), right["score"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_lists_equal_the_nightly_file_for_the_same_users(exp: recctl.Experiment) -> None:
    nightly = _nightly(exp)
    users = nightly["user_id"].unique(maintain_order=True).head(40).to_list()
    got = exp.recommend(users, details=False)
    assert "variant" in got.columns and set(got["variant"]) <= {"control", "treatment"}
    _same_lists(got, nightly.filter(pl.col("user_id").is_in(users)))


def test_held_out_users_get_no_rows_and_newcomers_the_fallback(exp: recctl.Experiment) -> None:
    assignments = pl.read_parquet(exp.workdir / "recommend" / "assignments.parquet")
    held_out = assignments.filter(pl.col("variant") == "holdout")["user_id"].head(3).to_list()
    assert held_out, "a 10% holdout of ~3,000 customers holds someone"
    kept = assignments.filter(pl.col("variant") != "holdout")["user_id"][0]
    got = exp.recommend([*held_out, kept, kept], k=4)
    assert got["user_id"].unique().to_list() == [kept]  # duplicates once, held-out users nothing
    assert got["rank"].to_list() == [1, 2, 3, 4]
    assert {"title", "category"} <= set(got.columns)
    # a never-seen id is served by the fallback chain, whatever its variant's model
    newcomer = exp.recommend("NEVER-SEEN-ID-42", model="lightfm_warp", k=5)
    assert newcomer.height == 5 and set(newcomer["source"]) == {"popular"}


def test_model_override_equals_the_cli_users_path_without_variants(exp: recctl.Experiment, tmp_path: Path) -> None:
    users = _nightly(exp)["user_id"].unique(maintain_order=True).head(5).to_list()
    got = exp.recommend(users, model="lightfm_bpr", k=3, details=False)
    assert set(got["model"]) == {"lightfm_bpr"} and "variant" not in got.columns
    assert got.group_by("user_id").len()["len"].to_list() == [3] * 5
    # the CLI's --users path runs the same builder (under the experiment: each user's variant)
    result = runner.invoke(
        app, ["recommend", str(exp.config.source_path), "--users", ",".join(users), "-k", "3", "--json", *_sets()]
    )
    assert result.exit_code == 0, result.output
    cli_rows = pl.DataFrame(json.loads(result.stdout)["rows"]).select("user_id", "rank", "item_id", "source")
    api_rows = exp.recommend(users, k=3, details=False).select("user_id", "rank", "item_id", "source")
    assert_frame_equal(api_rows.sort("user_id", "rank"), cli_rows.sort("user_id", "rank"), check_dtypes=False)


def _sets() -> list[str]:
    return [arg for override in FAST for arg in ("--set", override)]


def test_public_functions_take_a_config(exp: recctl.Experiment) -> None:
    cfg = exp.config
    data = recctl.load_dataset(cfg, "train")
    model = recctl.load_trained_model(cfg, "popular")
    assert model.n_items == data.n_items
    assert exp.model("popular").n_users == data.n_users
    with pytest.raises(recctl.ArtifactError, match="recctl evaluate"):
        exp.metrics()  # evaluate has not run: the message names the command


def test_answers_before_the_pipeline_name_the_command(tmp_path: Path) -> None:
    fresh = recctl.Experiment(write_config(tmp_path, tune=None))
    with pytest.raises(recctl.ArtifactError, match="recctl"):
        fresh.recommend("C10001")
    with pytest.raises(recctl.ConfigError, match="seed"):
        recctl.Experiment(write_config(tmp_path, tune=None), overrides=["seed=abc"])
