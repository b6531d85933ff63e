"""The ``recommend:`` and ``export:`` sections: top-K, business rules, the nightly file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recctl.config.base import BaseConfig


class CategoryCap(BaseConfig):
    """At most ``max_per_list`` items of the same ``column`` value in one list."""

    column: str
    max_per_list: int = Field(ge=1)


class RulesConfig(BaseConfig):
    """Business rules applied to every list."""

    exclude_events: list[str] | None = Field(
        default=None, description="Exclude items the user had these events with (default: all seen items)."
    )
    allow_list: str | None = Field(default=None, description="File of item ids; only these may be recommended.")
    deny_list: str | None = Field(default=None, description="File of item ids never recommended.")
    in_stock_column: str | None = Field(default=None, description="Catalogue column; items where it is false/0 are excluded.")
    require_price: bool = Field(default=False, description="Exclude items with no price in the catalogue.")
    price_column: str = "price"
    category_cap: CategoryCap | None = None
    diversity_lambda: float = Field(default=0.0, ge=0, le=1, description="MMR re-ranking weight; 0 disables.")


class RecommendConfig(BaseConfig):
    """Top-K for every user."""

    model: str = Field(description="Name of the model (in `models`) that produces the lists.")
    k: int = Field(default=10, ge=1)
    exclude_seen: bool = True
    fallback: list[str] = Field(default_factory=list, description="Models that backfill short lists, in order.")
    batch_size: int = Field(default=4096, ge=1)
    n_jobs: int = Field(default=-1, description="Worker threads for scoring blocks; -1 for all cores.")
    rules: RulesConfig = Field(default_factory=RulesConfig)


class ExportConfig(BaseConfig):
    """The nightly file a shop imports."""

    format: Literal["csv", "csv_wide", "jsonl", "parquet"] = "csv"
    directory: str = Field(default="exports", description="Relative to the workdir unless absolute.")
    basename: str = Field(default="recommendations", description="Files are <basename>_<YYYY-MM-DD>.<ext>.")
    delta: bool = Field(default=False, description="Also write a delta file of changed users.")
