"""Synthetic shops for the incremental-update tests (small: each test runs in seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from recctl.data.dataset import Dataset
from recctl.data.sample import interactions_source


def make_shop(n_users: int = 400, n_items: int = 120, n_cats: int = 6, seed: int = 0) -> dict:
    """Users who buy within one favourite category; items described by a one-hot category."""
    rng = np.random.default_rng(seed)
    item_cat = np.arange(n_items) % n_cats
    user_cat = rng.integers(0, n_cats, n_users)
    pop = rng.pareto(1.5, n_items) + 1.0
    rows, cols = [], []
    for u in range(n_users):
        same = np.nonzero(item_cat == user_cat[u])[0]
        p = pop[same] / pop[same].sum()
        chosen = rng.choice(same, size=min(len(same), int(rng.integers(4, 10))), replace=False, p=p)
        rows += [u] * len(chosen)
        cols += chosen.tolist()
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    feats = sp.csr_matrix((np.ones(n_items, np.float32), (np.arange(n_items), item_cat)), shape=(n_items, n_cats))
    return {"x": x, "item_cat": item_cat, "user_cat": user_cat, "item_features": feats}


def dataset(x: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> Dataset:
    """A Dataset over index space with ids ``u<i>`` / ``i<j>``."""
    n_users, n_items = x.shape
    return Dataset(
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=np.array([f"i{j}" for j in range(n_items)], dtype=object),
        interactions=sp.csr_matrix(x, dtype=np.float32),
        item_features=item_features,
        item_feature_names=None if item_features is None else [f"cat={c}" for c in range(item_features.shape[1])],
    )


@pytest.fixture()
def shop() -> dict:
    return make_shop()


@pytest.fixture()
def make_dataset():
    """The :func:`dataset` factory (Dataset over index space)."""
    return dataset


@pytest.fixture()
def make_shop_fn():
    """The :func:`make_shop` factory, for tests that need another size or seed."""
    return make_shop


def _write_tiny_shop(root: Path) -> dict:
    """A generated shop split into a base export and one later day (with new users and items)."""
    import polars as pl

    from recctl.data.sample import SampleSizes, generate_sample

    generate_sample(root / "raw", seed=3, sizes=SampleSizes(n_users=400, n_items=150, n_brands=10, n_days=30))
    events = pl.read_csv(root / "raw" / "events.csv", infer_schema=False)
    day = pl.col("event_time").str.slice(0, 10)
    dates = sorted(d for d in events.select(day.unique()).to_series().drop_nulls().to_list() if d[:2] == "20")
    last = dates[-1]
    products = pl.read_csv(root / "raw" / "products.csv", infer_schema=False)
    held = products["product_id"].tail(3).to_list()  # products launched on the last day
    base = events.filter((day != last) & ~pl.col("product_id").is_in(held))
    batch = events.filter(day == last)
    # a few customers discover the new products on that day
    buyers = batch["customer_id"].unique().sort().head(6).to_list()
    launch = pl.DataFrame(
        {
            "customer_id": [u for u in buyers for _ in held],
            "product_id": held * len(buyers),
            "event_type": "view",
            "event_time": f"{last} 23:00:00",
            "quantity": "1",
        }
    )
    base.write_csv(root / "base.csv")
    pl.concat([batch, launch]).write_csv(root / "day.csv")
    products.filter(~pl.col("product_id").is_in(held)).write_csv(root / "products.csv")
    config = {
        "name": "tiny",
        "workdir": str(root / "work"),
        "seed": 11,
        "data": {
            "interactions": interactions_source(str(root / "base.csv"), on_error="quarantine"),
            "items": {
                "path": str(root / "products.csv"),
                "id_column": "product_id",
                "columns": {
                    "title": "title",
                    "category": "category",
                    "brand": "brand",
                    "price": "price",
                },
            },
        },
        "preprocess": {
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "split": {"strategy": "time", "test_fraction": 0.2, "valid_fraction": 0.1},
            "features": {"item_categorical": ["category", "brand"]},
        },
        "models": {
            "popular": {"kind": "popularity"},
            "knn": {"kind": "item_knn", "neighbors": 30},
            "lfm": {"kind": "lightfm", "loss": "warp", "no_components": 16, "epochs": 8},
        },
        "recommend": {"model": "lfm", "k": 5, "fallback": ["popular"]},
        "export": {"format": "csv", "delta": True},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return {"config": path, "day": root / "day.csv", "held": held}


@pytest.fixture(scope="session")
def tiny_shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config + files of a tiny shop: base export and a day to append (:func:`_write_tiny_shop`)."""
    return _write_tiny_shop(tmp_path_factory.mktemp("tiny-shop"))
