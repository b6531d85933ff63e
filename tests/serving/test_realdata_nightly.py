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


def _publish(tmp_path: Path, base: str, events: Path | None = None) -> pl.DataFrame:
    config = write_config(
        tmp_path,
        base=base,
        models=FAST_MODELS,
        recommend={"model": "knn", "k": K, "fallback": ["popular"], "min_score": 0.0},
        evaluate=None,
        tune=None,
    )
    if events is not None:
        import yaml

        raw = yaml.safe_load(config.read_text())
        raw["data"]["interactions"]["path"] = str(events)
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
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


LONG_ID = "L" + "x" * 19_999


def _online_retail_with_odd_customers(shared_data: Path, tmp_path: Path) -> Path:
    """The raw invoices plus: a crawler who bought every stock code but three, a 20,000-character
    customer id, a customer '-5' (fine: the CSV guard round-trips it) and two ids no export can
    carry ("'-5", which reads back as -5, and one with a NUL byte), rejected at ingest."""
    raw = pl.read_csv(shared_data / "online-retail" / "online_retail.csv.gz", infer_schema=False)
    codes = raw["StockCode"].str.strip_chars().drop_nulls().unique().sort().to_list()  # the whole catalogue
    template = raw.filter(pl.col("CustomerID").is_not_null() & ~pl.col("InvoiceNo").str.starts_with("C")).head(1)

    def lines(customer: str, stock: list[str]) -> pl.DataFrame:
        return pl.concat(
            [template.with_columns(pl.lit(customer).alias("CustomerID"), pl.lit(s).alias("StockCode")) for s in stock]
        )

    extra = pl.concat(
        [
            lines("CRAWLER", codes[:-3]),
            lines(LONG_ID, codes[:2]),
            lines("-5", codes[2:4]),
            lines("'-5", codes[4:6]),
            lines("nul\x00id", codes[6:8]),
        ]
    )
    path = tmp_path / "online_retail_odd.csv"
    pl.concat([raw, extra]).write_csv(path)
    return path


def test_online_retail_every_customer_never_a_repeat(tmp_path: Path, shared_data: Path) -> None:
    odd = _online_retail_with_odd_customers(shared_data, tmp_path)
    published = _publish(tmp_path, "online_retail.yaml", odd)
    raw = pl.read_csv(odd, infer_schema=False).filter(
        ~pl.col("CustomerID").is_in(["'-5", "nul\x00id"])  # refused by ingest, row by row
    )
    lines = raw.filter(
        pl.col("CustomerID").is_not_null()
        & ~pl.col("InvoiceNo").str.starts_with("C")
        & (pl.col("Quantity").cast(pl.Float64) > 0)
        & (pl.col("UnitPrice").cast(pl.Float64) > 0)
    )
    numeric = pl.col("CustomerID").cast(pl.Float64, strict=False)
    history = lines.select(
        pl.when(numeric.is_not_null())
        .then(numeric.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(pl.col("CustomerID"))
        .alias("user_id"),
        pl.col("StockCode").str.strip_chars().alias("item_id"),
    ).unique()
    _check(published, history)
    assert LONG_ID in set(published["user_id"].to_list()) and "-5" in set(published["user_id"].to_list())
    crawler = published.filter(pl.col("user_id") == "CRAWLER")
    assert 0 < crawler.height < K  # every eligible item it had not bought, and the file still published
    short = pl.read_csv(next((tmp_path / "work" / "exports").glob("*_short_lists_*.csv")), infer_schema=False)
    assert "CRAWLER" in short["user_id"].to_list()
    rejected = pl.read_parquet(tmp_path / "work" / "ingest" / "rejected.parquet")
    assert sorted(rejected.filter(pl.col("reason") == "bad_user_id")["value"].unique().to_list()) == [
        "'-5",
        "nul\x00id",
    ]


def test_movielens_every_rater_never_a_rated_movie(tmp_path: Path, shared_data: Path) -> None:
    published = _publish(tmp_path, "movielens.yaml")
    raw = pl.read_csv(shared_data / "ml-latest-small" / "ratings.csv", infer_schema=False)
    history = raw.select(pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id")).unique()
    _check(published, history)
