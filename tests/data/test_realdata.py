"""The shipped real-data configs on ../shared/data (skipped when the datasets are absent)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from recctl.columns import Columns
from recctl.config import Config, config_from_dict
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _config(name: str, tmp_path: Path, needs: str) -> Config:
    if not (SHARED / needs).exists():
        pytest.skip(f"real dataset not found at {SHARED / needs} (only on the team's machines)")
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    # keep the data and preprocess sections as shipped; models are other tests' business
    raw["workdir"] = str(tmp_path / "work")
    raw["models"] = {"popular": {"kind": "popularity"}}
    for section in ("tune", "recommend", "evaluate"):
        raw.pop(section, None)
    return config_from_dict(raw, base_dir=REPO / "configs", source=f"configs/{name}.yaml")


def test_online_retail_accounting(tmp_path: Path) -> None:
    cfg = _config("online_retail", tmp_path, "online-retail/online_retail.csv.gz")
    s = run_ingest(cfg).summary
    totals = s["totals"]
    assert totals["read"] == 541_909
    assert totals["accepted"] + totals["rejected"] == totals["read"]
    # README: 135,080 lines without a customer; cleaned (customer, no cancellation, qty > 0, price > 0) = 397,884
    assert s["rejected_by_reason"]["missing_user_id"] == 135_080
    assert totals["accepted"] == 397_884
    assert s["rejected_by_reason"] == {"cancelled": 8_905, "missing_user_id": 135_080, "non_positive_price": 40}
    interactions = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert interactions[Columns.User].n_unique() == 4_338 and interactions[Columns.Item].n_unique() == 3_665
    assert interactions.height == totals["accepted"] - totals["duplicates"]
    assert interactions[Columns.User].str.contains(r"\.").sum() == 0  # 17850.0 -> 17850
    items = pl.read_parquet(cfg.stage_dir("ingest") / "items.parquet")
    assert items.height == 4_070 and items.columns == [Columns.Item, "description", "price"]
    assert s["catalogue"]["items"]["missing_from_table"] == 0
    assert pl.read_parquet(cfg.stage_dir("ingest") / "rejected.parquet").height == totals["rejected"]
    assert s["warnings"] == []  # the cancellation rule takes the returns out


def test_online_retail_without_a_cancellation_rule_warns_about_returns(tmp_path: Path) -> None:
    cfg = _config("online_retail", tmp_path, "online-retail/online_retail.csv.gz")
    raw = cfg.model_dump(exclude_unset=True)
    raw["data"]["interactions"].pop("cancellations")
    cfg = config_from_dict(raw, base_dir=REPO / "configs", source="configs/online_retail.yaml")
    warnings = run_ingest(cfg).summary["warnings"]
    assert len(warnings) == 1
    assert warnings[0].startswith("8,841 accepted rows have a negative value ('Quantity')")


def test_movielens_ingest_and_preprocess(tmp_path: Path) -> None:
    cfg = _config("movielens", tmp_path, "ml-latest-small/ratings.csv")
    s = run_ingest(cfg).summary
    assert s["totals"]["read"] == 100_836 and s["totals"]["rejected"] == 0
    interactions = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert interactions[Columns.User].n_unique() == 610 and interactions[Columns.Item].n_unique() == 9_724
    liked = s["events"]["liked"]
    ratings = pl.read_csv(SHARED / "ml-latest-small" / "ratings.csv")
    assert liked == ratings.filter(pl.col("rating") >= 4).height
    p = run_preprocess(cfg).summary
    assert p["weights"]["zero_weight_events_dropped"] == s["events"]["rated"]
    assert p["n_items"] >= 9_742 and p["n_cold_items"] > 0  # every catalogue movie keeps an index
    genres = pl.read_parquet(cfg.stage_dir("preprocess") / "item_feature_names.parquet")
    assert "genres=Comedy" in genres["feature"].to_list()
