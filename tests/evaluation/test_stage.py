"""The evaluate stage on a small workdir built in the fixture (no ingest/preprocess needed)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from recctl.config import load_config
from recctl.errors import ArtifactError, ConfigError
from recctl.metric_registry import METRICS
from recctl.stages.evaluate import BUILTIN_BASELINE, run_evaluate

from .conftest import build_workdir

ALL = list(METRICS)  # every metric the config accepts (the one registry)


def _metrics(cfg) -> dict:
    return json.loads((cfg.stage_dir("evaluate") / "metrics.json").read_text())


def test_every_model_on_the_same_users_with_comparisons(tmp_path):
    path = build_workdir(tmp_path, evaluate={"k": [5, 10], "metrics": ALL, "baseline": "popular", "n_bootstrap": 200})
    cfg = load_config(path)
    manifest = run_evaluate(cfg)
    m = _metrics(cfg)
    assert m["model_order"] == ["popular", "by_category"]  # baseline first
    per_user = pl.read_parquet(cfg.stage_dir("evaluate") / "per_user.parquet")
    users = {name: per_user.filter(pl.col("model") == name)["user_idx"].to_list() for name in m["models"]}
    assert users["popular"] == users["by_category"]
    assert len(users["popular"]) == m["protocol"]["n_users_evaluated"]
    assert {"user_id", "segment", "n_train_items", "n_test_items", "ndcg@10", "auc"} <= set(per_user.columns)
    # the category-aware model really is better than plain popularity on this data
    assert m["best"] == "by_category"
    assert m["verdicts_vs_baseline"]["by_category"]["ndcg@10"] == "better"
    assert m["models"]["by_category"]["mean"]["ndcg@10"] > m["models"]["popular"]["mean"]["ndcg@10"]
    # every metric of the config is reported, at every K
    means = m["models"]["popular"]["mean"]
    assert "auc" in means and all(f"{x}@{k}" in means for x in ALL if x != "auc" for k in (5, 10))
    assert {c["role"] for c in m["comparisons"]} == {"baseline"}  # best is the only other model
    assert m["segments"]["users"]["popular"] and m["segments"]["item_bands"]["popular"]
    assert m["protocol"]["excluded"].startswith("items the user interacted with")
    assert manifest.summary["best"] == "by_category"
    assert {o.path for o in manifest.outputs} == {"metrics.json", "per_user.parquet"}


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    path = build_workdir(tmp_path)
    cfg = load_config(path)
    run_evaluate(cfg)
    first = (cfg.stage_dir("evaluate") / "metrics.json").read_bytes()
    first_users = (cfg.stage_dir("evaluate") / "per_user.parquet").read_bytes()
    run_evaluate(cfg)
    assert (cfg.stage_dir("evaluate") / "metrics.json").read_bytes() == first
    assert pl.read_parquet(cfg.stage_dir("evaluate") / "per_user.parquet").equals(
        pl.read_parquet(__import__("io").BytesIO(first_users))
    )


def test_builtin_popularity_baseline_when_none_is_configured(tmp_path):
    path = build_workdir(
        tmp_path,
        evaluate={"k": [10], "metrics": ["ndcg"], "n_bootstrap": 50},
        models={"by_category": {"kind": "popularity", "mode": "category"}},
    )
    cfg = load_config(path)
    run_evaluate(cfg)
    m = _metrics(cfg)
    assert m["baseline"] == BUILTIN_BASELINE
    assert m["model_order"] == [BUILTIN_BASELINE, "by_category"]


def test_identical_models_get_no_detectable_difference(tmp_path):
    path = build_workdir(
        tmp_path,
        evaluate={"k": [10], "metrics": ["ndcg", "recall"], "baseline": "a", "n_bootstrap": 50},
        models={"a": {"kind": "popularity"}, "b": {"kind": "popularity"}},
    )
    cfg = load_config(path)
    run_evaluate(cfg)
    for c in _metrics(cfg)["comparisons"]:
        assert c["verdict"] == "no detectable difference" and c["diff"] == 0.0


def test_report_written_on_request(tmp_path):
    path = build_workdir(tmp_path)
    cfg = load_config(path)
    manifest = run_evaluate(cfg, report=True)
    html = (cfg.stage_dir("evaluate") / "report.html").read_text()
    assert "report.html" in {o.path for o in manifest.outputs}
    assert "<svg" in html and "Protocol" in html


def test_missing_train_stage_names_the_command(tmp_path):
    path = build_workdir(tmp_path, train=False)
    with pytest.raises(ArtifactError, match="recctl train"):
        run_evaluate(load_config(path))


def test_diversity_without_item_features_is_a_config_error(tmp_path):
    path = build_workdir(tmp_path, features=False, evaluate={"k": [10], "metrics": ["diversity"]})
    with pytest.raises(ConfigError, match="preprocess.features"):
        run_evaluate(load_config(path))


def test_failed_run_keeps_previous_outputs(tmp_path, monkeypatch):
    path = build_workdir(tmp_path)
    cfg = load_config(path)
    run_evaluate(cfg)
    before = (cfg.stage_dir("evaluate") / "metrics.json").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("crash while writing")

    monkeypatch.setattr("recctl.stages.evaluate.write_parquet_atomic", boom)
    with pytest.raises(RuntimeError):
        run_evaluate(cfg)
    assert (cfg.stage_dir("evaluate") / "metrics.json").read_bytes() == before


def test_new_users_form_their_own_segment(tmp_path):
    path = build_workdir(tmp_path, cold_users=20)
    cfg = load_config(path)
    run_evaluate(cfg)
    m = _metrics(cfg)
    segments = {r["segment"]: r["n_users"] for r in m["segments"]["users"]["popular"]}
    assert 0 < segments["new"] <= 20
    assert sum(segments.values()) == m["protocol"]["n_users_evaluated"]
    per_user = pl.read_parquet(cfg.stage_dir("evaluate") / "per_user.parquet")
    new = per_user.filter(pl.col("segment") == "new")
    assert (new["n_train_items"] == 0).all() and new.height == 2 * segments["new"]


def test_progress_is_reported_through_the_callback(tmp_path):
    path = build_workdir(tmp_path)
    calls = []
    run_evaluate(load_config(path), progress=lambda task, done, total=None: calls.append((task, done, total)))
    tasks = {c[0] for c in calls}
    assert {"evaluate", "rank popular", "rank by_category"} <= tasks
    assert ("evaluate", 2, 2) in calls
