"""The ``preprocess:`` section: weights, filtering, splits and features."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recctl.config.base import BaseConfig


class SplitConfig(BaseConfig):
    """How interactions are split into train / test, and validation carved from train."""

    strategy: Literal["time", "leave_last", "random"] = Field(
        default="time",
        description="`time`: one cut in time for all; `leave_last`: each user's latest; `random`: per user, seeded.",
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="`time`/`random`: share of events in test.")
    test_start: str | None = Field(default=None, description="`time`: ISO date where test starts (overrides fraction).")
    n_last: int = Field(default=1, ge=1, description="`leave_last`: each user's last N interactions go to test.")
    valid_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of train carved off for tuning.")
    valid_n_last: int = Field(default=1, ge=1, description="`leave_last`: last N of train go to validation.")
    drop_cold_test_users: bool = Field(
        default=True, description="Drop test users never seen in train (they are evaluated as cold users separately)."
    )


class FeaturesConfig(BaseConfig):
    """Item (and user) features for hybrid and content models, built from catalogue columns."""

    item_categorical: list[str] = Field(default_factory=list, description="Catalogue columns, one feature per value.")
    item_multi_valued: dict[str, str] = Field(
        default_factory=dict, description="column -> separator, e.g. genres: '|'."
    )
    item_numeric_buckets: dict[str, int] = Field(
        default_factory=dict, description="column -> number of quantile buckets."
    )
    item_text: list[str] = Field(default_factory=list, description="Text columns tokenised with TF-IDF.")
    text_max_vocab: int = Field(default=2000, ge=1, description="Keep the most frequent terms, at most this many.")
    text_min_df: int = Field(default=2, ge=1, description="Drop terms found in fewer items than this.")
    user_categorical: list[str] = Field(default_factory=list, description="User-table columns, one feature per value.")


class PreprocessConfig(BaseConfig):
    """Turn events into one weight per (user, item), filter, index and split."""

    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0, "interaction": 1.0},
        description="Weight of each event type; 0 drops that type. Every event ingested must be listed.",
    )
    value_transform: Literal["none", "log1p", "binary"] = Field(
        default="none", description="Transform of the value column before `use_value` multiplies it in."
    )
    use_value: bool = Field(default=False, description="Multiply event weight by the (transformed) value.")
    aggregate: Literal["sum", "max", "last"] = Field(
        default="sum", description="How repeated (user, item) events become one weight."
    )
    half_life_days: float | None = Field(default=None, gt=0, description="Recency decay of weights.")
    min_user_interactions: int = Field(default=1, ge=1, description="Drop users with fewer distinct items.")
    min_item_interactions: int = Field(default=1, ge=1, description="Drop items with fewer distinct users.")
    kcore: bool = Field(default=False, description="Repeat min-count filtering until stable.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)

    @model_validator(mode="after")
    def _weights_positive(self) -> PreprocessConfig:
        bad = [k for k, v in self.event_weights.items() if v < 0]
        if bad:
            raise ValueError(f"event_weights must be >= 0; negative for {bad}")
        return self
