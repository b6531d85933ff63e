"""The ``experiment:`` section: an A/B test between recommendation variants.

Besides the arms (``variants``, ``control``, ``holdout``, ``salt``) the section says how to read
the outcome log the shop returns after the experiment (``experiment.outcomes``): which columns
hold the user, the event type, the item, the revenue and the time, and which event types count
as a click and as a conversion. ``recctl ab report`` reads it; ``--outcomes FILE`` on the command
line overrides ``outcomes.path``.

Example::

    experiment:
      name: reco_v2
      salt: reco-v2-2026-12
      control: control
      holdout: 0.05
      start: "2026-12-01"
      variants:
        control:   {model: popular, weight: 1}
        treatment: {model: lightfm_warp, weight: 1}
      outcomes:
        columns: {user_id: customer_id, event: event_type, revenue: amount}
        click_events: [click]
        conversion_events: [purchase]
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import Field, field_validator, model_validator

from recctl.config.base import BaseConfig

__all__ = ["ABTestConfig", "OutcomeColumns", "OutcomesConfig", "VariantConfig", "parse_instant"]


def parse_instant(value: str) -> datetime:
    """Parse an ISO date or date-time; naive values are taken as UTC.

    Parameters
    ----------
    value
        ``"2026-12-01"`` or ``"2026-12-01T08:00:00+01:00"``.

    Returns
    -------
    datetime
        A timezone-aware datetime in UTC.

    Raises
    ------
    ValueError
        If the text is not ISO 8601.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"'{value}' is not an ISO date or date-time, e.g. 2026-12-01 or 2026-12-01T08:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


class VariantConfig(BaseConfig):
    """One arm of an experiment."""

    model: str = Field(description="Name of the model (in `models`) serving this arm.")
    weight: float = Field(gt=0, description="Relative traffic weight.")


class OutcomeColumns(BaseConfig):
    """Which column of the outcome log holds what (shop column names)."""

    user_id: str = Field(default="user_id", description="The user id, as in the assignments.")
    event: str | None = Field(
        default="event",
        description="Event type column; null means every row is a conversion (an orders file).",
    )
    item_id: str | None = Field(default=None, description="Item column (optional; only counted).")
    revenue: str | None = Field(default=None, description="Revenue per row (optional).")
    timestamp: str | None = Field(default=None, description="Event time; needed to keep only rows in [start, end).")


class OutcomesConfig(BaseConfig):
    """How to read the outcome log the shop returns after the experiment."""

    path: str | None = Field(default=None, description="Outcome file (CSV/Parquet); `--outcomes` overrides it.")
    columns: OutcomeColumns = Field(default_factory=OutcomeColumns)
    click_events: list[str] = Field(default_factory=lambda: ["click"], description="Event values counted as clicks.")
    conversion_events: list[str] = Field(
        default_factory=lambda: ["purchase"],
        description="Event values counted as conversions (and carrying revenue).",
    )
    timestamp_format: str | None = Field(
        default=None, description="strptime format of the timestamp column; default ISO 8601."
    )

    @model_validator(mode="after")
    def _events_make_sense(self) -> OutcomesConfig:
        overlap = sorted(set(self.click_events) & set(self.conversion_events))
        if overlap:
            raise ValueError(f"event(s) {overlap} are listed both in click_events and conversion_events; pick one")
        if self.columns.event is not None and not self.conversion_events:
            raise ValueError("conversion_events is empty: list the event values that count as a conversion")
        return self


class ABTestConfig(BaseConfig):
    """A file-based A/B test."""

    name: str
    salt: str = Field(description="Changing the salt re-randomises assignment.")
    variants: dict[str, VariantConfig] = Field(min_length=2)
    control: str = Field(description="Name of the control variant.")
    holdout: float = Field(default=0.0, ge=0, lt=1, description="Share of users who get no recommendations.")
    start: str | None = Field(default=None, description="ISO date the experiment started (for analysis).")
    end: str | None = Field(default=None, description="ISO date the experiment ended (exclusive; optional).")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Significance level of the tests.")
    srm_threshold: float = Field(
        default=0.001,
        gt=0,
        lt=0.5,
        description="Sample-ratio-mismatch chi-square p-value below which to warn.",
    )
    n_bootstrap: int = Field(default=2000, ge=0, description="Bootstrap resamples for revenue (0 = off).")
    outcomes: OutcomesConfig = Field(default_factory=OutcomesConfig)
    normalize_numeric_ids: bool = Field(
        default=True,
        description=(
            "Read user ids such as `17850.0` (a float export of an integer id) as `17850`, in the "
            "users, assignments and outcome files, as ingest does."
        ),
    )

    @field_validator("start", "end")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            parse_instant(value)
        return value

    @field_validator("variants")
    @classmethod
    def _no_reserved(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if "holdout" in value:
            raise ValueError("'holdout' is reserved for held-out users (set `holdout:` to a share); rename the variant")
        return value

    @model_validator(mode="after")
    def _control_exists(self) -> ABTestConfig:
        if self.control not in self.variants:
            raise ValueError(f"control '{self.control}' is not one of the variants {sorted(self.variants)}")
        if self.start and self.end and parse_instant(self.end) <= parse_instant(self.start):
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    @property
    def treatments(self) -> list[str]:
        """Non-control variants, sorted by name."""
        return [n for n in sorted(self.variants) if n != self.control]
