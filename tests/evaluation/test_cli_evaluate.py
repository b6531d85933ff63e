"""``recctl evaluate`` through the CLI: output streams, JSON, report, exit codes."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from recctl.cli.main import app

from .conftest import build_workdir

runner = CliRunner()


def test_tables_on_stdout_and_files_on_disk(tmp_path):
    path = build_workdir(tmp_path)
    result = runner.invoke(app, ["evaluate", str(path), "--report"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Protocol" in out and "users evaluated" in out and "K = 5, 10" in out
    assert "Mean metrics @10" in out and "popular" in out and "by_category" in out
    assert "Verdicts" in out and "better" in out
    assert "metrics written to" in result.stderr and "metrics written to" not in out
    assert (tmp_path / "work" / "evaluate" / "report.html").exists()


def test_json_output_is_machine_readable(tmp_path):
    path = build_workdir(tmp_path)
    result = runner.invoke(app, ["evaluate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "evaluate"
    assert data["metrics"]["best"] == "by_category"
    assert data["metrics"]["protocol"]["split"] == "test"
    assert not (tmp_path / "work" / "evaluate" / "report.html").exists()


def test_missing_train_stage_exits_5(tmp_path):
    path = build_workdir(tmp_path, train=False)
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 5
    assert "recctl train" in result.stderr and result.stdout == ""


def _rewrite(path, **evaluate):
    raw = yaml.safe_load(path.read_text())
    raw["evaluate"] = evaluate
    path.write_text(yaml.safe_dump(raw))


def test_bad_evaluate_config_exits_3_naming_the_key(tmp_path):
    path = build_workdir(tmp_path)
    _rewrite(path, k=[10], metrics=["ndcg"], primary_metric="recall@10")
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 3
    assert "evaluate" in result.stderr and "primary_metric 'recall@10' is not computed" in result.stderr
    _rewrite(path, k=[10], metrics=["ndgc"])
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 3 and "evaluate.metrics.0" in result.stderr
    _rewrite(path, k=[10], baseline="nope")
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 3 and "evaluate.baseline" in result.stderr


def test_diversity_without_features_exits_3(tmp_path):
    path = build_workdir(tmp_path, features=False, evaluate={"k": [10], "metrics": ["ndcg", "diversity"]})
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 3
    assert "evaluate.metrics" in result.stderr and "preprocess.features" in result.stderr


def test_help_has_an_example():
    result = runner.invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout and "--report" in result.stdout


def test_models_changed_since_training_exits_5(tmp_path):
    path = build_workdir(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["models"]["popular"]["measure"] = "weight"
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 5
    assert "train is stale: models.popular.measure changed" in result.stderr and "recctl train" in result.stderr


def test_only_the_baseline_says_there_is_nothing_to_compare(tmp_path):
    path = build_workdir(
        tmp_path,
        models={"popular": {"kind": "popularity"}},
        evaluate={"k": [10], "metrics": ["ndcg"], "baseline": "popular"},
    )
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 0, result.output
    assert "No comparison" in result.stdout
