"""Business rules: item mask, exclusions by event, caps, MMR, backfill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.config.recommend import RulesConfig
from recctl.errors import ConfigError
from recctl.rules import ItemRules, apply_list_rules, backfill, build_exclusions, build_item_rules, read_id_list


def rules(**kw: object) -> RulesConfig:
    return RulesConfig.model_validate(kw)


def test_item_mask_from_lists_stock_and_price(tmp_path: Path, shop: dict[str, pl.DataFrame]) -> None:
    (tmp_path / "deny.txt").write_text("P001\n# retired\nP002  # comment\n\n")
    (tmp_path / "allow.csv").write_text("item_id,note\n" + "\n".join(f"P{i:03d},x" for i in range(20)) + "\nGHOST,x\n")
    out = build_item_rules(
        rules(deny_list="deny.txt", allow_list="allow.csv", in_stock_column="in_stock", require_price=True),
        shop["items"],
        resolve=lambda p: tmp_path / p,
    )
    allowed = set(np.flatnonzero(out.item_mask).tolist())
    assert allowed == set(range(20)) - {1, 2, 5, 6, 7, 8}
    assert out.excluded == {"allow_list": 10, "deny_list": 2, "out_of_stock": 2, "no_price": 2}


def test_in_stock_text_values(shop: dict[str, pl.DataFrame]) -> None:
    items = shop["items"].with_columns(pl.Series("stock", ["yes", "no", "0", None, "FALSE", "true"] * 5))
    mask = build_item_rules(rules(in_stock_column="stock"), items).item_mask
    assert mask[:6].tolist() == [True, False, False, True, False, True]


def test_missing_catalogue_column_names_key(shop: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(
        ConfigError, match=r"recommend.rules.in_stock_column: the catalogue has no column 'stock'.*category"
    ):
        build_item_rules(rules(in_stock_column="stock"), shop["items"])


def test_read_id_list_csv_needs_item_column(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="needs an 'item_id' column"):
        read_id_list(tmp_path / "l.csv", "recommend.rules.deny_list")
    with pytest.raises(ConfigError, match="file not found"):
        read_id_list(tmp_path / "none.txt", "recommend.rules.deny_list")


def _write_pre(tmp_path: Path, shop: dict[str, pl.DataFrame]) -> Path:
    for name in ("events", "train", "test"):
        shop[name].write_parquet(tmp_path / f"{name}.parquet")
    return tmp_path


def test_exclusions_all_history_or_only_purchases(tmp_path: Path, shop: dict[str, pl.DataFrame]) -> None:
    pre = _write_pre(tmp_path, shop)
    ev = shop["events"]
    everything = build_exclusions(rules(), pre, 40, 30)
    assert everything.nnz == ev.select(Columns.UserIdx, Columns.ItemIdx).unique().height  # train + test
    bought = build_exclusions(rules(exclude_events=["purchase"]), pre, 40, 30)
    purchases = ev.filter(pl.col(Columns.Event) == "purchase").select(Columns.UserIdx, Columns.ItemIdx).unique()
    assert bought.nnz == purchases.height < everything.nnz
    assert build_exclusions(rules(), pre, 40, 30, exclude_seen=False) is None
    with pytest.raises(ConfigError, match=r"event\(s\) \['refund'\] never occur.*purchase, view"):
        build_exclusions(rules(exclude_events=["refund"]), pre, 40, 30)


def test_category_cap_keeps_order_and_limit() -> None:
    r = ItemRules(cap_codes=np.array([0, 0, 0, 1, 1, 2]), cap=2)
    items = np.array([[0, 1, 2, 3, 4, 5], [2, -1, -1, -1, -1, -1]])
    scores = np.array([[6, 5, 4, 3, 2, 1], [1, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf]], np.float32)
    out, sc = apply_list_rules(items, scores, 4, r)
    assert out.tolist() == [[0, 1, 3, 4], [2, -1, -1, -1]]
    assert sc[0].tolist() == [6, 5, 3, 2]


def test_mmr_promotes_a_different_category() -> None:
    r = ItemRules(mmr_lambda=0.7, mmr_codes=np.array([0, 0, 0, 1]))
    items = np.array([[0, 1, 2, 3]])
    scores = np.array([[1.0, 0.99, 0.98, 0.5]], np.float32)
    out, _ = apply_list_rules(items, scores, 2, r)
    assert out.tolist() == [[0, 3]]
    plain, _ = apply_list_rules(items, scores, 2, ItemRules(mmr_lambda=0.0))
    assert plain.tolist() == [[0, 1]]


def test_backfill_fills_to_k_skipping_duplicates_and_caps() -> None:
    r = ItemRules(cap_codes=np.array([0, 0, 1, 1, 2, 2]), cap=1)
    items = np.array([[0, -1, -1], [2, 4, 0]])
    scores = np.array([[1.0, -np.inf, -np.inf], [3, 2, 1]], np.float32)
    sources = np.zeros((2, 3), np.int16)
    backfill(
        items,
        scores,
        sources,
        np.array([0]),
        np.array([[0, 1, 2, 3, 4]]),
        np.array([[9, 8, 7, 6, 5]], np.float32),
        1,
        r,
    )
    assert items[0].tolist() == [0, 2, 4]  # 0 duplicate, 1 and 3 over the cap
    assert sources[0].tolist() == [0, 1, 1]
    assert items[1].tolist() == [2, 4, 0]  # full lists untouched


def test_mmr_similarity_from_wide_features_is_projected(shop: dict[str, pl.DataFrame]) -> None:
    import scipy.sparse as sp

    feats = sp.random(30, 1000, density=0.05, format="csr", random_state=0, dtype=np.float32)
    out = build_item_rules(rules(diversity_lambda=0.5), shop["items"], item_features=feats)
    assert out.mmr_vectors.shape == (30, 128)
    norms = np.linalg.norm(out.mmr_vectors, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="MMR needs a notion of item similarity"):
        build_item_rules(rules(diversity_lambda=0.5), shop["items"])
