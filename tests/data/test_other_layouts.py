"""Another shop's export layout, read through a config alone (gzip TSV with epoch-ms times, JSON Lines)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "events.csv"


@pytest.fixture(scope="module")
def retailrocket_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample shop re-exported RetailRocket-style: other column names, event values and epoch ms."""
    root = tmp_path_factory.mktemp("rr")
    events = pl.read_csv(SAMPLE, infer_schema=False).select(
        pl.col("event_time")
        .str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S", strict=False)
        .dt.epoch("ms")
        .alias("timestamp"),
        pl.col("customer_id").alias("visitorid"),
        pl.col("event_type").replace({"add_to_cart": "addtocart", "purchase": "transaction"}).alias("event"),
        pl.col("product_id").alias("itemid"),
    )
    with gzip.open(root / "events.tsv.gz", "wb") as handle:
        handle.write(events.write_csv(separator="\t").encode())
    events.write_ndjson(root / "events.jsonl")
    return root


def _config(root: Path, path: str, workdir: str) -> Path:
    raw = {
        "workdir": str(root / workdir),
        "data": {
            "interactions": {
                "path": str(root / path),
                "columns": {"user_id": "visitorid", "item_id": "itemid", "event": "event", "timestamp": "timestamp"},
                "timestamp_format": "epoch_ms",
                "event_map": {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"},
            }
        },
        "models": {"pop": {"kind": "popularity"}},
    }
    config = root / f"{workdir}.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


@pytest.mark.parametrize("path", ["events.tsv.gz", "events.jsonl"])
def test_every_row_accounted_for(retailrocket_like: Path, path: str) -> None:
    config = _config(retailrocket_like, path, path.replace(".", "_"))
    result = runner.invoke(app, ["ingest", str(config), "--json"])
    assert result.exit_code == 0, result.stderr
    totals = json.loads(result.stdout)["summary"]["totals"]
    n_raw = pl.read_csv(SAMPLE, infer_schema=False).height
    assert totals["read"] == n_raw
    assert totals["accepted"] + totals["rejected"] == totals["read"]
    assert totals["rejected"] > 0  # the sample's dirty rows (missing ids, bad times, unknown event)


def test_broken_json_line_names_the_line(retailrocket_like: Path) -> None:
    good = (retailrocket_like / "events.jsonl").read_text().splitlines()
    truncated = '{"timestamp": 1, "visitorid": '  # a line cut off mid-object, as a failed upload leaves it
    (retailrocket_like / "broken.jsonl").write_text("\n".join([*good[:3], truncated, *good[3:6]]))
    config = _config(retailrocket_like, "broken.jsonl", "broken")
    result = runner.invoke(app, ["ingest", str(config)])
    assert result.exit_code == 4
    assert "broken.jsonl: line 4 is not valid JSON" in result.stderr
