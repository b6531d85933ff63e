"""The nightly file on real shop data, checked against the raw files by code independent of recctl.

For Online Retail (invoices) and MovieLens (ratings): the published file names exactly the
customers the raw file names (after the rows any reader of that file would drop: no customer,
cancellations, returns, free lines), every customer gets K items or all their eligible ones,
and no listed item is one the customer already had, read straight from the raw CSV.

Skipped when ``../shared/data`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import write_config

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
runner = CliRunner()
K = 10
FAST_MODELS = {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 50}}


def _publish(tmp_path: Path, base: str) -> pl.DataFrame:
    config = write_config(
        tmp_path,
        base=base,
        models=FAST_MODELS,
        recommend={"model": "knn", "k": K, "fallback": ["popular"], "min_score": 0.0},
        evaluate=None,
        tune=None,
    )
    for command in ("ingest", "preprocess", "train", "recommend", "serve-export"):
        result = runner.invoke(app, [command, str(config), "-q"])
        assert result.exit_code == 0, (command, result.output)
    exports = tmp_path / "work" / "exports"
    name = [p for p in exports.iterdir() if p.suffix == ".csv" and "_short_lists_" not in p.name and not p.is_symlink()]
    frame = pl.read_csv(name[0], infer_schema=False)
    # an importer strips the spreadsheet guard from ids that start like a formula
    return frame.with_columns(
        pl.col("user_id").str.replace(r"^'([=+\-@\t\r])", "$1"), pl.col("item_id").str.replace(r"^'([=+\-@\t\r])", "$1")
    )


def _check(published: pl.DataFrame, history: pl.DataFrame) -> None:
    customers = set(history["user_id"].unique().to_list())
    assert set(published["user_id"].unique().to_list()) == customers
    per_user = published.group_by("user_id").agg(pl.len().alias("n"), pl.col("item_id").n_unique().alias("u"))
    assert (per_user["n"] == per_user["u"]).all() and per_user["n"].max() == K
    short = per_user.filter(pl.col("n") < K)
    if short.height:  # only users who had almost the whole catalogue can be short
        sizes = history.join(short, on="user_id").group_by("user_id").agg(pl.col("item_id").n_unique())
        assert sizes["item_id"].min() > 1000
    had = published.join(history, on=["user_id", "item_id"], how="semi")
    assert had.height == 0, had.head()


def test_online_retail_every_customer_never_a_repeat(tmp_path: Path, shared_data: Path) -> None:
    published = _publish(tmp_path, "online_retail.yaml")
    raw = pl.read_csv(shared_data / "online-retail" / "online_retail.csv.gz", infer_schema=False)
    lines = raw.filter(
        pl.col("CustomerID").is_not_null()
        & ~pl.col("InvoiceNo").str.starts_with("C")
        & (pl.col("Quantity").cast(pl.Float64) > 0)
        & (pl.col("UnitPrice").cast(pl.Float64) > 0)
    )
    history = lines.select(
        pl.col("CustomerID").cast(pl.Float64).cast(pl.Int64).cast(pl.String).alias("user_id"),
        pl.col("StockCode").str.strip_chars().alias("item_id"),
    ).unique()
    _check(published, history)


def test_movielens_every_rater_never_a_rated_movie(tmp_path: Path, shared_data: Path) -> None:
    published = _publish(tmp_path, "movielens.yaml")
    raw = pl.read_csv(shared_data / "ml-latest-small" / "ratings.csv", infer_schema=False)
    history = raw.select(pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id")).unique()
    _check(published, history)
