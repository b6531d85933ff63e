"""The ``data:`` section: where the raw files are and how their columns map to recctl's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from recctl.config.base import BaseConfig

FileFormat = Literal["auto", "csv", "tsv", "parquet", "jsonl", "excel"]
ErrorPolicy = Literal["fail", "skip", "quarantine"]


class InteractionColumns(BaseConfig):
    """Raw column names of the interaction file, by canonical name."""

    user_id: str = Field(description="Raw column of the user (customer, visitor) id.")
    item_id: str = Field(description="Raw column of the item (product) id.")
    timestamp: str | None = Field(
        default=None,
        description=(
            "Raw time column. Leave it out when the export has none (e.g. Book-Crossing): rows then "
            "get file-order times, the first row of the first file the oldest."
        ),
    )
    event: str | None = Field(
        default=None, description="Raw event-type column; leave empty when every row is `default_event`."
    )
    value: str | None = Field(default=None, description="Optional quantity / rating / revenue column.")


class ValueRule(BaseConfig):
    """Derive the event from the value column, e.g. a rating threshold defines a positive."""

    min_value: float = Field(description="Rows with value >= min_value get `event`.")
    event: str
    below: str | Literal["drop"] = Field(
        default="drop", description="Event for rows under the threshold, or `drop` to record them as rejected."
    )


class CancellationRule(BaseConfig):
    """How to recognise cancellation / return rows (they are rejected with reason `cancelled`)."""

    column: str | None = Field(default=None, description="Raw column whose value marks a cancellation.")
    prefix: str | None = Field(default=None, description="A value starting with this prefix is a cancellation.")
    negative_value: bool = Field(default=True, description="A negative value column marks a return.")


class RowCheck(BaseConfig):
    """A condition every accepted row must meet, e.g. ``UnitPrice > 0``; failing rows are rejected with ``reason``."""

    column: str = Field(description="Raw column to test (numeric comparison; non-numeric values fail the check).")
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float
    reason: str = Field(default="failed_check", description="Reject reason recorded for rows failing the check.")


def _check_timezone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}'; use an IANA name such as UTC or Europe/London") from None
    return value


class FileSource(BaseConfig):
    """How to open a source's raw files: location, format, compression, text layout."""

    path: str | list[str] = Field(description="File, list of files, or glob(s); relative to the config file.")
    format: FileFormat = Field(
        default="auto", description="By extension when `auto` (.csv .txt .dat .tsv .parquet .jsonl .json .xlsx ...)."
    )
    delimiter: str | None = Field(
        default=None,
        description="CSV delimiter; default by format (`,` or tab). Several characters (MovieLens' `::`) work too.",
    )
    encoding: Literal["utf8", "utf8-lossy", "latin1", "cp1252", "utf16"] = Field(
        default="utf8",
        description="Text encoding; utf16 is Excel's 'Unicode text' export. Other than utf8 is transcoded first.",
    )
    has_header: bool = Field(
        default=True, description="false: the first line is data; columns are `column_1`, ... or `column_names`."
    )
    column_names: list[str] | None = Field(
        default=None, description="Names for the columns, in order (a headerless file, or to replace the header)."
    )
    skip_lines: int = Field(default=0, ge=0, description="Lines to skip before the header (a title or preamble).")
    sheet: str | int | None = Field(
        default=None, description="Spreadsheet files: the sheet's name or 1-based position (default: the first)."
    )
    quote_char: str | None = Field(default='"', description="CSV quote character; null when the file has no quoting.")
    null_values: list[str] = Field(
        default_factory=list,
        description="Raw strings read as missing (empty strings always are), e.g. ['NULL', 'nan'].",
    )
    decimal_comma: bool = Field(default=False, description="Numbers are written `1.234,5` (a European export).")
    normalize_numeric_ids: bool = Field(
        default=True, description="Read ids such as `17850.0` (a float export of an integer id) as `17850`."
    )
    on_error: ErrorPolicy = Field(
        default="quarantine",
        description="Bad rows: `fail` stops at the first; `skip` counts them; `quarantine` also keeps them in "
        "rejected.parquet.",
    )

    @field_validator("path")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one file or glob")
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in '\r\n"')):
            raise ValueError(
                f"{value!r} cannot separate columns; give one or more characters other than a newline or quote"
            )
        return value

    @field_validator("quote_char")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"quote_char must be one character or null, got {value!r}")
        return value


