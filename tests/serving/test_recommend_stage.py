"""The recommend stage: exactly K, exclusions, rules, fallbacks, streaming, A/B, item answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from recctl.columns import Columns
from recctl.config import load_config
from recctl.errors import ArtifactError, ConfigError, DataError
from recctl.stages import recommend as stage
from recctl.stages.export import run_serve_export
from recctl.stages.recommend import recommend_for_items, run_recommend, similar_items
from tests.serving.conftest import build_workdir, make_config


def _lists(cfg, name: str = "recommend") -> pl.DataFrame:  # noqa: ANN001
    return pl.read_parquet(cfg.stage_dir(name) / "recommendations.parquet")


def _pairs(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame[Columns.User].to_list(), frame[Columns.Item].to_list(), strict=True))


def test_every_user_gets_exactly_k_unseen_items(tmp_path: Path, shop: dict[str, pl.DataFrame], monkeypatch) -> None:
    monkeypatch.setattr(stage, "_ROW_GROUP_ROWS", 40)  # several row groups: the file is streamed
    config = make_config(tmp_path, recommend={"batch_size": 8})
    build_workdir(config)
    cfg = load_config(config)
    manifest = run_recommend(cfg)
    out = _lists(cfg)
    assert out.columns == [*Columns.Recommendations, Columns.Source]
    assert (
        out.group_by(Columns.User)
        .agg(pl.len(), pl.col(Columns.Item).n_unique().alias("u"))
        .filter((pl.col("len") != 5) | (pl.col("u") != 5))
        .height
        == 0
    )
    assert out[Columns.User].unique(maintain_order=True).to_list() == shop["users"][Columns.User].to_list()
    assert out[Columns.Rank].to_list()[:5] == [1, 2, 3, 4, 5]
    ev = shop["events"].join(shop["users"], on=Columns.UserIdx).join(shop["items"], on=Columns.ItemIdx)
    assert not _pairs(out) & _pairs(ev)  # train and test history excluded
    assert pq.ParquetFile(cfg.stage_dir("recommend") / "recommendations.parquet").num_row_groups >= 4
    assert manifest.output("recommendations.parquet").rows == 200
    assert manifest.summary["n_short_lists"] == 0 and manifest.summary["exclusions"] == "every item in the full history"


def test_rules_and_purchase_only_exclusion(tmp_path: Path, shop: dict[str, pl.DataFrame]) -> None:
    (tmp_path / "deny.txt").write_text("P000\nP003\n")
    config = make_config(
        tmp_path,
        recommend={
            "rules": {
                "exclude_events": ["purchase"],
                "deny_list": "deny.txt",
                "in_stock_column": "in_stock",
                "require_price": True,
                "category_cap": {"column": "category", "max_per_list": 2},
                "diversity_lambda": 0.3,
            }
        },
    )
    build_workdir(config)
    cfg = load_config(config)
    run_recommend(cfg)
    out = _lists(cfg).join(shop["items"], on=Columns.Item)
    assert not set(out[Columns.Item].to_list()) & {"P000", "P003", "P005", "P006", "P007", "P008"}
    assert out.group_by(Columns.User, "category").len()["len"].max() <= 2
    assert out.group_by(Columns.User).len()["len"].to_list() == [5] * 40
    ev = shop["events"].join(shop["users"], on=Columns.UserIdx).join(shop["items"], on=Columns.ItemIdx)
    bought = ev.filter(pl.col(Columns.Event) == "purchase")
    assert not _pairs(out) & _pairs(bought)


def test_short_main_lists_are_backfilled_with_source(shop_config: Path, monkeypatch) -> None:
    from recctl.models.item_knn import ItemKNNModel

    original = ItemKNNModel._score

    def few(self, users):  # noqa: ANN001, ANN202 - the main model can rank only items 0..3
        s = original(self, users).astype(np.float32)
        s[:, 4:] = -np.inf
        return s

    monkeypatch.setattr(ItemKNNModel, "_score", few)
    cfg = load_config(shop_config)
    manifest = run_recommend(cfg)
    out = _lists(cfg)
    assert out.group_by(Columns.User).len()["len"].to_list() == [5] * 40
    assert set(out[Columns.Source].unique().to_list()) == {"knn", "popular"}
    first_fallback = (
        out.filter(pl.col(Columns.Source) == "popular").group_by(Columns.User).agg(pl.col(Columns.Rank).min())
    )
    knn_last = out.filter(pl.col(Columns.Source) == "knn").group_by(Columns.User).agg(pl.col(Columns.Rank).max())
    both = first_fallback.join(knn_last, on=Columns.User, suffix="_knn")
    assert (both[Columns.Rank] > both[f"{Columns.Rank}_knn"]).all()  # fallback items come after
    assert manifest.summary["rows_by_source"]["popular"] == out.filter(pl.col(Columns.Source) == "popular").height


def test_unknown_users_get_the_fallback_and_nightly_output_is_kept(shop_config: Path) -> None:
    cfg = load_config(shop_config)
    run_recommend(cfg)
    nightly = (cfg.stage_dir("recommend") / "recommendations.parquet").read_bytes()
    run_recommend(cfg, users=["NEW1", "U001"])
    out = _lists(cfg, "recommend-users")
    assert out[Columns.User].unique(maintain_order=True).to_list() == ["NEW1", "U001"]  # the order given
    new = out.filter(pl.col(Columns.User) == "NEW1")
    assert new[Columns.Source].unique().to_list() == ["popular"] and new.height == 5
    assert (cfg.stage_dir("recommend") / "recommendations.parquet").read_bytes() == nightly
    with pytest.raises(DataError, match="no user ids"):
        run_recommend(cfg, users=[" "])


def test_scores_are_computed_in_bounded_blocks(tmp_path: Path, monkeypatch) -> None:
    from recctl.models.item_knn import ItemKNNModel

    sizes: list[int] = []
    original = ItemKNNModel._score

    def spy(self, users):  # noqa: ANN001, ANN202
        sizes.append(len(users))
        return original(self, users)

    monkeypatch.setattr(ItemKNNModel, "_score", spy)
    # a budget of 7 users x 30 items x 4 bytes per score block
    config = make_config(tmp_path, recommend={"max_block_mb": 7 * 30 * 4 / 2**20, "n_jobs": 2})
    build_workdir(config)
    run_recommend(load_config(config))
    assert max(sizes) == 7 and sum(sizes) >= 40


def test_ab_experiment_scores_each_user_with_their_variant(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        experiment={
            "name": "e",
            "salt": "s",
            "control": "a",
            "holdout": 0.2,
            "variants": {"a": {"model": "popular", "weight": 1}, "b": {"model": "knn", "weight": 1}},
        },
    )
    build_workdir(config)
    cfg = load_config(config)
    manifest = run_recommend(cfg)
    out = _lists(cfg)
    assign = pl.read_parquet(cfg.stage_dir("recommend") / "assignments.parquet")
    assert assign.height == 40 and set(assign[Columns.Variant].unique().to_list()) <= {"a", "b", "holdout"}
    held = set(assign.filter(pl.col(Columns.Variant) == "holdout")[Columns.User].to_list())
    assert held and not held & set(out[Columns.User].to_list())
    assert manifest.summary["n_holdout"] == len(held)
    joined = out.join(assign, on=Columns.User, suffix="_assigned")
    assert (joined[Columns.Variant] == joined[f"{Columns.Variant}_assigned"]).all()
    model_of = {"a": "popular", "b": "knn"}
    assert all(model_of[v] == m for v, m in zip(out[Columns.Variant], out[Columns.Model], strict=True))
    published = run_serve_export(cfg, date="2026-02-01")
    names = {Path(p["path"]).name for p in published.summary["published"]}
    assert names == {
        "recommendations_2026-02-01.csv",
        "recommendations_assignments_2026-02-01.parquet",
        "recommendations_short_lists_2026-02-01.csv",
    }


def test_items_and_similar_answers(shop_config: Path) -> None:
    cfg = load_config(shop_config)
    frame = recommend_for_items(cfg, ["P001", "P002"], 4)
    assert frame.columns[:4] == [Columns.Rank, Columns.Item, Columns.Score, Columns.Source]
    assert frame.height == 4 and not {"P001", "P002"} & set(frame[Columns.Item].to_list())
    sim = similar_items(cfg, "P001", 3)
    assert sim.height == 3 and "P001" not in sim[Columns.Item].to_list()
    assert sim[Columns.Score].to_list() == sorted(sim[Columns.Score].to_list(), reverse=True)
    with pytest.raises(DataError, match=r"--items: unknown item id\(s\): NOPE"):
        recommend_for_items(cfg, ["P001", "NOPE"])


def test_similar_needs_a_capable_model(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, models={"popular": {"kind": "popularity"}}, recommend={"model": "popular", "fallback": []}
    )
    build_workdir(config)
    with pytest.raises(ConfigError, match="has item similarity"):
        similar_items(load_config(config), "P001")


def test_recommend_needs_trained_models(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    build_workdir(config, train=False)
    with pytest.raises(ArtifactError, match="recctl train"):
        run_recommend(load_config(config))


def test_fallback_must_not_repeat_the_main_model(tmp_path: Path) -> None:
    config = make_config(tmp_path, recommend={"fallback": ["knn"]})
    with pytest.raises(ConfigError, match="recommend: fallback lists the main model 'knn'"):
        load_config(config)


def test_min_score_hands_no_evidence_slots_to_the_fallback(tmp_path: Path) -> None:
    # the train-split kNN: some users have no evidence there (all their neighbours are in test)
    config = make_config(tmp_path, recommend={"min_score": 0.0, "refit_on_all_data": False})
    build_workdir(config)
    cfg = load_config(config)
    run_recommend(cfg)
    out = _lists(cfg)
    knn = out.filter(pl.col(Columns.Source) == "knn")
    assert (knn[Columns.Score] > 0).all()
    assert out.filter(pl.col(Columns.Source) == "popular").height > 0  # some users lack kNN evidence
    assert out.group_by(Columns.User).len()["len"].to_list() == [5] * 40
