"""``recctl tune`` through the CLI: progress on stderr, results on stdout, exit codes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app

runner = CliRunner()


def test_tune_prints_progress_on_stderr_and_a_table_on_stdout(fake_config: Path) -> None:
    result = runner.invoke(app, ["tune", str(fake_config), "--trials", "3"])
    assert result.exit_code == 0, result.output
    # live progress (one line per trial off a terminal): trial i/N, best so far, ETA
    assert "trial 1/3" in result.stderr and "trial 3/3" in result.stderr
    assert "best 0." in result.stderr and "ETA" in result.stderr
    assert "Top trials of fake" in result.stdout
    assert "scored on validation split; test untouched" in result.stdout
    assert "best.yaml" in result.stdout
    assert "trial 1/3" not in result.stdout


def test_tune_json_is_machine_readable(fake_config: Path) -> None:
    result = runner.invoke(app, ["tune", str(fake_config), "--trials", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "tune"
    assert data["summary"]["n_trials"] == 2
    assert data["summary"]["note"] == "scored on validation split; test untouched"
    assert {Path(o["path"]).name for o in data["outputs"]} == {"trials.parquet", "best.yaml", "tuned.json"}
    assert result.stderr == ""


def test_tune_without_preprocess_exits_5(pop_config: Path) -> None:
    shutil.rmtree(pop_config.parent.parent / "work" / "preprocess")
    result = runner.invoke(app, ["tune", str(pop_config)])
    assert result.exit_code == 5
    assert "recctl preprocess" in result.stderr


def test_tune_without_a_tune_section_exits_3(pop_config: Path) -> None:
    raw = yaml.safe_load(pop_config.read_text())
    del raw["tune"]
    pop_config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["tune", str(pop_config)])
    assert result.exit_code == 3
    assert "no `tune:` section" in result.stderr


def test_trials_must_be_positive(pop_config: Path) -> None:
    result = runner.invoke(app, ["tune", str(pop_config), "--trials", "0"])
    assert result.exit_code == 2


def test_tpe_without_optuna_names_the_extra(pop_config: Path, monkeypatch) -> None:  # noqa: ANN001
    raw = yaml.safe_load(pop_config.read_text())
    raw["tune"]["method"] = "tpe"
    pop_config.write_text(yaml.safe_dump(raw))
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    result = runner.invoke(app, ["tune", str(pop_config)])
    assert result.exit_code == 6
    assert "TPE search needs the optional package 'optuna'" in result.stderr
    assert "pip install 'recctl[tune]'" in result.stderr


def test_tpe_search_is_deterministic(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    pytest.importorskip("optuna", reason="TPE needs the optional extra recctl[tune]")
    import polars as pl

    from recctl.config import load_config
    from recctl.stages.tune import run_tune

    def run(name: str) -> list:
        path = make_config(
            tmp_path / name,
            models={"fake": {"kind": "fake_epochs", "taste": 0.0}},
            tune={
                "model": "fake",
                "method": "tpe",
                "n_trials": 8,
                "objective": "ndcg@5",
                "space": {
                    "taste": {"type": "float", "low": 0.0, "high": 3.0},
                    "peak": {"type": "int", "low": 1, "high": 6},
                },
            },
        )
        summary = run_tune(load_config(path)).summary
        assert summary["method"] == "tpe" and summary["n_failed"] == 0
        frame = pl.read_parquet(path.parent.parent / "work" / "tune" / "trials.parquet")
        return frame.select("trial", "params", "ndcg@5").rows()

    assert run("a") == run("b")


def test_second_run_resumes_every_finished_trial(fake_config: Path) -> None:
    first = runner.invoke(app, ["tune", str(fake_config), "--trials", "3"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["tune", str(fake_config), "--trials", "4"])
    assert again.exit_code == 0, again.output
    assert "3 resumed from the checkpoint" in again.stdout
    assert "trial 4/4 (#3)" in again.stderr and "(#0)" not in again.stderr


def test_tune_of_several_models_prints_their_ranking(tmp_path: Path, make_config) -> None:  # noqa: ANN001
    config = make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}, "knn": {"kind": "item_knn"}},
        tune={"models": "all", "n_trials": 2, "objective": "ndcg@5", "blend_trials": 2},
    )
    result = runner.invoke(app, ["tune", str(config)])
    assert result.exit_code == 0, result.output
    assert "Models ranked on validation (ndcg@5); picked:" in result.stdout
    assert "pop" in result.stdout and "knn" in result.stdout
