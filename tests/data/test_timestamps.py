from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from recctl.data.timestamps import AUTO_PLANS, UTC_DATETIME, parse_timestamp, resolve_auto

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


@pytest.mark.parametrize(
    ("values", "plan"),
    [
        (["2026-01-01 10:00:00", "2026-01-02 11:00:00.5"], "iso"),
        (["2026-01-01 10:00:00", "2026-01-02 11:00:00"], "iso_seconds"),
        (["2026-01-01T10:00:00Z", "2026-01-01T10:00:00.25Z"], "iso_t_z"),
        (["2026-01-01T10:00:00Z"], "iso_t_z_seconds"),
        (["2019-10-01 00:00:00 UTC"], "iso_utc"),
        (["2026-01-01T10:00:00+02:00", "2026-01-01T10:00:00-05:00"], "iso_t_offset"),
        (["1569888000", "1569888000123", "-5"], "epoch"),
        (["2026/03/01 10:00"], "slash_minutes"),
        (["2026-01-01 10:00", "2026-01-01"], None),  # two layouts: keep the full auto
        (["monday", "tuesday"], None),
        (["01.01.2026 00:02", "13.02.2026 10:00"], "dotted_minutes"),
        ([], None),
    ],
)
def test_resolve_auto_picks_the_one_layout(values: list[str], plan: str | None) -> None:
    assert resolve_auto(pl.Series(values, dtype=pl.String), "Europe/Berlin") == plan


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin"])
def test_a_resolved_layout_parses_like_the_full_auto(timezone: str) -> None:
    """Wherever a layout parses a value, it gives auto's answer; elsewhere it gives null (and ingest re-checks)."""
    values = pl.Series(
        [
            "2026-03-29 02:30:00",
            "2026-03-29 01:30:00.123",
            "2026-01-01T10:00:00",
            "2026-01-01T10:00:00Z",
            "2026-01-01 10:00:00 UTC",
            "2026-01-01 10:00:00 GMT",
            "2026-01-01 10:00:00+01:00",
            "2026-01-01T10:00",
            "2026-01-01 10:00",
            "2026-01-01",
            "2026/01/01 10:00:00",
            "2026/01/01",
            "13.01.2026 10:00:00",
            "13.01.2026 10:00",
            "13.01.2026",
            "1700000000",
            "1700000000000",
            "1.5",
            "1e10",
            "not a time",
            "",
        ]
    ).to_frame("t")
    full = values.select(parse_timestamp(pl.col("t"), "auto", timezone)).to_series()
    for plan in AUTO_PLANS:
        got = values.select(parse_timestamp(pl.col("t"), "auto", timezone, plan=plan)).to_series()
        agree = got.is_null() | (got == full).fill_null(False)
        assert agree.all(), (plan, values.filter(~agree))
    assert {resolve_auto(values["t"].slice(i, 1), timezone) for i in range(values.height)} - {None} <= set(AUTO_PLANS)
