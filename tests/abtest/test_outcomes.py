"""Reading outcome logs and assignments: mapping, validation, messages."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recctl.abtest.outcomes import read_assignments, read_outcomes
from recctl.config.abtest import OutcomesConfig, parse_instant
from recctl.errors import DataError


def _spec(**columns: str | None) -> OutcomesConfig:
    return OutcomesConfig.model_validate({"columns": {"user_id": "user_id", "event": "event", **columns}})


def test_missing_column_names_the_yaml_key_and_the_columns(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["a"], "event": ["purchase"]}).write_csv(tmp_path / "o.csv")
    with pytest.raises(DataError) as exc:
        read_outcomes(tmp_path / "o.csv", _spec(revenue="amount"))
    msg = str(exc.value)
    assert "o.csv" in msg and "'amount'" in msg and "experiment.outcomes.columns.revenue" in msg
    assert "user_id, event" in msg


def test_revenue_that_is_not_a_number_names_the_row(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["a", "b", "c"], "event": ["purchase"] * 3, "rev": ["1.5", "", "abc"]}).write_csv(
        tmp_path / "o.csv"
    )
    with pytest.raises(DataError, match=r"row 3 \('abc'\) is not a number"):
        read_outcomes(tmp_path / "o.csv", _spec(revenue="rev"))


def test_bad_timestamp_names_the_row(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "user_id": ["a", "b"],
            "event": ["purchase"] * 2,
            "ts": ["2026-12-02 10:00:00", "yesterday"],
        }
    ).write_csv(tmp_path / "o.csv")
    spec = OutcomesConfig.model_validate({"columns": {"timestamp": "ts"}, "timestamp_format": "%Y-%m-%d %H:%M:%S"})
    with pytest.raises(DataError, match=r"row 2 \('yesterday'\)"):
        read_outcomes(tmp_path / "o.csv", spec, parse_instant("2026-12-01"))


def test_orders_file_without_event_column(tmp_path: Path) -> None:
    pl.DataFrame({"cust": ["a", "a", "b"], "total": [10.0, 5.0, 1.0]}).write_parquet(tmp_path / "orders.parquet")
    spec = OutcomesConfig.model_validate({"columns": {"user_id": "cust", "event": None, "revenue": "total"}})
    log = read_outcomes(tmp_path / "orders.parquet", spec)
    assert log.frame["kind"].to_list() == ["conversion"] * 3
    assert log.frame["revenue"].sum() == 16.0


def test_unknown_events_and_empty_users_are_noted(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["a", "", "b"], "event": ["purchase", "click", "view"]}).write_csv(tmp_path / "o.csv")
    log = read_outcomes(tmp_path / "o.csv", _spec())
    assert log.n_null_user == 1
    assert any("['view']" in n for n in log.notes)


def test_no_conversion_event_is_noted(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["a"], "event": ["order"]}).write_csv(tmp_path / "o.csv")
    assert any("no row has a conversion event" in n for n in read_outcomes(tmp_path / "o.csv", _spec()).notes)


def test_window_without_timestamp_column_is_noted(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["a"], "event": ["purchase"]}).write_csv(tmp_path / "o.csv")
    log = read_outcomes(tmp_path / "o.csv", _spec(), parse_instant("2026-12-01"))
    assert any("none filtered by time" in n for n in log.notes)


def test_same_event_cannot_be_click_and_conversion() -> None:
    with pytest.raises(ValueError, match="both"):
        OutcomesConfig.model_validate({"click_events": ["buy"], "conversion_events": ["buy"]})


def test_assignments_validation(tmp_path: Path) -> None:
    pl.DataFrame({"user": ["a"], "variant": ["control"]}).write_csv(tmp_path / "a.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id'\]"):
        read_assignments(tmp_path / "a.csv")
    pl.DataFrame({"user_id": ["a", "a"], "variant": ["control", "treatment"]}).write_csv(tmp_path / "b.csv")
    with pytest.raises(DataError, match="more than one variant"):
        read_assignments(tmp_path / "b.csv")
    with pytest.raises(DataError, match="not found"):
        read_assignments(tmp_path / "nope.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unknown file type"):
        read_assignments(tmp_path / "x.json")
