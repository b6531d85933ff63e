"""One trial: early stopping records the best epoch, pruning, failures become data."""

from __future__ import annotations

from pathlib import Path

import pytest

from recctl.tuning.trial import TrialResult, TrialSpec, load_trial_data, median_curve, run_trial


@pytest.fixture
def trial_data(fake_config: Path):  # noqa: ANN201
    return load_trial_data(fake_config.parent.parent / "work" / "preprocess")


def _spec(**model: object) -> TrialSpec:
    params = {"kind": "fake_epochs", "epochs": 12, "peak": 3, "taste": 1.0, **model}
    return TrialSpec(
        number=1, params={"taste": params["taste"]}, model_params=params, metric="ndcg", k=5, patience=2, prune=False
    )


def test_early_stopping_records_the_best_epoch(trial_data) -> None:  # noqa: ANN001
    result = run_trial(_spec(), trial_data)
    assert result.status == "complete", result.error
    assert result.best_epoch == 3  # the fake model's noise vanishes at its peak epoch
    assert result.epochs_run == 5 and result.stopped_early  # two epochs without improvement
    assert len(result.curve) == 5
    assert result.value == max(result.curve) == result.metrics["ndcg@5"]
    assert {"precision@5", "recall@5", "map@5"} <= set(result.metrics)


def test_without_patience_left_the_trial_runs_every_epoch(trial_data) -> None:  # noqa: ANN001
    spec = _spec(epochs=4)
    spec.patience = 10
    result = run_trial(spec, trial_data)
    assert result.epochs_run == 4 and not result.stopped_early and result.best_epoch == 3


def test_a_trial_below_the_median_curve_is_pruned(trial_data) -> None:  # noqa: ANN001
    spec = _spec()
    spec.prune, spec.prune_warmup_epochs, spec.median = True, 2, [1.0] * 12
    result = run_trial(spec, trial_data)
    assert result.status == "pruned" and result.epochs_run == 2


def test_a_crashing_model_is_a_failed_trial_not_an_exception(trial_data) -> None:  # noqa: ANN001
    result = run_trial(_spec(fail=True), trial_data)
    assert result.status == "failed" and result.value is None
    assert result.error == "RuntimeError: fake model asked to fail"


def test_invalid_parameters_are_a_failed_trial(trial_data) -> None:  # noqa: ANN001
    result = run_trial(_spec(epochs="many"), trial_data)
    assert result.status == "failed" and "epochs" in result.error


def test_median_curve_uses_best_so_far_and_pads_short_curves() -> None:
    done = [
        TrialResult(0, {}, "complete", 0.3, curve=[0.1, 0.3, 0.2]),
        TrialResult(1, {}, "complete", 0.5, curve=[0.5]),
        TrialResult(2, {}, "complete", 0.4, curve=[0.2, 0.4, 0.4]),
        TrialResult(3, {}, "failed", None, curve=[9.0]),
    ]
    assert median_curve(done) == [0.2, 0.4, 0.4]
    assert median_curve([]) is None
