"""The ``preprocess:`` section: weights, filtering, splits and features."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from recctl.config.base import BaseConfig

#: split strategies (see :mod:`recctl.data.split` for the exact rules)
SplitStrategy = Literal["time", "user_time", "leave_last", "random", "files"]


class SplitConfig(BaseConfig):
    """How interactions are split into train / test, and validation carved from train."""

    strategy: SplitStrategy = Field(
        default="time",
        description=(
            "`time`: one cut in time for everyone; `user_time`: each user's latest `test_fraction` of their "
            "items; `leave_last`: each user's latest `n_last` items; `random`: a seeded random share of each "
            "user's items; `files`: the pairs listed in `test_file` (a published protocol). Latest is by an "
            "item's last event; events with equal timestamps are in file order (a basket's last line is its latest)."
        ),
    )
    test_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description=(
            "`time`/`user_time`/`random`: share held out, rounded half up (`time`: round(f x events), plus "
            "events tied with the cut; per user: round(f x items), at least one item kept in train)."
        ),
    )
    test_start: str | None = Field(default=None, description="`time`: ISO date where test starts (overrides fraction).")
    n_last: int = Field(default=1, ge=1, description="`leave_last`: each user's last N items go to test.")
    test_file: str | None = Field(
        default=None,
        description=(
            "`files`: CSV/Parquet of held-out (user, item) pairs, in the layout and column names of the first "
            "`data.interactions` source (or `user_id`, `item_id`); every ingested event of a listed pair is test."
        ),
    )
    valid_file: str | None = Field(
        default=None, description="`files`: the validation pairs (default: carved from train by `valid_strategy`)."
    )
    valid_strategy: SplitStrategy | Literal["none"] | None = Field(
        default=None,
        description=(
            "How validation is carved from train; default: the test strategy (for `files` without `valid_file`: "
            "`user_time`). `none`: no validation split (tuning then has nothing to score)."
        ),
    )
    valid_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of train held out for validation (fraction strategies); 0 turns validation off.",
    )
    valid_n_last: int = Field(default=1, ge=1, description="`leave_last` validation: each user's last N of train.")
    drop_cold_test_users: bool = Field(
        default=True, description="Drop test users never seen in train (they are evaluated as cold users separately)."
    )

    @model_validator(mode="after")
    def _files_named(self) -> SplitConfig:
        if self.strategy == "files" and not self.test_file:
            raise ValueError("strategy 'files' needs test_file (the held-out pairs)")
        if self.strategy != "files" and (self.test_file or self.valid_file):
            raise ValueError("test_file / valid_file are only read with strategy: files")
        if self.valid_strategy == "files":
            raise ValueError("valid_strategy 'files' is set by giving valid_file with strategy: files")
        return self

    @property
    def validation_strategy(self) -> str:
        """The rule validation is carved from train by (``none`` when it is off)."""
        if self.valid_file:
            return "files"
        if self.valid_strategy == "none" or self.valid_fraction == 0:
            return "none"
        if self.valid_strategy is not None:
            return self.valid_strategy
        return "user_time" if self.strategy == "files" else self.strategy


class ItemEmbeddingsConfig(BaseConfig):
    """Dense item vectors computed elsewhere (image or text embeddings), one block of item features."""

    path: str = Field(
        description="A .parquet file (id column + a column of float lists) or an .npy array (items x "
        "dimensions); relative to the config file."
    )
    ids: str | None = Field(
        default=None,
        description="For an .npy array: the id of each array row, as a .txt file (one id per line) or a "
        ".parquet/.csv file with `id_column`.",
    )
    id_column: str = Field(default="item_id", description="Column holding the item id.")
    vector_column: str = Field(default="embedding", description="Parquet column holding the float lists.")
    normalise: bool = Field(default=True, description="Scale each vector to unit length.")
    weight: float = Field(
        default=1.0, gt=0.0, description="Multiplies the vectors: their share against the other feature blocks."
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
    item_embeddings: ItemEmbeddingsConfig | None = Field(
        default=None, description="Dense item vectors (image or text embeddings) added as one feature block."
    )


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
    half_life_days: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Recency decay of training weights: 0.5 ** (age / half_life_days), age measured back from "
            "`decay_reference`. Test and validation weights are never decayed."
        ),
    )
    decay_reference: Literal["user", "train_end"] = Field(
        default="user",
        description=(
            "Where a training event's age is measured from: `user`: that user's latest event in the training "
            "part (every user's latest behaviour weighs 1); `train_end`: the latest event of the training part."
        ),
    )
    min_user_interactions: int = Field(default=1, ge=1, description="Drop users with fewer distinct items.")
    min_item_interactions: int = Field(default=1, ge=1, description="Drop items with fewer distinct users.")
    kcore: bool = Field(default=False, description="Repeat min-count filtering until stable.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)

    @field_validator("event_weights")
    @classmethod
    def _weights_valid(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"event_weights must be finite numbers; not finite for {bad}")
        bad = [k for k, v in value.items() if v < 0]
        if bad:
            raise ValueError(f"event_weights must be >= 0; negative for {bad}")
        if value and all(v == 0 for v in value.values()):
            raise ValueError("event_weights are all 0, which drops every event; give at least one type a weight > 0")
        return value
