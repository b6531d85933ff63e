"""The ``recommend:`` and ``export:`` sections: top-K, business rules, the nightly file.

Example::

    recommend:
      model: lightfm_warp
      k: 10
      fallback: [popular]            # backfills short lists and serves unknown users
      min_score: 0.0                 # optional: main-model scores <= 0 count as "no evidence"
      rules:
        exclude_events: [purchase]   # never re-recommend a purchase, but keep viewed items
        deny_list: deny.txt          # one item id per line (or a CSV with an item_id column)
        in_stock_column: in_stock
        require_price: true
        category_cap: {column: category, max_per_list: 3}
        diversity_lambda: 0.2        # MMR re-ranking; 0 disables
    export:
      format: csv                    # csv | csv_wide | jsonl | parquet
      directory: exports             # relative to the workdir
      latest: both                   # <basename>_latest.json and a <basename>_latest.<ext> symlink
      bundle: true                   # also <workdir>/export/bundle/ for recctl.serving.load
      gates: {max_drop: 0.2, metric: baseline}   # refuse a bad night (exit 7, yesterday's file stays)
      versions: 7                    # keep the last 7 publications for `recctl rollback`
      related: {model: knn, k: 8, fallback: [popular], separator: ","}   # related products per SKU
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recctl.config.base import BaseConfig
from recctl.metric_registry import MAX_K

__all__ = ["CategoryCap", "ExportConfig", "GatesConfig", "RecommendConfig", "RelatedConfig", "RulesConfig"]


class CategoryCap(BaseConfig):
    """At most ``max_per_list`` items of the same ``column`` value in one list."""

    column: str = Field(description="Catalogue column (e.g. category, brand).")
    max_per_list: int = Field(ge=1)


class RulesConfig(BaseConfig):
    """Business rules applied to every list."""

    exclude_events: list[str] | None = Field(
        default=None,
        description="Exclude items the user had these events with, e.g. [purchase] (default: all seen items).",
    )
    allow_list: str | None = Field(default=None, description="File of item ids; only these may be recommended.")
    deny_list: str | None = Field(default=None, description="File of item ids never recommended.")
    in_stock_column: str | None = Field(
        default=None, description="Catalogue column; items where it is false/0 are excluded."
    )
    require_price: bool = Field(
        default=False, description="Exclude items with no (or a non-positive) price in the catalogue."
    )
    price_column: str = "price"
    category_cap: CategoryCap | None = None
    diversity_lambda: float = Field(default=0.0, ge=0, le=1, description="MMR re-ranking weight; 0 disables.")
    diversity_column: str | None = Field(
        default=None,
        description="MMR similarity from this catalogue column (same value = similar); default: item features, "
        "else the category_cap column.",
    )
    candidates: int | None = Field(
        default=None, ge=1, description="Candidates fetched per user before caps / MMR (default: 3 x k + 20)."
    )

    @property
    def needs_candidates(self) -> bool:
        """Whether lists are re-ranked or filtered after the top-K (caps, MMR)."""
        return self.category_cap is not None or self.diversity_lambda > 0


class RecommendConfig(BaseConfig):
    """Top-K for every user."""

    model: str = Field(description="Name of the model (in `models`) that produces the lists.")
    k: int = Field(default=10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(
        default=True, description="Leave out items the user interacted with (train and test events)."
    )
    fallback: list[str] = Field(default_factory=list, description="Models that backfill short lists, in order.")
    batch_size: int = Field(default=4096, ge=1, description="Users per block written to Parquet.")
    n_jobs: int = Field(default=-1, description="Worker threads for scoring blocks; -1 for all cores.")
    max_block_mb: float = Field(default=16.0, gt=0, description="Memory budget of one score block per worker.")
    min_score: float | None = Field(
        default=None,
        description="Main-model items scoring <= this are dropped and their slots backfilled from the fallback "
        "chain (e.g. 0 for item_knn, whose 0 means no evidence).",
    )
    rules: RulesConfig = Field(default_factory=RulesConfig)
    refit_on_all_data: bool = Field(
        default=True,
        description=(
            "Train also fits every model on all events (train + test) and recommend serves those, so the "
            "nightly lists learn from the newest events; evaluate keeps the train-split models. `recctl update` "
            "then grows these serving models. false: serve the train-split models (half the training time)."
        ),
    )

    @model_validator(mode="after")
    def _fallback_differs(self) -> RecommendConfig:
        if self.model in self.fallback:
            raise ValueError(f"fallback lists the main model '{self.model}'; list other models only")
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError("fallback lists a model twice")
        if self.min_score is not None and not self.fallback:
            raise ValueError(
                "min_score frees the slots of weak main-model items for the fallback chain, which is empty; "
                "add a fallback (e.g. fallback: [popular]) or remove min_score"
            )
        return self


class GatesConfig(BaseConfig):
    """Checks a new nightly file must pass before it replaces the published one (exit 7 otherwise)."""

    min_users: int | None = Field(default=1, ge=0, description="Refuse a file with fewer customers than this.")
    min_rows: int | None = Field(default=None, ge=0, description="Refuse a file with fewer rows than this.")
    max_drop: float | None = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Refuse a file whose customers or rows are more than this fraction below the published file's "
        "(0.2: a 20% drop; null turns the check off).",
    )
    metric: Literal["baseline", "off"] = Field(
        default="baseline",
        description="baseline: refuse when the serving model's evaluate.primary_metric is below the baseline "
        "model's on the test split (skipped when the serving model is the baseline or was not evaluated).",
    )
    metric_floor: float | None = Field(
        default=None, description="Refuse when the serving model's evaluate.primary_metric is below this value."
    )
    require_evaluation: bool = Field(
        default=False,
        description="true: refuse to publish when the metric gates cannot be checked (no current evaluation); "
        "false: skip them and say so in the summary.",
    )


RelatedLayout = Literal["long", "sku_list"]
RELATED_LAYOUTS: tuple[RelatedLayout, ...] = ("long", "sku_list")


class RelatedConfig(BaseConfig):
    """Related products: K related items for every catalogue item, for a shop's product import."""

    model: str = Field(
        description="The model (in `models`) whose item similarity ranks related items "
        "(item_knn, ease, lightfm embeddings, content, ...)."
    )
    k: int = Field(default=10, ge=1, description="Related items per catalogue item.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Models that fill lists the main model leaves short: more models with item similarity, or "
        "popularity (fills with the most popular allowed items).",
    )
    min_score: float | None = Field(
        default=0.0,
        description="Similarities at or below this are not 'related' (0: no evidence); null keeps every score.",
    )
    layouts: list[RelatedLayout] = Field(
        default_factory=lambda: list(RELATED_LAYOUTS),
        description="long: one row per item and rank (<basename>_related_<date>); sku_list: one row per item with "
        "its related SKUs in one cell (<basename>_related_skus_<date>.csv), the shape Magento and WooCommerce "
        "product CSV imports take.",
    )
    sku_column: str = Field(default="sku", description="Header of the item column in the sku_list file.")
    list_column: str = Field(
        default="related_skus",
        description="Header of the list column (Magento: related_skus / crosssell_skus / upsell_skus; "
        "WooCommerce: Cross-sells / Upsells).",
    )
    separator: str = Field(default=",", min_length=1, description="Between the SKUs inside the list cell.")
    delimiter: Literal[",", ";", "\t", "|"] = Field(
        default=",", description="Between CSV fields (';' for spreadsheets in locales with a decimal comma)."
    )
    bom: bool = Field(default=False, description="Start CSV files with a UTF-8 byte order mark (Excel on Windows).")
    spreadsheet_safe: bool = Field(
        default=True,
        description="Prefix cells starting with = + - @ with ' (CSV injection guard, as the nightly file); "
        "false for an importer that takes SKUs verbatim.",
    )

    @model_validator(mode="after")
    def _separators(self) -> RelatedConfig:
        if self.model in self.fallback:
            raise ValueError(f"fallback lists the main model '{self.model}'; list other models only")
        if self.separator in ('"', "\n", "\r"):
            raise ValueError("separator cannot be a quote or a line break")
        return self


