"""Fixtures for the serving tests: a small synthetic shop already preprocessed and trained.

The preprocess directory is written directly in its documented layout (see
``recctl/data/dataset.py``), so these tests exercise recommend / serve-export without
depending on ingest and preprocess; one test in ``test_cli.py`` runs the real pipeline.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from recctl.columns import Columns

N_USERS = 40
N_ITEMS = 30
CATEGORIES = ["shoes", "bags", "hats"]


def _shop(seed: int = 3) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    users = pl.DataFrame({Columns.User: [f"U{i:03d}" for i in range(N_USERS)], Columns.UserIdx: np.arange(N_USERS)})
    items = pl.DataFrame(
        {
            Columns.Item: [f"P{i:03d}" for i in range(N_ITEMS)],
            Columns.ItemIdx: np.arange(N_ITEMS),
            "category": [CATEGORIES[i % 3] for i in range(N_ITEMS)],
            # P005 has no price, P006 a zero price; P007 and P008 are out of stock
            "price": [None if i == 5 else (0.0 if i == 6 else 10.0 + i) for i in range(N_ITEMS)],
            "in_stock": [i not in (7, 8) for i in range(N_ITEMS)],
            "title": [f"item {i}" for i in range(N_ITEMS)],
        }
    )
    rows = []
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1)
    popularity /= popularity.sum()
    for u in range(N_USERS):
        n = int(rng.integers(2, 7))
        for j, it in enumerate(rng.choice(N_ITEMS, size=n, replace=False, p=popularity)):
            event = "purchase" if j % 3 == 0 else "view"
            split = "test" if j == n - 1 else ("valid" if j == n - 2 else "tune_train")
            rows.append(
                (u, int(it), event, start + dt.timedelta(days=int(u + j)), 5.0 if event == "purchase" else 1.0, split)
            )
    events = pl.DataFrame(
        rows,
        schema=[Columns.UserIdx, Columns.ItemIdx, Columns.Event, Columns.Timestamp, Columns.Weight, "split"],
        orient="row",
    )
    return shop_frames(users, items, events)


def shop_frames(users: pl.DataFrame, items: pl.DataFrame, events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The preprocess layout (splits aggregated per pair) for these users, items and labelled events."""
    out = {"users": users, "items": items, "events": events}

    def agg(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.group_by(Columns.UserIdx, Columns.ItemIdx)
            .agg(pl.col(Columns.Weight).sum(), pl.col(Columns.Timestamp).max().alias("last_ts"))
            .sort(Columns.UserIdx, Columns.ItemIdx)
        )

    out["train"] = agg(events.filter(pl.col("split") != "test"))
    out["test"] = agg(events.filter(pl.col("split") == "test"))
    out["tune_train"] = agg(events.filter(pl.col("split") == "tune_train"))
    out["valid"] = agg(events.filter(pl.col("split") == "valid"))
    out["all"] = agg(events)  # what the serving models refit on (recommend.refit_on_all_data)
    return out


def make_config(
    tmp_path: Path,
    *,
    recommend: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    experiment: dict[str, Any] | None = None,
) -> Path:
    """Write a config for the synthetic shop into ``tmp_path`` and return its path."""
    (tmp_path / "events.csv").write_text("user,item,ts\nU000,P000,2026-01-01\n")
    raw: dict[str, Any] = {
        "name": "serving-test",
        "workdir": "work",
        "seed": 1,
        "data": {
            "interactions": {"path": "events.csv", "columns": {"user_id": "user", "item_id": "item", "timestamp": "ts"}}
        },
        "models": models or {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 20}},
        "recommend": {"model": "knn", "k": 5, "fallback": ["popular"], **(recommend or {})},
        "export": {"format": "csv", **(export or {})},
    }
    if experiment:
        raw["experiment"] = experiment
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def build_workdir(config: Path, train: bool = True) -> None:
    """Write the preprocess stage for the synthetic shop and train the configured models."""
    from recctl.config import load_config
    from recctl.stages.train import run_train
    from tests.fake_stages import write_preprocess_stage

    cfg = load_config(config)
    write_preprocess_stage(cfg, _shop())
    if train:
        run_train(cfg)


@pytest.fixture
def shop_config(tmp_path: Path) -> Path:
    """A trained synthetic shop (popularity + item kNN); returns the config path."""
    config = make_config(tmp_path)
    build_workdir(config)
    return config


@pytest.fixture
def shop() -> dict[str, pl.DataFrame]:
    """The synthetic shop's frames (users, items, events, splits)."""
    return _shop()
