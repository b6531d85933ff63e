"""`recctl ingest` / `recctl preprocess` through the CLI: bad files give a clear message and exit code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.data.conftest import EVENTS_HEADER, shop_source, write_yaml

runner = CliRunner()
GOOD_ROW = "u1,i1,view,2026-01-01 10:00:00,1\n"


def _run(tmp_path: Path, source: dict, *args: str):  # noqa: ANN202
    config = write_yaml(tmp_path, source)
    return runner.invoke(app, ["ingest", str(config), "--quiet", *args])


def test_summary_table_and_json(tmp_path: Path, events_csv: Path) -> None:
    config = write_yaml(tmp_path, shop_source())
    result = runner.invoke(app, ["ingest", str(config)])
    assert result.exit_code == 0, result.output
    assert "Rejected rows by reason" in result.stdout and "missing_user_id" in result.stdout
    result = runner.invoke(app, ["ingest", str(config), "--json"])
    data = json.loads(result.stdout)
    assert data["summary"]["totals"]["read"] == 12 and data["summary"]["totals"]["rejected"] == 4


def test_preprocess_command(tmp_path: Path, small_shop: Path) -> None:
    config = write_yaml(
        tmp_path,
        shop_source(str(small_shop / "events.csv")),
        items={"path": str(small_shop / "products.csv"), "id_column": "product_id"},
    )
    assert runner.invoke(app, ["ingest", str(config), "-q"]).exit_code == 0
    result = runner.invoke(app, ["preprocess", str(config)])
    assert result.exit_code == 0, result.output
    assert "Splits (time)" in result.stdout and "tune_train" in result.stdout
    shown = result.stdout
    result = runner.invoke(app, ["preprocess", str(config), "--json"])
    summary = json.loads(result.stdout)["summary"]
    # the splits table: events per file from the events per label; `all` holds every event kept
    by_label = summary["split"]["events"]
    expected = {
        "train": by_label["tune_train"] + by_label["valid"],
        "test": by_label["test"],
        "tune_train": by_label["tune_train"],
        "valid": by_label["valid"],
        "all": summary["n_events"],
    }
    assert sum(by_label.values()) == summary["n_events"] > 0
    table = shown[shown.index("Splits (time)") :]
    for name, n in expected.items():
        row = re.search(rf"\b{name}\b\W+([\d,]+)\W+([\d,]+)", table)
        assert row is not None, (name, table)
        assert int(row[1].replace(",", "")) == n, (name, table)
        assert int(row[2].replace(",", "")) == summary["split_rows"][name], (name, table)
    # 80 catalogue products + the generator's 3 delisted ids; the newest products are cold
    assert summary["n_items"] == 83 and summary["n_cold_items"] == 2


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "workdir: work\nmodels: {p: {kind: popularity}}\ndata:\n  interactions:\n    path: nowhere.csv\n"
        "    columns: {user_id: u, item_id: i, timestamp: t}\n"
    )
    result = runner.invoke(app, ["ingest", str(tmp_path / "config.yaml")])
    assert result.exit_code == 3
    assert "data.interactions.path: file not found" in result.stderr


BAD_FILES = [
    ("empty", "events.csv", b"", "the file is empty"),
    ("header only", "events.csv", EVENTS_HEADER.encode(), "header but no data rows"),
    (
        "wrong delimiter",
        "events.csv",
        (EVENTS_HEADER + GOOD_ROW).replace(",", ";").encode(),
        "looks ';'-delimited: set `data.interactions.delimiter: \";\"`",
    ),
    (
        "bad encoding",
        "events.csv",
        (EVENTS_HEADER + GOOD_ROW).encode() + b"u2,i\xe9,view,2026-01-01 10:00:00,1\n",
        "not valid UTF-8 at line 3",
    ),
    (
        "missing column",
        "events.csv",
        (EVENTS_HEADER.replace("quantity", "qty") + GOOD_ROW).encode(),
        "column 'quantity' (mapped by data.interactions.columns.value) is not in the file (did you mean 'qty'?)",
    ),
    (
        "wrong type",
        "events.csv",
        (EVENTS_HEADER + "u1,i1,view,monday,1\nu2,i2,view,tuesday,1\n").encode(),
        "column 'event_time': none of the 2 rows is usable (bad timestamp; e.g. 'monday', 'tuesday')",
    ),
    (
        "ragged line",
        "events.csv",
        (EVENTS_HEADER + GOOD_ROW + "u2,i2,view,2026-01-01 10:00:00,1,extra\n").encode(),
        "line 3 has 6 fields but the header has 5",
    ),
    ("not parquet", "events.parquet", b"customer_id,product_id\n1,2\n", "not a Parquet file"),
    (
        "broken jsonl",
        "events.jsonl",
        b'{"customer_id": "u1", "product_id": "i1", "event_type": "view", '
        b'"event_time": "2026-01-01 10:00:00", "quantity": 1}\n'
        b'{"customer_id": "u2", "product_id": \n',
        "line 2 is not valid JSON",
    ),
]


@pytest.mark.parametrize(("case", "name", "content", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_message_and_exit_code(tmp_path: Path, case: str, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    result = _run(tmp_path, shop_source(name))
    assert result.exit_code == 4, result.output
    assert message in result.stderr
    assert str(tmp_path / name) in result.stderr  # names the file
    assert "Traceback" not in result.output


def test_fail_policy_through_cli(tmp_path: Path, events_csv: Path) -> None:
    result = _run(tmp_path, shop_source(on_error="fail"))
    assert result.exit_code == 4
    assert "row 4: column 'customer_id'" in result.stderr and "on_error is 'fail'" in result.stderr


def test_unknown_event_map_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(EVENTS_HEADER + "u1,i1,VIEW,2026-01-01 10:00:00,1\n")
    result = _run(tmp_path, shop_source())
    assert result.exit_code == 4
    assert "none of the 1 rows is usable (unknown event" in result.stderr
    assert "check data.interactions.event_map (knows: " in result.stderr


def test_append_missing_file_and_repeat(tmp_path: Path, events_csv: Path) -> None:
    config = write_yaml(tmp_path, shop_source())
    assert runner.invoke(app, ["ingest", str(config), "-q"]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(config), "--append", str(tmp_path / "nope.csv")])
    assert result.exit_code == 4 and "nope.csv: file not found (--append)" in result.stderr
    day = tmp_path / "day.csv"
    day.write_text(EVENTS_HEADER + "u9,i1,view,2026-02-01 10:00:00,1\n")
    first = json.loads(runner.invoke(app, ["ingest", str(config), "--append", str(day), "--json"]).stdout)
    second = json.loads(runner.invoke(app, ["ingest", str(config), "--append", str(day), "--json"]).stdout)
    assert first["summary"]["totals"]["interactions"] == second["summary"]["totals"]["interactions"] == 8
    assert len(second["summary"]["batches"]) == 2


def test_preprocess_before_ingest_is_artifact_error(tmp_path: Path, events_csv: Path) -> None:
    config = write_yaml(tmp_path, shop_source())
    result = runner.invoke(app, ["preprocess", str(config)])
    assert result.exit_code == 5
    assert "recctl ingest" in result.stderr


def test_nested_parquet_column_is_refused(tmp_path: Path) -> None:
    import polars as pl

    pl.DataFrame({"u": ["a"], "i": [["x", "y"]], "t": ["2026-01-01"]}).write_parquet(tmp_path / "e.parquet")
    source = {"path": "e.parquet", "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"}}
    result = _run(tmp_path, source)
    assert result.exit_code == 4
    assert "column 'i' (mapped by data.interactions.columns.item_id) holds List(String) values" in result.stderr


def test_json_errors_are_json_on_stdout(tmp_path: Path) -> None:
    """A CI job parsing stdout gets JSON when a command fails, with the exit code inside."""
    (tmp_path / "config.yaml").write_text(
        "workdir: work\nmodels: {p: {kind: popularity}}\ndata:\n  interactions:\n    path: nowhere.csv\n"
        "    columns: {user_id: u, item_id: i, timestamp: t}\n"
    )
    result = runner.invoke(app, ["ingest", str(tmp_path / "config.yaml"), "--json"])
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError" and error["exit_code"] == 3
    assert "data.interactions.path: file not found" in error["message"]
    assert "file not found" in result.stderr
