"""Fixtures of the A/B tests: experiment configs, config files, a tiny trained workdir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import yaml

from recctl.columns import Columns
from recctl.config.abtest import ABTestConfig


def make_experiment(weights: dict[str, float] | None = None, **extra: Any) -> ABTestConfig:
    """An experiment with the given arm weights (control = first arm)."""
    weights = weights or {"control": 1.0, "treatment": 1.0}
    raw = {
        "name": "exp",
        "salt": "salt-1",
        "control": next(iter(weights)),
        "variants": {name: {"model": "popular", "weight": w} for name, w in weights.items()},
        "n_bootstrap": 200,
        "outcomes": {
            "columns": {
                "user_id": "user_id",
                "event": "event",
                "item_id": "item_id",
                "revenue": "revenue",
                "timestamp": "timestamp",
            }
        },
        **extra,
    }
    return ABTestConfig.model_validate(raw)


@pytest.fixture
def experiment() -> ABTestConfig:
    """A 50/50 experiment with a 10 % holdout."""
    return make_experiment(holdout=0.1)


def write_ab_config(
    tmp_path: Path,
    experiment: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    evaluate: dict[str, Any] | None = None,
) -> Path:
    """Write a minimal config with an ``experiment:`` section into ``tmp_path``."""
    (tmp_path / "events.csv").write_text("u,i,t\n")
    raw: dict[str, Any] = {
        "name": "abtest",
        "workdir": "work",
        "seed": 5,
        "data": {
            "interactions": {
                "path": "events.csv",
                "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
            }
        },
        "models": models or {"popular": {"kind": "popularity"}, "other": {"kind": "popularity"}},
    }
    if evaluate:
        raw["evaluate"] = evaluate
    if experiment is not False:
        raw["experiment"] = experiment or {
            "name": "reco_v2",
            "salt": "s-2026",
            "control": "control",
            "holdout": 0.05,
            "start": "2026-12-01",
            "n_bootstrap": 200,
            "variants": {
                "control": {"model": "popular", "weight": 1},
                "treatment": {"model": "other", "weight": 1},
            },
            "outcomes": {
                "columns": {
                    "user_id": "user_id",
                    "event": "event",
                    "item_id": "item_id",
                    "revenue": "revenue",
                    "timestamp": "timestamp",
                }
            },
        }
    path = tmp_path / "ab.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def ab_config(tmp_path: Path) -> Path:
    """Path of a config with a two-variant experiment (5 % holdout)."""
    return write_ab_config(tmp_path)


N_USERS, N_ITEMS, N_CATS = 200, 40, 4


def build_trained_workdir(tmp_path: Path) -> Path:
    """Preprocess outputs + trained models for ``ab preview``: users prefer one category.

    ``by_category`` knows each user's favourite category and ``popular`` does not, so the
    treatment has a real offline advantage to find.
    """
    from recctl.config import load_config
    from recctl.stages.train import run_train
    from tests.fake_stages import write_preprocess_stage

    path = write_ab_config(
        tmp_path,
        models={
            "popular": {"kind": "popularity"},
            "by_category": {"kind": "popularity", "mode": "category"},
        },
        experiment={
            "name": "offline",
            "salt": "x",
            "control": "control",
            "variants": {
                "control": {"model": "popular", "weight": 1},
                "treatment": {"model": "by_category", "weight": 1},
            },
        },
        evaluate={"k": [5, 10], "metrics": ["precision", "ndcg", "coverage"], "n_bootstrap": 200},
    )
    cfg = load_config(path)
    rng = np.random.default_rng(11)
    item_cat = np.arange(N_ITEMS) % N_CATS
    popularity = 1.0 / (1.0 + np.arange(N_ITEMS)) ** 0.8
    taste = rng.integers(0, N_CATS, N_USERS)

    def draw(n: int, exclude: set[tuple[int, int]]) -> pl.DataFrame:
        rows = []
        for u in range(N_USERS):
            p = popularity * np.where(item_cat == taste[u], 8.0, 1.0)
            for i in rng.choice(N_ITEMS, size=n, replace=False, p=p / p.sum()):
                if (u, int(i)) not in exclude:
                    rows.append((u, int(i), 1.0))
        return pl.DataFrame(
            rows,
            schema={
                Columns.UserIdx: pl.Int64,
                Columns.ItemIdx: pl.Int64,
                Columns.Weight: pl.Float64,
            },
            orient="row",
        )

    train = draw(6, set())
    test = draw(3, set(zip(train[Columns.UserIdx].to_list(), train[Columns.ItemIdx].to_list(), strict=True)))
    users = pl.DataFrame({Columns.User: [f"u{u}" for u in range(N_USERS)], Columns.UserIdx: np.arange(N_USERS)})
    items = pl.DataFrame(
        {
            Columns.Item: [f"i{i}" for i in range(N_ITEMS)],
            Columns.ItemIdx: np.arange(N_ITEMS),
            "category": [f"c{c}" for c in item_cat],
        }
    )
    features = sp.csr_matrix((np.ones(N_ITEMS), (np.arange(N_ITEMS), item_cat)), shape=(N_ITEMS, N_CATS))
    write_preprocess_stage(
        cfg,
        {"users": users, "items": items, "train": train, "test": test, "tune_train": train, "valid": test},
        (features, [f"category=c{c}" for c in range(N_CATS)]),
    )
    run_train(cfg)
    return path
