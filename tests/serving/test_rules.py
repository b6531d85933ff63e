"""Business rules resolved against the catalogue: item mask, stock, price, MMR similarity.

How the rules apply to lists (caps, MMR, exclusions, the fallback chain) is tested with the fill
step in ``test_fill.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recctl.config.recommend import RulesConfig
from recctl.errors import ConfigError
from recctl.rules import build_item_rules, read_id_list


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


def test_mmr_similarity_from_wide_features_is_projected(shop: dict[str, pl.DataFrame]) -> None:
    import scipy.sparse as sp

    feats = sp.random(30, 1000, density=0.05, format="csr", random_state=0, dtype=np.float32)
    out = build_item_rules(rules(diversity_lambda=0.5), shop["items"], item_features=feats)
    assert out.mmr_vectors.shape == (30, 128)
    norms = np.linalg.norm(out.mmr_vectors, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="MMR needs a notion of item similarity"):
        build_item_rules(rules(diversity_lambda=0.5), shop["items"])
