"""The ``data:`` section: where the raw files are and how their columns map to recctl's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from recctl.config.base import BaseConfig

FileFormat = Literal["auto", "csv", "tsv", "parquet", "jsonl"]
ErrorPolicy = Literal["fail", "skip", "quarantine"]


class InteractionColumns(BaseConfig):
    """Raw column names of the interaction file, by canonical name."""

    user_id: str
    item_id: str
    timestamp: str
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


class InteractionSource(BaseConfig):
    """One source of raw interaction events (views, clicks, carts, purchases, ratings)."""

    path: str | list[str] = Field(description="File, list of files, or glob(s); relative to the config file.")
    format: FileFormat = "auto"
    delimiter: str | None = Field(default=None, description="CSV delimiter; default by format (`,` or tab).")
    encoding: Literal["utf8", "utf8-lossy", "latin1", "cp1252"] = "utf8"
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
    on_error: ErrorPolicy = "quarantine"

    @field_validator("path")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one file or glob")
        return value


class TableSource(BaseConfig):
    """A catalogue (items) or user-attribute file: an id column plus attribute columns."""

    path: str | list[str]
    format: FileFormat = "auto"
    delimiter: str | None = None
    encoding: Literal["utf8", "utf8-lossy", "latin1", "cp1252"] = "utf8"
    id_column: str = Field(description="Raw column holding the item (or user) id.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical attribute name -> raw column (e.g. category: Category). Empty keeps all columns.",
    )
    on_error: ErrorPolicy = "quarantine"


class DataConfig(BaseConfig):
    """All raw inputs of an experiment."""

    interactions: InteractionSource | list[InteractionSource]
    items: TableSource | None = None
    users: TableSource | None = None

    def interaction_sources(self) -> list[InteractionSource]:
        """Return the interaction sources as a list."""
        return self.interactions if isinstance(self.interactions, list) else [self.interactions]
