"""The ``experiment:`` section: an A/B test between recommendation variants."""

from __future__ import annotations

from pydantic import Field, model_validator

from recctl.config.base import BaseConfig


class VariantConfig(BaseConfig):
    """One arm of an experiment."""

    model: str = Field(description="Name of the model (in `models`) serving this arm.")
    weight: float = Field(gt=0, description="Relative traffic weight.")


class ABTestConfig(BaseConfig):
    """A file-based A/B test."""

    name: str
    salt: str = Field(description="Changing the salt re-randomises assignment.")
    variants: dict[str, VariantConfig] = Field(min_length=2)
    control: str = Field(description="Name of the control variant.")
    holdout: float = Field(default=0.0, ge=0, lt=1, description="Share of users who get no recommendations.")
    start: str | None = Field(default=None, description="ISO date the experiment started (for analysis).")

    @model_validator(mode="after")
    def _control_exists(self) -> ABTestConfig:
        if self.control not in self.variants:
            raise ValueError(f"control '{self.control}' is not one of the variants {sorted(self.variants)}")
        return self
