"""Model errors and model kinds through the CLI, on the shipped sample data."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Ingest + preprocess the sample once; each test then trains its own models."""
    tmp = tmp_path_factory.mktemp("models_cli")
    models = {
        "ease_small": {"kind": "ease", "max_items": 10},
        "knn": {"kind": "item_knn", "neighbors": 20},
        "mix": {
            "kind": "blend",
            "combine": "fallback",
            "components": [
                {"model": {"kind": "lightfm", "item_features": True, "epochs": 2}},
                {"model": {"kind": "content"}},
                {"model": {"kind": "popularity"}},
            ],
        },
        "popular": {"kind": "popularity"},
    }
    config = write_config(tmp, models=models, tune=None, recommend=None)
    runner = CliRunner()
    for stage in ("ingest", "preprocess"):
        result = runner.invoke(app, [stage, str(config)])
        assert result.exit_code == 0, result.output
    return config


def test_ease_above_max_items_exits_3_with_advice(prepared):
    result = CliRunner().invoke(app, ["train", str(prepared), "--model", "ease_small"])
    assert result.exit_code == 3, result.output
    assert "max_items=10" in result.output and "item_knn" in result.output


def test_item_knn_and_a_fallback_blend_train_through_the_cli(prepared):
    result = CliRunner().invoke(app, ["train", str(prepared), "--model", "knn", "--model", "mix"])
    assert result.exit_code == 0, result.output
