from __future__ import annotations

from pathlib import Path

import polars as pl

from recctl.data.sample import SampleSizes, generate_sample, main


def test_generator_is_deterministic_and_shaped(tmp_path: Path) -> None:
    sizes = SampleSizes(n_users=60, n_items=40, n_brands=8)
    counts = generate_sample(tmp_path / "a", seed=3, sizes=sizes)
    generate_sample(tmp_path / "b", seed=3, sizes=sizes)
    for name in ("events.csv", "products.csv", "customers.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    events = pl.read_csv(tmp_path / "a" / "events.csv", infer_schema=False)
    assert events.columns == ["customer_id", "product_id", "event_type", "event_time", "quantity"]
    assert events.height == counts["events"]
    assert set(events["event_type"].drop_nulls()) == {"view", "add_to_cart", "purchase", "wishlist"}
    products = pl.read_csv(tmp_path / "a" / "products.csv")
    assert products.columns == ["product_id", "title", "description", "category", "brand", "price", "in_stock"]
    assert products.height == 40


def test_shipped_sample_matches_generator(tmp_path: Path, repo_root: Path) -> None:
    assert main(["--out", str(tmp_path), "--seed", "7"]) == 0
    for name in ("events.csv", "products.csv", "customers.csv"):
        assert (tmp_path / name).read_bytes() == (repo_root / "sample_data" / name).read_bytes(), name
    total = sum((repo_root / "sample_data" / n).stat().st_size for n in ("events.csv", "products.csv", "customers.csv"))
    assert total < 5 * 1024 * 1024
