"""A normalised shop export (order lines, orders, customers; Olist's layout) read through lookups."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from recctl.errors import DataError
from recctl.stages.ingest import ingest_inputs, run_ingest
from tests.data.conftest import make_config

runner = CliRunner()


@pytest.fixture
def olist(tmp_path: Path) -> Path:
    (tmp_path / "order_items.csv").write_text(
        "order_id,order_item_id,product_id,price\n"
        "o1,1,p1,10.0\n"
        "o1,2,p2,5.5\n"
        "o2,1,p1,10.0\n"
        "o3,1,p3,7.0\n"
        "o9,1,p2,5.5\n"  # an order missing from orders.csv
        "o4,1,p3,7.0\n"
    )
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,order_status,order_purchase_timestamp\n"
        "o1,c1,delivered,2017-10-02 10:56:33\n"
        "o2,c2,delivered,2018-07-24 20:41:37\n"
        "o3,c3,delivered,2018-08-08 08:38:49\n"
        "o4,c4,canceled,2018-08-09 09:00:00\n"
    )
    # c1 and c3 are the same person with two accounts
    pl.DataFrame(
        {"customer_id": ["c1", "c2", "c3", "c4"], "customer_unique_id": ["u1", "u2", "u1", "u4"]}
    ).write_parquet(tmp_path / "customers.parquet")
    return tmp_path


def _source(**extra: object) -> dict:
    return {
        "path": "order_items.csv",
        "lookups": [
            {"path": "orders.csv", "on": "order_id"},
            {"path": "customers.parquet", "on": "customer_id"},
        ],
        "columns": {
            "user_id": "customer_unique_id",
            "item_id": "product_id",
            "timestamp": "order_purchase_timestamp",
            "value": "price",
        },
        "default_event": "purchase",
        "cancellations": {"column": "order_status", "prefix": "canceled"},
        **extra,
    }


def test_order_lines_joined_to_orders_and_customers(olist: Path) -> None:
    cfg = make_config(olist, _source())
    s = run_ingest(cfg).summary
    (f,) = s["files"]
    assert (f["read"], f["accepted"]) == (6, 4)
    assert f["rejected_by_reason"] == {"missing_user_id": 1, "cancelled": 1}  # o9 unmatched, o4 cancelled
    events = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert events.select(Columns.User, Columns.Item).rows() == [("u1", "p1"), ("u1", "p2"), ("u2", "p1"), ("u1", "p3")]
    assert events[Columns.Value].to_list() == [10.0, 5.5, 10.0, 7.0]
    rejected = pl.read_parquet(cfg.stage_dir("ingest") / "rejected.parquet")
    assert rejected.sort("row").select("row", "reason").rows() == [(5, "missing_user_id"), (6, "cancelled")]
    # the lookups are inputs: changing one makes ingest stale
    assert {p.name for p in ingest_inputs(cfg)} >= {"orders.csv", "customers.parquet"}


def test_duplicate_lookup_key_is_refused(olist: Path) -> None:
    with (olist / "orders.csv").open("a") as fh:
        fh.write("o2,c9,delivered,2018-07-25 10:00:00\n")
    with pytest.raises(DataError, match=r"lookups.0: key 'order_id' is not unique in the lookup .* e.g. 'o2'"):
        run_ingest(make_config(olist, _source()))


def test_lookup_column_clash_and_missing_key_are_named(olist: Path) -> None:
    src = _source()
    src["lookups"][0]["columns"] = ["customer_id", "price"]
    with pytest.raises(DataError, match=r"column 'price' \(mapped by data.interactions.lookups.0.columns.1\)"):
        run_ingest(make_config(olist, src))
    (olist / "prices.csv").write_text("order_id,price\no1,1\n")
    clash = _source()
    clash["lookups"].append({"path": "prices.csv", "on": "order_id"})
    with pytest.raises(DataError, match=r"lookups.2: column\(s\) price of the lookup are already in order_items.csv"):
        run_ingest(make_config(olist, clash))
    wrong = _source()
    wrong["lookups"][1]["left_on"] = "customer"
    with pytest.raises(DataError, match=r"column 'customer' \(data.interactions.lookups.1.left_on\) is not in"):
        run_ingest(make_config(olist, wrong))


def test_lookups_through_the_cli(olist: Path) -> None:
    config = olist / "config.yaml"
    raw = {"workdir": "work", "data": {"interactions": _source()}, "models": {"pop": {"kind": "popularity"}}}
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["ingest", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["totals"]["interactions"] == 4
    raw["data"]["interactions"]["lookups"][0]["path"] = "nowhere.csv"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["ingest", str(config)])
    assert result.exit_code == 3
    assert "data.interactions.lookups.0.path" in result.stderr
