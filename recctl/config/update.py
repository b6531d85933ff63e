"""The ``update:`` section: incremental updates of trained models and the drift guard."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from recctl.config.base import BaseConfig
from recctl.metric_registry import MAX_K, parse_metric_at_k


class FoldInSettings(BaseConfig):
    """How a user's vector is solved with the item embeddings fixed (LightFM models)."""

    method: Literal["mean", "ls", "warp"] = Field(
        default="warp",
        description=(
            "`mean`: mean direction of the user's items; `ls`: implicit least squares; "
            "`warp`: pairwise SGD from `mean`."
        ),
    )
    reg: float = Field(default=0.2, ge=0, description="L2 regularisation of the solved user vector.")
    steps: int = Field(default=300, ge=0, description="`warp`: SGD steps per user.")
    learning_rate: float = Field(default=0.05, gt=0, description="`warp`: step size.")


class DriftSettings(BaseConfig):
    """The drift guard (`recctl update --check-drift`): compare the update with a full retrain."""

    metric: str = Field(default="ndcg@10", description="Metric compared on the test split, as name@k.")
    max_metric_drop: float = Field(
        default=0.05,
        ge=0,
        description="Largest relative drop of the metric vs a full retrain before retraining.",
    )
    min_overlap: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description=(
            "Smallest top-K Jaccard overlap with the full retrain, relative to two retrains "
            "with different seeds "
            "for stochastic models (LightFM), absolute for deterministic ones."
        ),
    )
    overlap_k: int = Field(default=10, ge=1, le=MAX_K, description="K of the top-K overlap.")
    sample_users: int = Field(
        default=5000,
        ge=1,
        description="Unchanged users sampled for the overlap (plus every changed user).",
    )
    on_drift: Literal["report", "retrain"] = Field(
        default="retrain",
        description="`retrain`: publish the full retrain instead of the update when it fires.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_at_k(cls, value: str) -> str:
        # the registry of metric names (recctl.metric_registry), so a typo fails at load time,
        # not after the drift check has retrained every model
        parse_metric_at_k(value, objective=True)
        return value.strip()


class UpdateConfig(BaseConfig):
    """Incremental updates from batches ingested with ``recctl ingest --append``."""

    models: list[str] | None = Field(default=None, description="Models to update (default: every trained model).")
    lightfm_mode: Literal["fit_partial", "fold_in"] = Field(
        default="fit_partial",
        description=(
            "`fit_partial`: grow, fold in changed users, then continue training on the new "
            "events plus a replay sample; `fold_in`: keep item embeddings fixed and only "
            "solve the changed users (fastest)."
        ),
    )
    epochs: int = Field(default=5, ge=0, description="`fit_partial`: epochs over the new events + replay sample.")
    replay_ratio: float = Field(
        default=1.0,
        ge=0,
        description="Old interactions replayed per new one (limits forgetting; 0 disables).",
    )
    fold_in: FoldInSettings = Field(default_factory=FoldInSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
