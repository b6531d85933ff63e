"""One `recctl tune` for every model: own spaces, the real-improvement rule, edges, the blend, the ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from recctl.config import load_config
from recctl.stages.tune import BLEND_NAME, run_tune
from recctl.tuning.select import blend_weight_vectors, decide, paired_gain
from recctl.tuning.spaces import at_edge, default_space, extend_space
from recctl.tuning.trial import TrialResult


def _trial(number: int, per_user: np.ndarray) -> TrialResult:
    return TrialResult(number, {"x": number}, "complete", value=float(per_user.mean()), per_user=per_user)


def test_a_noise_level_gain_keeps_the_configured_parameters() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(600)
    noise = [_trial(0, base)] + [_trial(i, base + rng.normal(0, 0.05, 600)) for i in range(1, 11)]
    decision = decide(noise, alpha=0.05)
    assert decision.best.number != 0 and decision.best.value > decision.default.value  # the best of 10 noisy ones
    assert not decision.accepted and decision.chosen.number == 0 and "not a real improvement" in decision.reason
    real = [_trial(0, base), _trial(1, base + 0.05 + rng.normal(0, 0.05, 600))]
    decision = decide(real, alpha=0.05)
    assert decision.accepted and decision.chosen.number == 1 and decision.p_value < 1e-6
    gain, p = paired_gain(base, base)
    assert gain == 0.0 and p == 1.0


def test_edges_are_found_and_log_ranges_extended() -> None:
    space = default_space("ease")
    assert at_edge(space["l2"], 21.0) == "low" and at_edge(space["l2"], 500.0) is None
    wider = extend_space(space["l2"], "low")
    assert (wider.low, wider.high) == (2.0, 20.0)
    assert extend_space(default_space("rp3beta")["beta"], "high") is None  # a bounded linear range: report only
    assert blend_weight_vectors(2, 5, 1)[0] == [0.5, 0.5]
    assert all(abs(sum(w) - 1) < 0.01 for w in blend_weight_vectors(3, 6, 1))


def test_tune_searches_every_model_ranks_them_and_tunes_a_blend(tmp_path: Path, fake_epoch_model, make_config) -> None:  # noqa: ANN001
    path = make_config(
        tmp_path,
        models={
            "pop": {"kind": "popularity"},
            "fake": {"kind": "fake_epochs", "epochs": 6, "peak": 2, "taste": 0.0},
            "knn": {"kind": "item_knn", "neighbors": 5},
        },
        tune={
            "models": "all",
            "method": "grid",
            "n_trials": 4,
            "objective": "ndcg@5",
            "patience": 2,
            "blend_trials": 3,
            # taste helps more the larger it is: the best value sits at the high edge and is searched beyond
            "spaces": {"fake": {"taste": {"type": "loguniform", "low": 0.05, "high": 0.5}}},
        },
    )
    manifest = run_tune(load_config(path))
    summary = manifest.summary
    assert summary["models_searched"] == ["pop", "fake", "knn"]
    values = [e["value"] for e in summary["ranking"]]
    assert values == sorted(values, reverse=True) and summary["winner"] == summary["ranking"][0]["model"]
    # the stage's time is the whole search (it was the 0.004 s of writing the files)
    assert manifest.duration_s >= summary["search_seconds"] > 0
    tuned = json.loads((path.parent.parent / "work" / "tune" / "tuned.json").read_text())
    assert set(tuned["models"]) == {"pop", "fake", "knn"}
    assert tuned["models"]["pop"]["n_trials"] == 1  # nothing to search: scored once, still ranked
    fake = tuned["models"]["fake"]
    assert fake["changed"] and fake["params"]["taste"] > 0 and fake["p_value"] < 0.05
    assert fake["extended"] == {"taste": [0.5, 5.0]}
    assert any("high edge" in h for h in fake["hints"])
    assert tuned["blend"]["components"][0] == tuned["ranking"][0]["model"] or tuned["winner"]["name"] == BLEND_NAME
    trials = pl.read_parquet(path.parent.parent / "work" / "tune" / "trials.parquet")
    assert trials.columns[0] == "model" and set(trials["model"]) == {"pop", "fake", "knn", BLEND_NAME}
    best = load_config(path.parent.parent / "work" / "tune" / "best.yaml")
    assert best.tune is None and best.models["fake"]["taste"] == fake["params"]["taste"]


def test_apply_trains_the_tuned_models_their_defaults_and_the_pick(tmp_path: Path, make_config) -> None:  # noqa: ANN001
    from recctl.pipeline import stage_order
    from recctl.stages.evaluate import read_metrics, run_evaluate
    from recctl.stages.train import run_train

    path = make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 1}},
        tune={
            "models": ["pop", "knn"],
            "method": "grid",
            "n_trials": 4,
            "objective": "ndcg@5",
            "apply": True,
            "blend": False,
            "alpha": 0.2,  # 90 validation users: a generous level, so the clear gain is kept
            "spaces": {"knn": {"neighbors": {"type": "int", "low": 1, "high": 30}}},
        },
    )
    raw = yaml.safe_load(path.read_text())
    raw["recommend"] = {"model": "tuned", "k": 5, "fallback": ["pop"], "refit_on_all_data": False}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert stage_order(cfg).index("tune") < stage_order(cfg).index("train")
    summary = run_tune(cfg).summary
    train = run_train(cfg).summary
    assert "tuned" in train["models"] and train["tuning"]["winner"] == summary["winner"]
    changed = train["tuning"]["models"]
    assert set(changed) == {"knn"}  # one neighbour is a poor configured value: tuning changed it
    assert "knn@default" in train["models"]
    run_evaluate(cfg)
    metrics = read_metrics(cfg)
    row = metrics["tuning"]["models"]["knn"]
    assert row["test_tuned"] is not None and row["test_default"] is not None
    assert row["valid_tuned"] > row["valid_default"]
    assert {"tuned", "knn@default"} <= set(metrics["models"])
    # best.yaml (no tune section) serves the same pick as an ordinary model named `tuned`
    best = load_config(path.parent.parent / "work" / "tune" / "best.yaml")
    assert best.tune is None and best.recommend is not None and best.recommend.model == "tuned"
    assert best.model_config_for("tuned") is not None


def test_sasrec_joins_the_search_when_torch_is_installed(
    tmp_path: Path,
    make_config,  # noqa: ANN001
    monkeypatch,  # noqa: ANN001
    caplog,  # noqa: ANN001
) -> None:
    import logging
    import sys

    import pytest

    pytest.importorskip("torch", reason="the neural extra is not installed: pip install 'recctl[neural]'")
    seq = {"kind": "sasrec", "max_len": 5, "hidden_size": 8, "n_heads": 2, "n_blocks": 1, "epochs": 2}
    tune = {"models": "all", "method": "random", "n_trials": 2, "objective": "ndcg@5", "blend": False}
    path = make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}, "seq": {**seq, "num_threads": 1}},
        tune={**tune, "spaces": {"seq": {"lr": {"type": "loguniform", "low": 0.005, "high": 0.02}}}},
    )
    assert set(default_space("sasrec")) == {"lr", "dropout", "hidden_size", "max_len"}
    summary = run_tune(load_config(path)).summary
    assert summary["models_searched"] == ["pop", "seq"]
    assert {e["model"] for e in summary["ranking"]} == {"pop", "seq"}
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with caplog.at_level(logging.WARNING):
        summary = run_tune(load_config(path)).summary
    assert summary["models_searched"] == ["pop"] and "leaving out seq" in caplog.text


def test_the_tune_all_example_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "movielens_tune_all.yaml", check_files=False)
    assert cfg.tune is not None and cfg.tune.apply and cfg.recommend is not None and cfg.recommend.model == "tuned"
    assert cfg.preprocess.split.strategy == "user_time" and cfg.preprocess.split.validation_strategy == "user_time"
