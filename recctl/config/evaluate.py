"""The ``evaluate:`` section: which metrics at which K, against which baseline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from recctl.config.base import BaseConfig

MetricName = Literal[
    "precision", "recall", "f1", "map", "ndcg", "mrr", "hit_rate", "auc",
    "coverage", "novelty", "diversity", "popularity_bias", "user_coverage",
]


class EvaluateConfig(BaseConfig):
    """Offline evaluation protocol."""

    k: list[int] = Field(default_factory=lambda: [10], description="Cut-offs, e.g. [5, 10, 20].")
    metrics: list[MetricName] = Field(default_factory=lambda: ["precision", "recall", "f1", "map", "ndcg"])
    models: list[str] | None = Field(default=None, description="Models to evaluate; default all in `models`.")
    baseline: str | None = Field(
        default=None, description="Model name of the baseline; default a built-in popularity model."
    )
    exclude_seen: bool = True
    n_bootstrap: int = Field(default=1000, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    report: bool = Field(default=False, description="Also write report.html.")

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("k must be a non-empty list of positive integers")
        return sorted(set(value))
