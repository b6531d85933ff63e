"""The ``tune:`` section: search space, objective, budget."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from recctl.config.base import BaseConfig


class ChoiceSpace(BaseConfig):
    """Pick one of a list of values."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class IntSpace(BaseConfig):
    """An integer range, inclusive at both ends."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntSpace:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class FloatSpace(BaseConfig):
    """A float range; ``type: loguniform`` samples its logarithm uniformly."""

    type: Literal["float", "loguniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> FloatSpace:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


ParamSpace = Annotated[ChoiceSpace | IntSpace | FloatSpace, Field(discriminator="type")]


class TuneConfig(BaseConfig):
    """Hyper-parameter search, scored on the validation split only."""

    model: str = Field(description="Name of the model (in `models`) whose parameters are searched.")
    method: Literal["random", "grid", "tpe"] = "random"
    n_trials: int = Field(default=10, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    objective: str = Field(default="ndcg@10", description="metric@k on the validation split, maximised.")
    space: dict[str, ParamSpace] = Field(default_factory=dict)
    patience: int = Field(default=3, ge=1, description="Epochs without improvement before early stopping.")
    n_jobs: int = Field(default=1, description="Parallel trial processes; -1 for all cores.")
