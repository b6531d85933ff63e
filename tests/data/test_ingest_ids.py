"""Ids the export formats cannot carry are rejected at ingest, row by row, with a reason (issue 15, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.data.ingest import unexportable_id
from recctl.stages.ingest import run_ingest
from tests.data.conftest import EVENTS_HEADER, make_config, shop_source, write_yaml


def test_which_ids_cannot_round_trip() -> None:
    ids = ["-5", "'-5", "'=1", "'@x", "'plain", "a\x00b", "new\nline", "tab\there", "del\x7f", "Ünï", "=1+1", None]
    flagged = pl.DataFrame({"id": pl.Series(ids, dtype=pl.String)}).select(unexportable_id(pl.col("id")))["id"]
    assert dict(zip(ids, flagged.to_list(), strict=True)) == {
        "-5": False,  # the CSV guard writes '-5 and an importer reads back -5: fine
        "'-5": True,  # would read back as -5: collides with the real -5
        "'=1": True,
        "'@x": True,
        "'plain": False,  # a leading ' before anything else is left alone by the guard
        "a\x00b": True,
        "new\nline": True,
        "tab\there": True,
        "del\x7f": True,
        "Ünï": False,
        "=1+1": False,
        None: False,
    }


def test_ingest_rejects_unexportable_ids_with_a_reason_per_row(tmp_path: Path) -> None:
    rows = [
        "-5,i1,view,2026-01-01 10:00:00,1",
        "'-5,i1,view,2026-01-01 10:01:00,1",  # reads back as -5 from a CSV export
        '"nul\x00id",i1,view,2026-01-01 10:02:00,1',
        "u1,'=2,view,2026-01-01 10:03:00,1",
        "u1,i2,purchase,2026-01-02 10:00:00,1",
    ]
    (tmp_path / "events.csv").write_text(EVENTS_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "products.csv").write_text("product_id,title\ni1,a\ni2,b\n'+3,c\n", encoding="utf-8")
    (tmp_path / "customers.csv").write_text("customer_id,segment\nu1,x\n'@u9,y\n", encoding="utf-8")
    cfg = make_config(
        tmp_path,
        shop_source(),
        items={"path": "products.csv", "id_column": "product_id"},
        users={"path": "customers.csv", "id_column": "customer_id"},
    )
    manifest = run_ingest(cfg)
    (f,) = manifest.summary["files"]
    assert f["rejected_by_reason"] == {"bad_user_id": 2, "bad_item_id": 1}
    rejected = pl.read_parquet(cfg.stage_dir("ingest") / "rejected.parquet")
    got = sorted((r["row"], r["reason"], r["column"], r["value"]) for r in rejected.iter_rows(named=True))
    assert (2, "bad_user_id", "customer_id", "'-5") in got
    assert (3, "bad_user_id", "customer_id", "nul\x00id") in got
    assert (4, "bad_item_id", "product_id", "'=2") in got
    assert (3, "bad_item_id", "product_id", "'+3") in got  # the catalogue's row
    assert (2, "bad_user_id", "customer_id", "'@u9") in got  # the customer file's row
    interactions = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert sorted(interactions["user_id"].unique().to_list()) == ["-5", "u1"]
    items = pl.read_parquet(cfg.stage_dir("ingest") / "items.parquet")["item_id"].to_list()
    assert "'+3" not in items and sorted(items) == ["i1", "i2"]
    users = pl.read_parquet(cfg.stage_dir("ingest") / "users.parquet")["user_id"].to_list()
    assert users == ["u1"]
    tables = {t["table"]: t["files"][0]["rejected_by_reason"] for t in manifest.summary["tables"]}
    assert tables == {"data.items": {"bad_item_id": 1}, "data.users": {"bad_user_id": 1}}


def test_under_on_error_fail_the_row_and_reason_are_named(tmp_path: Path) -> None:
    rows = ["u1,i1,view,2026-01-01 10:00:00,1", "'-5,i1,view,2026-01-01 10:01:00,1"]
    (tmp_path / "events.csv").write_text(EVENTS_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    config = write_yaml(tmp_path, shop_source(on_error="fail"))
    result = CliRunner().invoke(app, ["ingest", str(config), "--json"])
    assert result.exit_code == 4, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert "row 2" in message and "bad user id" in message.replace("_", " ") and "'-5" in message
