from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from recctl.data.timestamps import UTC_DATETIME, parse_timestamp

UTC = dt.timezone.utc


def _parse(values: list[object], fmt: str = "auto", tz: str = "UTC", dtype: pl.DataType | None = None) -> list:
    frame = pl.DataFrame({"t": values})
    return frame.select(parse_timestamp(pl.col("t"), fmt, tz, dtype or frame.schema["t"]).alias("u"))["u"].to_list()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01 12:34:56", dt.datetime(2026, 3, 1, 12, 34, 56, tzinfo=UTC)),
        ("2026-03-01T12:34:56.5Z", dt.datetime(2026, 3, 1, 12, 34, 56, 500000, tzinfo=UTC)),
        ("2026-03-01T12:34:56+02:00", dt.datetime(2026, 3, 1, 10, 34, 56, tzinfo=UTC)),
        ("2026-03-01", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026/03/01 08:00", dt.datetime(2026, 3, 1, 8, tzinfo=UTC)),
        ("964982703", dt.datetime(2000, 7, 30, 18, 45, 3, tzinfo=UTC)),
        ("964982703000", dt.datetime(2000, 7, 30, 18, 45, 3, tzinfo=UTC)),
        ("yesterday", None),
        ("31/02/2026 25:61", None),
    ],
)
def test_auto_format(raw: str, expected: dt.datetime | None) -> None:
    assert _parse([raw]) == [expected]


def test_custom_format_and_timezone_stored_as_utc() -> None:
    got = _parse(["01/07/2026 09:30", "01/01/2026 09:30"], "%d/%m/%Y %H:%M", "Europe/London")
    assert got == [dt.datetime(2026, 7, 1, 8, 30, tzinfo=UTC), dt.datetime(2026, 1, 1, 9, 30, tzinfo=UTC)]


def test_epoch_units_and_numeric_columns() -> None:
    assert _parse(["1000"], "epoch_s") == [dt.datetime(1970, 1, 1, 0, 16, 40, tzinfo=UTC)]
    assert _parse(["1000"], "epoch_ms") == [dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)]
    assert _parse([964982703], "auto", dtype=pl.Int64) == [dt.datetime(2000, 7, 30, 18, 45, 3, tzinfo=UTC)]


def test_native_datetime_column_is_localised() -> None:
    frame = pl.DataFrame({"t": [dt.datetime(2026, 7, 1, 12)]})
    out = frame.select(parse_timestamp(pl.col("t"), "auto", "Europe/Berlin", frame.schema["t"]))
    assert out.schema["t"] == UTC_DATETIME
    assert out["t"][0] == dt.datetime(2026, 7, 1, 10, tzinfo=UTC)


def test_utc_suffix() -> None:
    assert _parse(["2026-03-01 12:00:00 UTC"]) == [dt.datetime(2026, 3, 1, 12, tzinfo=UTC)]
