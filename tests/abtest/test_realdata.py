"""The A/B commands on a real shop export (UCI Online Retail) used as an orders log."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app

from .conftest import write_ab_config

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_aa_experiment_on_online_retail(shared_data: Path, tmp_path: Path) -> None:
    raw = shared_data / "online-retail" / "online_retail.csv.gz"
    config = write_ab_config(
        tmp_path,
        experiment={
            "name": "retail_aa",
            "salt": "retail-aa",
            "control": "control",
            "holdout": 0.1,
            "start": "2011-09-01",
            "end": "2011-12-01",
            "n_bootstrap": 300,
            "variants": {
                "control": {"model": "popular", "weight": 1},
                "treatment": {"model": "other", "weight": 1},
            },
            # an orders file: every row is a purchase line; UnitPrice stands in for revenue
            "outcomes": {
                "columns": {
                    "user_id": "CustomerID",
                    "event": None,
                    "revenue": "UnitPrice",
                    "timestamp": "InvoiceDate",
                }
            },
        },
    )
    runner = CliRunner()
    assigned = tmp_path / "assignments.parquet"
    result = runner.invoke(
        app,
        [
            "ab",
            "assign",
            str(config),
            "--users",
            str(raw),
            "--user-column",
            "CustomerID",
            "-o",
            str(assigned),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_users"] == 4372  # every customer id, guest rows skipped

    result = runner.invoke(app, ["ab", "report", str(config), "-a", str(assigned), "--outcomes", str(raw), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["srm"]["mismatch"] is False  # hash assignment of real ids matches the weights
    frame = pl.read_csv(raw, infer_schema=False).with_columns(pl.col("InvoiceDate").str.to_datetime())
    window = frame.filter(
        (pl.col("InvoiceDate") >= datetime(2011, 9, 1)) & (pl.col("InvoiceDate") < datetime(2011, 12, 1))
    )
    buyers = window.filter(pl.col("CustomerID").is_not_null())["CustomerID"].n_unique()
    assert sum(arm["converters"] for arm in report["arms"]) == buyers
    assert report["data"]["outcome_rows_outside_window"] == frame.height - window.height
    assert report["data"]["outcome_rows_without_user"] == window["CustomerID"].null_count()
    for comparison in report["comparisons"]:
        assert 0 <= comparison["p_value"] <= 1