class Lookup(FileSource):
    """A table joined to each interaction row by a key, e.g. orders (order_id -> customer, time) for order lines."""

    on: str = Field(description="Key column of the lookup table.")
    left_on: str | None = Field(default=None, description="Key column of the interaction file (default: `on`).")
    columns: list[str] | None = Field(
        default=None, description="Lookup columns to bring in (default: all but the key)."
    )


class InteractionSource(FileSource):
    """One source of raw interaction events (views, clicks, carts, purchases, ratings)."""

    lookups: list[Lookup] = Field(
        default_factory=list,
        description=(
            "Tables joined in order by key before the columns are mapped (a normalised export: order lines, "
            "orders, customers). Every interaction row is kept; a key without a match leaves the looked-up "
            "columns empty."
        ),
    )
    columns: InteractionColumns
    timestamp_format: str = Field(
        default="auto",
        description="`auto`, `iso`, `epoch_s`, `epoch_ms`, or a strftime pattern such as `%d/%m/%Y %H:%M`.",
    )
    timezone: str = Field(default="UTC", description="Time zone of naive timestamps; stored as UTC.")
    event_map: dict[str, str] | None = Field(
        default=None, description="Raw event value -> canonical event. Unlisted raw values are `unknown_event`."
    )
    default_event: str = Field(default="interaction", description="Event name when there is no event column.")
    value_rule: ValueRule | None = None
    cancellations: CancellationRule | None = None
    require: list[RowCheck] = Field(default_factory=list, description="Extra row checks, e.g. a positive price.")
    max_reject_rate: float | None = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Largest share of a file's rows that may be unreadable (missing ids, bad timestamps, unknown events, "
            "non-numeric values) before ingest fails, naming the top reasons, sample values and the config "
            "change that fixes them. Rows your own rules drop (cancellations, require, value_rule) do not "
            "count. null turns the check off."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _check_timezone(value)


class LongFormat(BaseConfig):
    """A table with one row per (id, property, value), e.g. RetailRocket's item_properties files."""

    property_column: str = Field(description="Raw column naming the property (e.g. `property`).")
    value_column: str = Field(description="Raw column holding its value (e.g. `value`).")
    time_column: str | None = Field(
        default=None,
        description="Raw column saying when the value was set; the latest wins (else the last row in file order).",
    )


class TableSource(FileSource):
    """A catalogue (items) or user-attribute file: an id column plus attribute columns."""

    id_column: str = Field(description="Raw column holding the item (or user) id.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical attribute name -> raw column (e.g. category: Category). Empty keeps all columns.",
    )
    long_format: LongFormat | None = Field(
        default=None,
        description=(
            "The file has one row per (id, property, value): `columns` then maps attribute names to property "
            "names, and each id gets the latest value of each property."
        ),
    )
    true_values: list[str] = Field(
        default_factory=list,
        description=(
            "The shop's own words for true in flag columns (e.g. [vorrätig]); yes/no, ja/nein, oui/non, sí/no "
            "and other common languages are built in."
        ),
    )
    false_values: list[str] = Field(
        default_factory=list, description="The shop's own words for false in flag columns (e.g. [ausverkauft])."
    )
    max_reject_rate: float | None = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Largest share of rows without an id before ingest fails; null turns the check off.",
    )
    dedupe: Literal["first", "last", "mode"] = Field(
        default="first",
        description=(
            "Several rows with the same id (e.g. a catalogue derived from an invoice file): keep the first, the last, "
            "or per attribute the most frequent non-empty value (`mode`)."
        ),
    )

    @model_validator(mode="after")
    def _long_needs_columns(self) -> TableSource:
        if self.long_format is not None and not self.columns:
            raise ValueError(
                "long_format needs `columns`: attribute name -> property name (e.g. category: categoryid); "
                "a long table can hold thousands of properties"
            )
        return self


class DataConfig(BaseConfig):
    """All raw inputs of an experiment."""

    interactions: InteractionSource | list[InteractionSource]
    items: TableSource | None = None
    users: TableSource | None = None

    def interaction_sources(self) -> list[InteractionSource]:
        """Return the interaction sources as a list."""
        return self.interactions if isinstance(self.interactions, list) else [self.interactions]
