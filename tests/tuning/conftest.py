"""Fixtures of the tuning tests: a small preprocessed workdir and a fake epoch-wise model.

The preprocess directory is written directly (the layout of ``recctl.data.dataset``), so these
tests do not depend on ingest/preprocess. Users have latent tastes (one of three item groups)
so that a personalised score beats popularity and parameters matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pytest
import yaml

from recctl.columns import Columns
from recctl.data.dataset import Dataset
from recctl.models.base import ModelConfig, Recommender
from recctl.models.registry import MODELS, register

N_USERS, N_ITEMS, N_GROUPS = 90, 45, 3


class FakeEpochConfig(ModelConfig):
    """Parameters of the fake epoch-wise model."""

    kind: Literal["fake_epochs"] = "fake_epochs"
    epochs: int = 12
    peak: int = 3
    taste: float = 0.0
    fail: bool = False
    random_state: int | None = None


class FakeEpochModel(Recommender):
    """Popularity + a taste term weighted by ``taste`` + noise that is smallest at epoch ``peak``.

    So the validation metric rises until ``peak`` and falls after it (early stopping must find
    ``peak``), and a higher ``taste`` scores better (tuning must find it).
    """

    config_class = FakeEpochConfig
    supports_epochs = True
    config: FakeEpochConfig

    def _prepare(self, dataset: Dataset) -> None:
        if self.config.fail:
            raise RuntimeError("fake model asked to fail")
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        mat = dataset.interactions
        self.pop_ = np.asarray((mat > 0).sum(axis=0)).ravel().astype(np.float32)
        self.pop_ /= max(self.pop_.max(), 1.0)
        groups = np.arange(self.n_items) % N_GROUPS
        onehot = np.eye(N_GROUPS, dtype=np.float32)[groups]
        taste = np.asarray(mat @ onehot)
        taste /= np.maximum(taste.sum(axis=1, keepdims=True), 1e-9)
        self.taste_ = (taste @ onehot.T).astype(np.float32)
        rng = np.random.default_rng(self.config.random_state or 0)
        self.noise_ = rng.random((self.n_users, self.n_items)).astype(np.float32)
        self.epoch_ = 0

    def iter_fit(self, dataset: Dataset):  # noqa: ANN201
        self._prepare(dataset)
        for epoch in range(1, self.config.epochs + 1):
            self.epoch_ = epoch
            self.is_fitted = True
            yield epoch

    def _fit(self, dataset: Dataset, progress: Any) -> None:
        for _ in self.iter_fit(dataset):
            pass

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        noise = abs(self.epoch_ - self.config.peak) * 2.0
        return self.pop_ + self.config.taste * self.taste_[user_idx] + noise * self.noise_[user_idx]


@pytest.fixture
def fake_epoch_model() -> Iterator[type[FakeEpochModel]]:
    """Register ``kind: fake_epochs`` for one test (removed afterwards: no leak into others)."""
    register("fake_epochs")(FakeEpochModel)
    try:
        yield FakeEpochModel
    finally:
        MODELS.pop("fake_epochs", None)


def _split_frames(seed: int = 7) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    group_of_user = rng.integers(N_GROUPS, size=N_USERS)
    item_group = np.arange(N_ITEMS) % N_GROUPS
    popularity = 1.0 / (1 + np.arange(N_ITEMS)) ** 0.7
    rows = {split: [] for split in ("tune_train", "valid", "test")}
    for u in range(N_USERS):
        weights = popularity * np.where(item_group == group_of_user[u], 6.0, 1.0)
        items = rng.choice(N_ITEMS, size=14, replace=False, p=weights / weights.sum())
        # the user's history in time order: first 10 tune_train, then 2 valid, then 2 test
        for pos, item in enumerate(items):
            split = "tune_train" if pos < 10 else ("valid" if pos < 12 else "test")
            rows[split].append((u, int(item), 1.0, pos))
    frames = {}
    for split, data in rows.items():
        frames[split] = pl.DataFrame(
            {
                Columns.UserIdx: [r[0] for r in data],
                Columns.ItemIdx: [r[1] for r in data],
                Columns.Weight: [r[2] for r in data],
                "last_ts": [r[3] for r in data],
            },
            schema={
                Columns.UserIdx: pl.Int64,
                Columns.ItemIdx: pl.Int64,
                Columns.Weight: pl.Float64,
                "last_ts": pl.Int64,
            },
        )
    frames["train"] = pl.concat([frames["tune_train"], frames["valid"]])
    return frames


def write_preprocess(config: Path) -> None:
    """Write finished ``ingest`` and ``preprocess`` stages (with manifests) for ``config``."""
    from recctl.config import load_config
    from tests.fake_stages import write_preprocess_stage

    users = pl.DataFrame({Columns.User: [f"u{i}" for i in range(N_USERS)], Columns.UserIdx: list(range(N_USERS))})
    items = pl.DataFrame(
        {
            Columns.Item: [f"i{i}" for i in range(N_ITEMS)],
            Columns.ItemIdx: list(range(N_ITEMS)),
            "category": [f"c{i % N_GROUPS}" for i in range(N_ITEMS)],
        }
    )
    write_preprocess_stage(load_config(config), {"users": users, "items": items, **_split_frames()})


def make_config(tmp_path: Path, *, models: dict[str, Any], tune: dict[str, Any] | None, seed: int = 42) -> Path:
    """Write ``tmp_path/cfg/config.yaml`` (relative paths) with a preprocessed workdir."""
    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "raw").mkdir(parents=True, exist_ok=True)
    (cfg_dir / "raw" / "events.csv").write_text("user,item,ts\n")
    raw: dict[str, Any] = {
        "name": "tune-test",
        "workdir": "../work",
        "seed": seed,
        "data": {
            "interactions": {
                "path": "raw/events.csv",
                "columns": {"user_id": "user", "item_id": "item", "timestamp": "ts"},
            }
        },
        "models": models,
        "evaluate": {"k": [5], "metrics": ["ndcg", "precision"], "n_bootstrap": 0},
    }
    if tune is not None:
        raw["tune"] = tune
    path = cfg_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    write_preprocess(path)
    return path


@pytest.fixture(name="make_config")
def make_config_fixture():  # noqa: ANN201
    """:func:`make_config`, for tests that build their own config."""
    return make_config


@pytest.fixture
def fake_config(tmp_path: Path, fake_epoch_model: type) -> Path:
    """A config tuning the fake epoch model's ``taste`` (a bad default of 0)."""
    return make_config(
        tmp_path,
        models={"fake": {"kind": "fake_epochs", "epochs": 10, "peak": 3, "taste": 0.0}},
        tune={
            "model": "fake",
            "method": "random",
            "n_trials": 5,
            "objective": "ndcg@5",
            "patience": 2,
            "space": {"taste": {"type": "float", "low": 0.5, "high": 3.0}},
        },
    )


@pytest.fixture
def pop_config(tmp_path: Path) -> Path:
    """A config tuning the popularity model (no epochs), with a space that makes some trials crash."""
    return make_config(
        tmp_path,
        models={"pop": {"kind": "popularity"}},
        tune={
            "model": "pop",
            "method": "grid",
            "n_trials": 6,
            "objective": "ndcg@5",
            "space": {
                "mode": {"type": "choice", "values": ["global", "category"]},
                "category_column": {"type": "choice", "values": ["category", "no_such_column"]},
            },
        },
    )
