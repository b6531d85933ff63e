"""The shared time budget holds: trials start only when they fit, epoch-wise trials are cut,
a model whose first trial would not fit is skipped and reported. Time is a fake clock that
the fake models advance (no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pytest

from recctl.config import load_config
from recctl.config.tune import FloatSpace, TuneConfig
from recctl.data.dataset import Dataset
from recctl.models.base import ModelConfig
from recctl.models.popularity import PopularityModel
from recctl.models.registry import MODELS, register
from recctl.stages.tune import run_tune
from recctl.tuning import budget
from recctl.tuning.search import RandomSampler, SearchPlan, run_search
from recctl.tuning.trial import TrialResult, TrialSpec, load_trial_data, run_trial


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """``budget.now`` reads ``state["t"]``, which only the fake models advance."""
    state = {"t": 1000.0}
    monkeypatch.setattr(budget, "now", lambda: state["t"])
    return state


@pytest.fixture
def slow_epochs(fake_epoch_model: Any, fake_clock: dict[str, float], monkeypatch: pytest.MonkeyPatch) -> dict:
    """Every epoch of the fake epoch-wise model costs 10 fake seconds."""
    plain = fake_epoch_model.iter_fit

    def costly(self: Any, dataset: Dataset) -> Any:
        for epoch in plain(self, dataset):
            fake_clock["t"] += 10.0
            yield epoch

    monkeypatch.setattr(fake_epoch_model, "iter_fit", costly)
    return fake_clock


class _CostRunner:
    """Runs trials that each cost ``cost`` fake seconds."""

    def __init__(self, clock: dict[str, float], cost: float) -> None:
        self.clock, self.cost = clock, cost

    def run(self, specs: list[TrialSpec]) -> list[TrialResult]:
        out = []
        for spec in specs:
            self.clock["t"] += self.cost
            out.append(TrialResult(spec.number, spec.params, "complete", value=0.1, duration_s=self.cost))
        return out


def _plan(n_trials: int) -> SearchPlan:
    space = {"x": FloatSpace(type="float", low=0.0, high=1.0)}
    tune = TuneConfig(model="m", space=space, n_trials=n_trials)
    return SearchPlan(tune=tune, base_params={"kind": "m"}, default_params={"x": 0.5}, n_trials=n_trials, seed=1)


def test_no_trial_starts_that_would_end_past_the_budget(fake_clock: dict[str, float]) -> None:
    space = _plan(10).tune.space
    runner: Any = _CostRunner(fake_clock, 10.0)
    results = run_search(_plan(10), RandomSampler(space, 1, offset=1), runner, [], timeout_s=35.0)
    assert len(results) == 3 and fake_clock["t"] - 1000.0 <= 35.0  # a 4th would end at 40 s
    # the model's own estimate of its first trial is over the budget: nothing runs
    runner = _CostRunner(fake_clock, 10.0)
    skipped = run_search(
        _plan(10), RandomSampler(space, 1, offset=1), runner, [], timeout_s=35.0, first_estimate_s=50.0, run_first=False
    )
    assert skipped == []


def test_an_epoch_wise_trial_is_cut_at_its_time_limit(fake_config: Path, slow_epochs: dict) -> None:
    data = load_trial_data(fake_config.parent.parent / "work" / "preprocess")
    params = {"kind": "fake_epochs", "epochs": 12, "peak": 3, "taste": 1.0}
    spec = TrialSpec(1, {}, params, metric="ndcg", k=5, patience=20, prune=False, time_limit_s=45.0)
    result = run_trial(spec, data)
    # 4 epochs = 40 s; a 5th would end at 50 s > 45 s
    assert result.status == "complete" and result.cut_at_budget and result.epochs_run == 4
    assert result.duration_s == pytest.approx(40.0) and result.best_epoch == 3


def test_tune_all_keeps_to_the_budget_and_gives_the_sequence_model_several_trials(
    tmp_path: Path, make_config: Any, slow_epochs: dict
) -> None:
    path = make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}, "seq": {"kind": "fake_epochs", "epochs": 12, "peak": 3}},
        tune={
            "models": "all",
            "n_trials": 5,
            "objective": "ndcg@5",
            "patience": 20,
            "timeout_s": 200,
            "blend_trials": 2,
            "spaces": {"seq": {"taste": {"type": "float", "low": 0.5, "high": 3.0}}},
        },
    )
    start = slow_epochs["t"]
    summary = run_tune(load_config(path)).summary
    spent = slow_epochs["t"] - start
    assert spent <= 200.0 and summary["budget"]["spent_s"] <= 200.0
    # seq's share (3 of the 5 weights left after pop: 150 s) is cut into trials of at most 50 s
    assert summary["models"]["seq"]["n_trials"] >= 3
    assert summary["skipped"] == []
    trials = pl.read_parquet(tmp_path / "work" / "tune" / "trials.parquet").filter(pl.col("model") == "seq")
    assert trials["cut_at_budget"].all()  # patience 20 never stops them: the time limit does


class CostlyConfig(ModelConfig):
    """A popularity model that says its fit takes a day."""

    kind: Literal["fake_costly"] = "fake_costly"


class CostlyModel(PopularityModel):
    """Popularity with a huge estimate of its fit time."""

    config_class = CostlyConfig  # type: ignore[assignment]

    @classmethod
    def estimate_fit_seconds(cls, config: ModelConfig, dataset: Dataset) -> float | None:
        """A day."""
        return 86400.0


@pytest.fixture
def costly_model() -> Any:
    """Register ``kind: fake_costly`` for one test."""
    register("fake_costly")(CostlyModel)
    try:
        yield CostlyModel
    finally:
        MODELS.pop("fake_costly", None)


def test_a_model_whose_first_trial_would_overrun_is_skipped_and_reported(
    tmp_path: Path, make_config: Any, costly_model: Any
) -> None:
    path = make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}, "costly": {"kind": "fake_costly"}},
        tune={"models": "all", "n_trials": 2, "objective": "ndcg@5", "timeout_s": 600},
    )
    summary = run_tune(load_config(path)).summary
    assert [s["model"] for s in summary["skipped"]] == ["costly"]
    assert "86400s" in summary["skipped"][0]["reason"] and "tune.timeout_s=600" in summary["skipped"][0]["reason"]
    assert summary["winner"] == "pop" and summary["models"]["costly"]["n_trials"] == 0
    tuned = json.loads((tmp_path / "work" / "tune" / "tuned.json").read_text())
    assert tuned["models"]["costly"]["skipped"] and tuned["skipped"][0]["model"] == "costly"
    assert np.isfinite(summary["winner_value"])
