"""Catalogues exported one (id, property, value) row at a time: RetailRocket's item_properties files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recctl.columns import Columns
from recctl.errors import ConfigError
from recctl.stages.ingest import run_ingest
from tests.data.conftest import make_config, shop_source

PART1 = """timestamp,itemid,property,value
1435460400000,i1,categoryid,1338
1441508400000,i1,790,n5000.000
1439089200000,i2,categoryid,491
1431226800000,i1,available,1
1433041200000,i3,888,1154859 150169
1442113200000,,categoryid,12
1439694000000,i2,available,0
"""
PART2 = """timestamp,itemid,property,value
1436065200000,i1,categoryid,1277
1433646000000,i2,categoryid,209
1442113200000,i2,available,1
1433646000000,i4,available,1
"""


@pytest.fixture
def properties(tmp_path: Path) -> Path:
    (tmp_path / "item_properties_part1.csv").write_text(PART1)
    (tmp_path / "item_properties_part2.csv").write_text(PART2)
    return tmp_path


def _items(**extra: object) -> dict:
    return {
        "path": "item_properties_part*.csv",
        "id_column": "itemid",
        "long_format": {"property_column": "property", "value_column": "value", "time_column": "timestamp"},
        "columns": {"category": "categoryid", "available": "available"},
        **extra,
    }


def test_latest_value_of_each_named_property_per_item(properties: Path, events_csv: Path) -> None:
    cfg = make_config(properties, shop_source(str(events_csv)), items=_items())
    s = run_ingest(cfg).summary
    (table,) = s["tables"]
    assert [(f["read"], f["accepted"], f["rejected"]) for f in table["files"]] == [(7, 6, 1), (4, 4, 0)]
    items = pl.read_parquet(cfg.stage_dir("ingest") / "items.parquet")
    assert items.columns == [Columns.Item, "category", "available"]
    rows = {r[Columns.Item]: r for r in items.iter_rows(named=True)}
    # i1: categoryid 1338 was set 2015-06-28 in part 1, 1277 on 2015-07-05 in part 2: the later wins
    assert rows["i1"]["category"] == 1277 and rows["i1"]["available"] == 1
    assert rows["i2"]["category"] == 491 and rows["i2"]["available"] == 1  # part 2's later availability wins
    assert rows["i3"]["category"] is None  # only an unnamed property
    assert rows["i4"] == {Columns.Item: "i4", "category": None, "available": 1}
    assert items.schema["category"] == pl.Int64  # typed after the pivot


def test_without_a_time_column_the_last_row_wins(properties: Path, events_csv: Path) -> None:
    items = _items(long_format={"property_column": "property", "value_column": "value"})
    cfg = make_config(properties, shop_source(str(events_csv)), items=items)
    run_ingest(cfg)
    frame = pl.read_parquet(cfg.stage_dir("ingest") / "items.parquet")
    assert frame.filter(pl.col(Columns.Item) == "i2")["category"].item() == 209  # part 2, read after part 1


def test_long_format_needs_columns(properties: Path, events_csv: Path) -> None:
    with pytest.raises(ConfigError, match="long_format needs `columns`"):
        make_config(properties, shop_source(str(events_csv)), items=_items(columns={}))
