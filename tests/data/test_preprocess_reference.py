"""The lean preprocess stage writes what the straightforward one wrote, file by file.

The stage codes ids as integers, filters on 64-bit pair keys and aggregates pair-ordered runs
(issue 18); :mod:`tests.data.preprocess_reference` is the stage as it was written before, over
string ids with a hash ``group_by`` per split file. On the shipped sample and on a generated
shop with many same-second events and repeated pairs, for every split strategy, with and
without decay, every aggregate: the id maps, ``events.parquet`` (rows and order) and the five
split files are equal, and so are the summary's weights, filter and split sections. Weights
are compared to 1e-12 relative: a sum of non-integer weights may differ in its last bit,
because the reference's hash ``group_by`` adds a pair's events in per-thread chunks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.config import Config, config_from_dict
from recctl.data.sample import interactions_source
from recctl.data.split import read_pairs_file
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess
from tests.data.preprocess_reference import reference_preprocess

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}

VARIANTS: dict[str, dict[str, Any]] = {
    "time": {"split": {"strategy": "time", "test_fraction": 0.2, "valid_fraction": 0.15}},
    "time-date-keep-cold": {
        "split": {"strategy": "time", "test_start": "{test_start}", "drop_cold_test_users": False},
        "aggregate": "max",
    },
    "user_time-decay-user": {
        "split": {"strategy": "user_time", "test_fraction": 0.2, "valid_fraction": 0.2},
        "half_life_days": 7,
        "min_user_interactions": 2,
        "min_item_interactions": 2,
    },
    "leave_last-kcore-last": {
        "split": {"strategy": "leave_last", "n_last": 1, "valid_n_last": 1},
        "aggregate": "last",
        "min_user_interactions": 3,
        "min_item_interactions": 3,
        "kcore": True,
    },
    "random-decay-train_end-log1p": {
        "split": {"strategy": "random", "test_fraction": 0.25, "valid_strategy": "time"},
        "half_life_days": 30,
        "decay_reference": "train_end",
        "use_value": True,
        "value_transform": "log1p",
    },
    "files": {"split": {"strategy": "files", "test_file": "test_pairs.csv", "valid_file": "valid_pairs.csv"}},
}


def _generated_shop(folder: Path) -> None:
    """3,000 customers, 900 products (100 never interacted), many same-second events and repeats."""
    rng = np.random.default_rng(11)
    n = 30_000
    users = rng.integers(0, 3_000, n)
    items = np.minimum((rng.pareto(1.2, n) * 40).astype(int), 799)
    # a few hundred distinct seconds over 60 days: many events share a timestamp
    start = dt.datetime(2026, 3, 1)
    seconds = np.sort(rng.integers(0, 400, n)) * 12_960
    kinds = np.array(["view", "add_to_cart", "purchase"])[rng.choice(3, n, p=[0.7, 0.2, 0.1])]
    lines = [
        f"C{u:05d},P{i:04d},{k},{(start + dt.timedelta(seconds=int(s))):%Y-%m-%d %H:%M:%S},{q}"
        for u, i, k, s, q in zip(users, items, kinds, seconds, rng.integers(1, 4, n), strict=True)
    ]
    (folder / "events.csv").write_text("customer_id,product_id,event_type,event_time,quantity\n" + "\n".join(lines))
    products = [f"P{i:04d},c{i % 7}" for i in range(900)]
    (folder / "products.csv").write_text("product_id,category\n" + "\n".join(products) + "\n")


def _pairs_files(folder: Path, events: Path) -> None:
    """Held-out pairs for ``strategy: files`` (the source's raw columns), one of unknown ids."""
    pairs = pl.read_csv(events, infer_schema=False).select("customer_id", "product_id").drop_nulls().unique()
    pairs = pairs.sort("customer_id", "product_id")
    test = pairs.gather_every(7)
    valid = pairs.gather_every(11, offset=3)
    unknown = pl.DataFrame({"customer_id": ["nobody"], "product_id": ["nothing"]})
    pl.concat([test, unknown]).write_csv(folder / "test_pairs.csv")
    valid.write_csv(folder / "valid_pairs.csv")


@pytest.fixture(scope="module", params=["sample", "generated"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ingested shop: its folder, the raw config without ``preprocess``, the median event day."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "sample":
        events, products = REPO / "sample_data" / "events.csv", REPO / "sample_data" / "products.csv"
    else:
        _generated_shop(folder)
        events, products = folder / "events.csv", folder / "products.csv"
    _pairs_files(folder, events)
    raw = {
        "workdir": str(folder / "work"),
        "seed": 5,
        "data": {
            "interactions": interactions_source(str(events)),
            "items": {"path": str(products), "id_column": "product_id"},
        },
        "models": {"popular": {"kind": "popularity"}},
    }
    run_ingest(_config(folder, raw, {"event_weights": WEIGHTS}))
    times = pl.read_parquet(folder / "work" / "ingest" / "interactions.parquet")[Columns.Timestamp]
    return {"folder": folder, "raw": raw, "test_start": times.sort()[int(times.len() * 0.75)].isoformat()}


def _config(folder: Path, raw: dict[str, Any], preprocess: dict[str, Any]) -> Config:
    return config_from_dict({**raw, "preprocess": preprocess}, base_dir=folder, source=str(folder / "config.yaml"))


def _held_out_ids(cfg: Config) -> dict[str, pl.DataFrame]:
    source = cfg.data.interaction_sources()[0]
    out = {}
    for split, key in (("test", "test_file"), ("valid", "valid_file")):
        name = getattr(cfg.preprocess.split, key)
        if name:
            out[split] = read_pairs_file(cfg.resolve(name), source, key)
    return out


def _same(name: str, got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.schema == want.schema, name
    assert got.height == want.height, name
    exact = [c for c in got.columns if c != Columns.Weight]
    assert got.select(exact).equals(want.select(exact)), f"{name}: rows differ"
    if Columns.Weight in got.columns:
        # events equal in every other column (same user, second, item and event type, with
        # values) may come in either order: neither sort orders them; compare their weights
        # as a set per tie
        got, want = got.sort(got.columns), want.sort(want.columns)
        np.testing.assert_allclose(got[Columns.Weight].to_numpy(), want[Columns.Weight].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_stage_writes_what_the_reference_wrote(shop: dict[str, Any], variant: str) -> None:
    preprocess = {"event_weights": WEIGHTS, **VARIANTS[variant]}
    split = dict(preprocess["split"])
    if split.get("test_start") == "{test_start}":
        split["test_start"] = shop["test_start"]
    preprocess["split"] = split
    cfg = _config(shop["folder"], shop["raw"], preprocess)
    manifest = run_preprocess(cfg)
    want, summary = reference_preprocess(cfg, _held_out_ids(cfg))
    out = cfg.stage_dir("preprocess")
    for name, frame in want.items():
        _same(name, pl.read_parquet(out / f"{name}.parquet"), frame)
    for key in ("filter", "split"):
        assert manifest.summary[key] == summary[key], key
    for key, value in summary["weights"].items():
        assert manifest.summary["weights"][key] == value, key
    # the variants exercise what they claim
    assert manifest.summary["split_rows"]["test"] > 0 and manifest.summary["split_rows"]["valid"] >= 0
    if variant.startswith("leave_last"):
        assert manifest.summary["filter"]["rounds"] >= 2
    if variant == "files":
        assert manifest.summary["split"]["test_pairs_listed"] > 0
