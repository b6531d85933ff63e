"""Spreadsheet exports (Online Retail II ships as a two-sheet .xlsx) read through a config alone."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from recctl.errors import DataError
from recctl.stages.ingest import run_ingest
from tests.data.conftest import make_config

pytest.importorskip("fastexcel", reason="spreadsheets need the optional extra recctl[excel] (fastexcel)")

runner = CliRunner()
WORKBOOK = Path(__file__).parent / "fixtures" / "online_retail_II_sample.xlsx"


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    return Path(shutil.copy(WORKBOOK, tmp_path / WORKBOOK.name))


def _source(sheet: str | int | None = "Year 2010-2011") -> dict:
    return {
        "path": WORKBOOK.name,
        "sheet": sheet,
        "columns": {"user_id": "Customer ID", "item_id": "StockCode", "timestamp": "InvoiceDate", "value": "Quantity"},
        "timestamp_format": "%Y-%m-%d %H:%M:%S",
        "default_event": "purchase",
        "cancellations": {"column": "Invoice", "prefix": "C"},
        "require": [{"column": "Price", "op": ">", "value": 0, "reason": "non_positive_price"}],
    }


def test_sheet_by_name_every_row_accounted_for(workbook: Path, tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        _source(),
        items={
            "path": WORKBOOK.name,
            "sheet": 2,
            "id_column": "StockCode",
            "columns": {"title": "Description", "price": "Price"},
        },
    )
    s = run_ingest(cfg).summary
    (f,) = s["files"]
    assert (f["read"], f["accepted"], f["duplicates"]) == (7, 6, 1)
    assert f["rejected_by_reason"] == {"missing_user_id": 1}  # its price is 0 too: the first reason wins
    events = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert events[Columns.User].unique().sort().to_list() == ["13047", "17850"]  # 17850.0 cells read as 17850
    assert str(events[Columns.Timestamp][0]) == "2010-12-01 08:26:00+00:00"  # an Excel date cell
    items = pl.read_parquet(cfg.stage_dir("ingest") / "items.parquet")
    assert items.schema["price"] == pl.Float64 and items.height == 6


def test_sheet_by_position_and_the_default_first_sheet(workbook: Path, tmp_path: Path) -> None:
    by_position = run_ingest(make_config(tmp_path / "a", {**_source(2), "path": str(workbook)})).summary
    by_name = run_ingest(make_config(tmp_path / "b", {**_source(), "path": str(workbook)})).summary
    assert by_position["totals"] == by_name["totals"]
    first = run_ingest(make_config(tmp_path / "c", {**_source(None), "path": str(workbook)})).summary
    assert first["rejected_by_reason"] == {"cancelled": 1, "missing_user_id": 1}  # the 2009-2010 sheet


def test_unknown_sheet_lists_the_sheets(workbook: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no sheet 'Year 2011'.*Year 2009-2010, Year 2010-2011"):
        run_ingest(make_config(tmp_path, {**_source("Year 2011"), "path": str(workbook)}))


def test_not_a_spreadsheet(tmp_path: Path) -> None:
    (tmp_path / "fake.xlsx").write_text("Invoice,StockCode\n1,2\n")
    with pytest.raises(DataError, match=r"fake.xlsx: not a readable spreadsheet"):
        run_ingest(make_config(tmp_path, {**_source(None), "path": "fake.xlsx"}))


def test_without_the_extra_exit_6(workbook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_fastexcel(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "fastexcel":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastexcel)
    config = tmp_path / "config.yaml"
    raw = {"workdir": "work", "data": {"interactions": _source()}, "models": {"pop": {"kind": "popularity"}}}
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["ingest", str(config)])
    assert result.exit_code == 6
    assert "pip install 'recctl[excel]'" in result.stderr
