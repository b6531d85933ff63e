"""The tune stage: outputs, determinism, resume, failures, parallel trials, best.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from recctl.config import load_config
from recctl.errors import ArtifactError, ConfigError
from recctl.stages.tune import LEAKAGE_NOTE, run_tune
from recctl.tuning.records import CHECKPOINT_DIR


def _trials(cfg_path: Path) -> pl.DataFrame:
    return pl.read_parquet(cfg_path.parent.parent / "work" / "tune" / "trials.parquet")


def _comparable(frame: pl.DataFrame) -> list[tuple]:
    return list(frame.select("trial", "status", "params", "ndcg@5", "best_epoch").iter_rows())


def test_tune_writes_trials_best_yaml_and_summary(fake_config: Path) -> None:
    manifest = run_tune(load_config(fake_config))
    summary = manifest.summary
    assert summary["note"] == LEAKAGE_NOTE and summary["scored_on"] == "valid"
    assert summary["n_trials"] == 5 and summary["n_failed"] == 0
    # trial 0 is the configured taste=0; the search must find a better one on validation
    assert summary["default_value"] < summary["best_value"]
    assert summary["best_params"]["taste"] >= 0.5
    frame = _trials(fake_config)
    assert frame["trial"].to_list() == [0, 1, 2, 3, 4]
    assert {
        "status",
        "ndcg@5",
        "param.taste",
        "precision@5",
        "best_epoch",
        "epochs_run",
        "duration_s",
        "error",
        "curve",
    } <= set(frame.columns)
    assert frame.filter(pl.col("trial") == 0)["param.taste"].item() == 0.0
    assert [Path(o.path).name for o in manifest.outputs] == ["trials.parquet", "tuned.json", "best.yaml"]


def test_best_yaml_loads_from_anywhere_and_trains(fake_config: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from recctl.stages.train import load_trained_model, run_train

    summary = run_tune(load_config(fake_config)).summary
    best_path = fake_config.parent.parent / "work" / "tune" / "best.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = elsewhere / "best.yaml"
    shutil.copy(best_path, moved)  # absolute paths: valid even away from the workdir
    raw = yaml.safe_load(moved.read_text())
    assert "tune" not in raw and os.path.isabs(raw["workdir"])
    assert os.path.isabs(raw["data"]["interactions"]["path"])
    best_cfg = load_config(moved)
    params = best_cfg.model_config_for("fake")
    assert params.taste == summary["best_params"]["taste"]
    assert params.epochs == summary["best_epoch"] == 3
    assert best_cfg.workdir_path == load_config(fake_config).workdir_path
    run_train(best_cfg)
    model = load_trained_model(best_cfg, "fake")
    assert model.config.taste == summary["best_params"]["taste"] and model.epoch_ == 3


def test_same_seed_same_trials_other_seed_other_trials(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    def run(name: str, seed: int) -> pl.DataFrame:
        path = make_config(
            tmp_path / name,
            seed=seed,
            models={"fake": {"kind": "fake_epochs", "taste": 0.0}},
            tune={
                "model": "fake",
                "n_trials": 4,
                "objective": "ndcg@5",
                "space": {
                    "taste": {"type": "float", "low": 0.5, "high": 3.0},
                    "peak": {"type": "int", "low": 2, "high": 5},
                },
            },
        )
        run_tune(load_config(path))
        return _trials(path)

    first, again, other = run("a", 42), run("b", 42), run("c", 7)
    assert _comparable(first) == _comparable(again)
    assert first["params"].to_list()[1:] != other["params"].to_list()[1:]


def test_interrupted_search_resumes_from_finished_trials(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    tune = {
        "model": "fake",
        "n_trials": 6,
        "objective": "ndcg@5",
        "prune": False,
        "space": {"taste": {"type": "loguniform", "low": 0.1, "high": 3.0}},
    }
    models = {"fake": {"kind": "fake_epochs", "taste": 0.0}}
    reference = make_config(tmp_path / "ref", models=models, tune=tune)
    run_tune(load_config(reference))

    path = make_config(tmp_path / "run", models=models, tune=tune)
    cfg = load_config(path)

    def interrupt_after_three(result, trials, total) -> None:  # noqa: ANN001
        if len(trials) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tune(cfg, on_trial=interrupt_after_three)
    work = path.parent.parent / "work"
    assert not (work / "tune").exists()  # nothing half-written was published
    assert len(list((work / CHECKPOINT_DIR).glob("*.parquet"))) == 1

    seen: list[int] = []
    summary = run_tune(cfg, on_trial=lambda r, t, n: seen.append(r.number)).summary
    assert summary["n_resumed"] == 3 and seen == [3, 4, 5]
    assert _comparable(_trials(path)) == _comparable(_trials(reference))

    # a larger budget extends the same search; the finished six are not run again
    seen.clear()
    run_tune(cfg, n_trials=8, on_trial=lambda r, t, n: seen.append(r.number))
    assert seen == [6, 7]


def test_changed_space_does_not_reuse_the_checkpoint(fake_config: Path) -> None:
    run_tune(load_config(fake_config))
    raw = yaml.safe_load(fake_config.read_text())
    raw["tune"]["space"]["taste"]["high"] = 2.0
    fake_config.write_text(yaml.safe_dump(raw))
    assert run_tune(load_config(fake_config)).summary["n_resumed"] == 0


def test_failed_trials_are_recorded_and_the_search_goes_on(pop_config: Path) -> None:
    summary = run_tune(load_config(pop_config)).summary
    frame = _trials(pop_config)
    failed = frame.filter(pl.col("status") == "failed")
    # grid: 2 modes x 2 columns, plus the configured defaults = 5 trials; 'category' mode with a
    # missing column fails, everything else completes
    assert frame.height == 5 and failed.height == 1
    assert "no_such_column" in failed["error"].item() and failed["ndcg@5"].is_null().all()
    assert summary["n_complete"] == 4 and summary["failures"][0]["error"] == failed["error"].item()


def test_parallel_trials_match_sequential_ones(pop_config: Path) -> None:
    cfg = load_config(pop_config)
    run_tune(cfg)
    sequential = _comparable(_trials(pop_config))
    shutil.rmtree(pop_config.parent.parent / "work" / CHECKPOINT_DIR)
    parallel_cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"n_jobs": 2})})
    summary = run_tune(parallel_cfg).summary
    assert summary["n_jobs"] == 2
    assert _comparable(_trials(pop_config)) == sequential


def test_no_tune_section_is_a_config_error_and_an_empty_space_scores_the_configured_model(
    tmp_path: Path,
    make_config,  # noqa: ANN001
) -> None:
    path = make_config(tmp_path, models={"pop": {"kind": "popularity"}}, tune=None)
    with pytest.raises(ConfigError, match="no `tune:` section"):
        run_tune(load_config(path))
    # popularity has nothing to search: its configured parameters are scored once, so it is ranked
    path = make_config(tmp_path, models={"pop": {"kind": "popularity"}}, tune={"model": "pop"})
    summary = run_tune(load_config(path)).summary
    assert summary["n_trials"] == 1 and summary["winner"] == "pop" and summary["best_trial"] == 0


def test_missing_preprocess_names_the_command(pop_config: Path) -> None:
    shutil.rmtree(pop_config.parent.parent / "work" / "preprocess")
    with pytest.raises(ArtifactError, match="recctl preprocess"):
        run_tune(load_config(pop_config))


def test_max_epochs_lets_early_stopping_find_a_longer_run(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    path = make_config(
        tmp_path,
        models={"fake": {"kind": "fake_epochs", "epochs": 2, "peak": 5, "taste": 1.0}},
        tune={
            "model": "fake",
            "n_trials": 2,
            "objective": "ndcg@5",
            "max_epochs": 30,
            "patience": 2,
            "space": {"taste": {"type": "float", "low": 1.0, "high": 2.0}},
        },
    )
    summary = run_tune(load_config(path)).summary
    assert summary["best_epoch"] == 5 and summary["tuned_params"]["epochs"] == 5
    assert _trials(path)["epochs_run"].to_list() == [7, 7]  # stopped early, far below the cap


def test_tpe_resume_gives_the_same_trials(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    pytest.importorskip("optuna", reason="TPE needs the optional extra recctl[tune]")
    tune = {
        "model": "fake",
        "method": "tpe",
        "n_trials": 9,
        "objective": "ndcg@5",
        "prune": False,
        "space": {"taste": {"type": "float", "low": 0.0, "high": 3.0}, "peak": {"type": "int", "low": 1, "high": 6}},
    }
    models = {"fake": {"kind": "fake_epochs", "taste": 0.0}}
    reference = make_config(tmp_path / "ref", models=models, tune=tune)
    run_tune(load_config(reference))
    path = make_config(tmp_path / "run", models=models, tune=tune)

    def interrupt(result, trials, total) -> None:  # noqa: ANN001
        if len(trials) == 7:  # past the 5 random start-up trials: TPE proposals are resumed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tune(load_config(path), on_trial=interrupt)
    assert run_tune(load_config(path)).summary["n_resumed"] == 7
    assert _comparable(_trials(path)) == _comparable(_trials(reference))


def test_run_skips_an_unchanged_tune_and_reruns_a_changed_one(fake_config: Path) -> None:
    from recctl.pipeline import why_stale

    cfg = load_config(fake_config)
    run_tune(cfg)
    assert why_stale(cfg, "tune") is None
    changed = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"patience": 4})})
    assert why_stale(changed, "tune") == "tune.patience changed"


def test_a_damaged_checkpoint_starts_the_search_afresh(fake_config: Path, caplog) -> None:  # noqa: ANN001
    cfg = load_config(fake_config)
    run_tune(cfg)
    (ckpt,) = (fake_config.parent.parent / "work" / CHECKPOINT_DIR).glob("*.parquet")
    ckpt.write_bytes(b"garbage")
    with caplog.at_level("WARNING", logger="recctl.tuning.records"):
        assert run_tune(cfg).summary["n_resumed"] == 0
    assert "unreadable tuning checkpoint" in caplog.text


def test_a_best_trial_stopped_by_the_epoch_cap_gets_a_hint(tmp_path: Path, fake_epoch_model: type, make_config) -> None:  # noqa: ANN001
    path = make_config(
        tmp_path,
        models={"fake": {"kind": "fake_epochs", "epochs": 3, "peak": 8, "taste": 1.0}},
        tune={
            "model": "fake",
            "n_trials": 2,
            "objective": "ndcg@5",
            "space": {"taste": {"type": "float", "low": 1.0, "high": 2.0}},
        },
    )
    summary = run_tune(load_config(path)).summary
    assert summary["best_epoch"] == 3
    assert any("raise tune.max_epochs" in h for h in summary["hints"])


def test_grid_budget_smaller_than_the_grid_and_wall_time_budget(pop_config: Path) -> None:
    cfg = load_config(pop_config)
    small = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"n_trials": 3})})
    assert run_tune(small).summary["n_trials"] == 3
    # a wall-time budget already spent after the first batch: no further trial starts
    timed = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"timeout_s": 1e-9})})
    shutil.rmtree(pop_config.parent.parent / "work" / CHECKPOINT_DIR)
    assert run_tune(timed).summary["n_trials"] == 1
