"""A small workdir with preprocess outputs and trained models, built without ingest/preprocess.

Users have a favourite category; the ``by_category`` popularity model knows it and the
plain ``popular`` model does not, so the evaluation has a real difference to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import yaml

from recctl.columns import Columns
from recctl.config import load_config
from tests.fake_stages import write_preprocess_stage

N_USERS, N_ITEMS, N_CATS = 240, 60, 4


def _interactions(
    rng: np.random.Generator,
    taste: np.ndarray,
    item_cat: np.ndarray,
    popularity: np.ndarray,
    n_per_user: int,
    exclude: set[tuple[int, int]],
) -> pl.DataFrame:
    rows = []
    sizes = rng.integers(max(1, n_per_user // 3), 2 * n_per_user, N_USERS) if n_per_user > 3 else [n_per_user] * N_USERS
    for u in range(N_USERS):
        p = popularity * np.where(item_cat == taste[u], 6.0, 1.0)
        p = p / p.sum()
        for i in rng.choice(N_ITEMS, size=int(sizes[u]), replace=False, p=p):
            if (u, int(i)) not in exclude:
                rows.append((u, int(i), float(rng.integers(1, 6))))
    return pl.DataFrame(
        rows,
        schema={Columns.UserIdx: pl.Int64, Columns.ItemIdx: pl.Int64, Columns.Weight: pl.Float64},
        orient="row",
    )


def build_workdir(
    tmp_path: Path,
    evaluate: dict | None = None,
    models: dict | None = None,
    n_train: int = 8,
    n_test: int = 3,
    features: bool = True,
    train: bool = True,
    cold_users: int = 0,
) -> Path:
    """Write a config, preprocess outputs and trained models; return the config path."""
    rng = np.random.default_rng(7)
    item_cat = np.arange(N_ITEMS) % N_CATS
    popularity = 1.0 / (1.0 + np.arange(N_ITEMS)) ** 0.8
    taste = rng.integers(0, N_CATS, N_USERS)
    (tmp_path / "events.csv").write_text("u,i,t\n")
    cfg_raw = {
        "name": "evaltest",
        "workdir": "work",
        "seed": 3,
        "data": {
            "interactions": {
                "path": "events.csv",
                "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
            }
        },
        "models": models
        or {
            "popular": {"kind": "popularity"},
            "by_category": {"kind": "popularity", "mode": "category"},
        },
        "evaluate": evaluate
        or {
            "k": [5, 10],
            "metrics": ["precision", "recall", "ndcg", "map"],
            "baseline": "popular",
            "n_bootstrap": 200,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg_raw, sort_keys=False))
    cfg = load_config(path)

    train_rows = _interactions(rng, taste, item_cat, popularity, n_train, set())
    if cold_users:  # the last users only appear in test: "new" users
        train_rows = train_rows.filter(pl.col(Columns.UserIdx) < N_USERS - cold_users)
    seen = set(
        zip(
            train_rows[Columns.UserIdx].to_list(),
            train_rows[Columns.ItemIdx].to_list(),
            strict=True,
        )
    )
    test = _interactions(rng, taste, item_cat, popularity, n_test, seen)
    users = pl.DataFrame({Columns.User: [f"u{u}" for u in range(N_USERS)], Columns.UserIdx: np.arange(N_USERS)})
    items = pl.DataFrame(
        {
            Columns.Item: [f"i{i}" for i in range(N_ITEMS)],
            Columns.ItemIdx: np.arange(N_ITEMS),
            "category": [f"c{c}" for c in item_cat],
        }
    )
    splits = {"train": train_rows, "test": test, "tune_train": train_rows, "valid": test}
    frames = {"users": users, "items": items, **splits}
    item_features = None
    if features:
        matrix = sp.csr_matrix((np.ones(N_ITEMS), (np.arange(N_ITEMS), item_cat)), shape=(N_ITEMS, N_CATS))
        item_features = (matrix, [f"category=c{c}" for c in range(N_CATS)])
    write_preprocess_stage(cfg, frames, item_features)
    if train:
        from recctl.stages.train import run_train

        run_train(cfg)
    return path


@pytest.fixture
def eval_config(tmp_path: Path) -> Path:
    """Config path of a ready-to-evaluate workdir (preprocess + train done)."""
    return build_workdir(tmp_path)