class ExportConfig(BaseConfig):
    """The nightly file a shop imports (see docs/architecture.md, "Serving and export")."""

    format: Literal["csv", "csv_wide", "jsonl", "parquet"] = "csv"
    directory: str = Field(default="exports", description="Relative to the workdir unless absolute.")
    basename: str = Field(
        default="recommendations",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Files are <basename>_<YYYY-MM-DD>.<ext>.",
    )
    latest: Literal["json", "symlink", "both"] = Field(
        default="both", description="How the current file is named: latest.json, a `latest.<ext>` symlink, or both."
    )
    include_source: bool = Field(default=True, description="Add the `source` column (which model gave each item).")
    float_precision: int = Field(default=6, ge=1, le=12, description="Decimals of `score` in text formats.")
    keep: int | None = Field(default=None, ge=1, description="Keep only the newest N dated files (default: keep all).")
    delta: bool = Field(default=False, description="Also write a delta file of changed users.")
    bundle: bool = Field(
        default=True, description="Also write the serving bundle (<workdir>/export/bundle/, see recctl.serving)."
    )
    gates: GatesConfig = Field(default_factory=GatesConfig)
    related: RelatedConfig | None = Field(
        default=None, description="Also publish related products for every catalogue item (see RelatedConfig)."
    )
    versions: int = Field(
        default=7,
        ge=0,
        description="Keep the last N published versions (file, bundle, serving models, metrics) under "
        "<workdir>/versions/ for `recctl rollback`; 0 keeps none.",
    )
