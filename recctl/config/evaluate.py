"""The ``evaluate:`` section: which metrics at which K, against which baseline, how compared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from recctl.config.base import BaseConfig
from recctl.metric_registry import MAX_K, metric_names, spec


def _known_metric(name: str) -> str:
    spec(name)  # ValueError naming the registered metrics (and the closest one)
    return name


#: a metric name, checked against recctl.metric_registry (the one list of metrics)
MetricName = Annotated[str, AfterValidator(_known_metric)]
#: metrics that cannot be a primary metric (no per-user value)
_NOT_PRIMARY = metric_names(per_user=False)
_DEFAULT_METRICS: list[MetricName] = ["precision", "recall", "f1", "map", "ndcg"]


class EvaluateConfig(BaseConfig):
    """Offline evaluation protocol (definitions of every metric in docs/metrics.md)."""

    k: list[int] = Field(default_factory=lambda: [10], description="Cut-offs, e.g. [5, 10, 20].")
    metrics: list[MetricName] = Field(default_factory=lambda: list(_DEFAULT_METRICS))
    models: list[str] | None = Field(default=None, description="Models to evaluate; default all in `models`.")
    baseline: str | None = Field(
        default=None, description="Model name of the baseline; default a built-in popularity model."
    )
    primary_metric: str | None = Field(
        default=None,
        description="metric@k that picks the best model, e.g. ndcg@10; "
        "default ndcg at the largest K (or the first metric).",
    )
    exclude_seen: bool = Field(default=True, description="Leave each user's training items out of their ranking.")
    candidates: Literal["trained", "all", "allow_list"] = Field(
        default="trained",
        description=(
            "Items a model may rank: `trained`: items with a training interaction (what collaborative models "
            "can know; tuning uses the items of its own training part); `all`: the whole catalogue (cold items "
            "too: for hybrid / content models meant to surface new items); `allow_list`: the ids in "
            "`candidate_list`. Held-out items outside the candidates stay relevant (they count as misses)."
        ),
    )
    candidate_list: str | None = Field(
        default=None,
        description="`candidates: allow_list`: text file (one id a line) or CSV/Parquet with an `item_id` column.",
    )
    n_bootstrap: int = Field(default=1000, ge=0, description="Paired bootstrap resamples for the intervals.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level (Holm-corrected).")
    test: Literal["wilcoxon", "t"] = Field(default="wilcoxon", description="Paired test: Wilcoxon signed-rank or t.")
    batch_size: int = Field(default=4096, ge=1, description="Users scored per block.")
    n_jobs: int = Field(default=-1, ge=-1, description="Worker threads ranking each model's users; -1 for all cores.")
    report: bool = Field(default=False, description="Also write report.html.")

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 or k > MAX_K for k in value):
            raise ValueError(f"k must be a non-empty list of integers between 1 and {MAX_K:,}")
        return sorted(set(value))

    @field_validator("metrics")
    @classmethod
    def _some_metric(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("metrics must name at least one metric")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _candidate_list_given(self) -> EvaluateConfig:
        if (self.candidates == "allow_list") != (self.candidate_list is not None):
            raise ValueError("candidates: allow_list and candidate_list go together (give both or neither)")
        return self

    @model_validator(mode="after")
    def _primary_is_computed(self) -> EvaluateConfig:
        if self.primary_metric is None:
            return self
        allowed = [f"{m}@{kk}" for m in self.metrics if m not in _NOT_PRIMARY and m != "auc" for kk in self.k]
        allowed += ["auc"] if "auc" in self.metrics else []
        if self.primary_metric not in allowed:
            raise ValueError(
                f"primary_metric '{self.primary_metric}' is not computed; choose one of: {', '.join(allowed)}"
            )
        return self

    def primary(self) -> str:
        """The metric@k that picks the best model."""
        if self.primary_metric:
            return self.primary_metric
        if "ndcg" in self.metrics:
            return f"ndcg@{max(self.k)}"
        first = next((m for m in self.metrics if m not in _NOT_PRIMARY), "auc")
        return first if first == "auc" else f"{first}@{max(self.k)}"
