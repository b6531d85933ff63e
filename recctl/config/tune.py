"""The ``tune:`` section: search space, objective, budget, early stopping and pruning.

Every key of ``space`` must be a parameter of the tuned model's config class; that check needs
the model registry and therefore runs in :func:`recctl.config._check_references`, where the
error names ``tune.space.<key>`` and lists the parameters the model accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from recctl.config.base import BaseConfig
from recctl.metric_registry import metric_names, parse_metric_at_k

__all__ = [
    "OBJECTIVE_METRICS",
    "ChoiceSpace",
    "FloatSpace",
    "IntSpace",
    "ParamSpace",
    "TuneConfig",
    "parse_objective",
]

#: metrics a tuning objective may maximise (from the one registry, recctl.metric_registry)
OBJECTIVE_METRICS = metric_names(objective=True)


def parse_objective(objective: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``.

    Raises
    ------
    ValueError
        If the text is not ``<metric>@<k>`` with a known metric and a positive K.
    """
    try:
        return parse_metric_at_k(objective, objective=True)
    except ValueError as exc:
        raise ValueError(f"objective {exc}") from None


class ChoiceSpace(BaseConfig):
    """Pick one of a list of values."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class IntSpace(BaseConfig):
    """An integer range, inclusive at both ends; ``log: true`` samples its logarithm uniformly."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntSpace:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("an int range with log: true needs low >= 1")
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
    """Hyper-parameter search over one or several models, scored on the validation split only."""

    model: str | None = Field(
        default=None, description="One model to search (older form of `models: [name]`; `space` is its space)."
    )
    models: list[str] | Literal["all"] | None = Field(
        default=None,
        description=(
            "Models (names in `models`) to search, each in its own space, or `all`; default: `model` if given, "
            "else all."
        ),
    )
    method: Literal["random", "grid", "tpe"] = Field(
        default="random", description="`tpe` needs the optional extra: pip install 'recctl[tune]'."
    )
    n_trials: int = Field(
        default=10, ge=1, description="Trial budget per model (including its configured-parameters trial)."
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Wall-time budget of the whole search, shared by the models and held: a trial starts only when its "
            "estimated cost fits in its model's share, a model whose first trial would not fit is skipped (and "
            "listed), epoch-wise trials are cut at their limit."
        ),
    )
    objective: str = Field(default="ndcg@10", description="metric@k on the validation split, maximised.")
    space: dict[str, ParamSpace] = Field(default_factory=dict, description="The space of `model` (older form).")
    spaces: dict[str, dict[str, ParamSpace]] = Field(
        default_factory=dict,
        description="Model name -> its space; a model without one is searched in its kind's default space.",
    )
    include_default: bool = Field(
        default=True,
        description="Trial 0 scores the model's configured parameters, so the search reports what it gained.",
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description=(
            "A tuned value replaces the configured one only when it beats it on validation per user: one-sided "
            "Wilcoxon signed-rank p-value, Bonferroni over the trials compared, below alpha."
        ),
    )
    extend_edges: bool = Field(
        default=True,
        description="When a best value is at the edge of a log-scaled range, search the next range beyond it.",
    )
    blend: bool = Field(
        default=True, description="Also tune the weights of a blend of the best models (with two or more models)."
    )
    blend_top: int = Field(default=3, ge=2, description="How many of the best models the tuned blend combines.")
    blend_trials: int = Field(default=12, ge=1, description="Weight vectors tried for the blend.")
    apply: bool = Field(
        default=False,
        description=(
            "`recctl run` / `train` use the tuning result: tune runs before train, every tuned model is trained "
            "with its accepted parameters (and `<name>@default` with the configured ones, so evaluate shows "
            "defaults vs tuned on test), and the model tune picked is trained as `tuned` (serve it with "
            "recommend.model: tuned)."
        ),
    )
    grid_points: int = Field(
        default=3, ge=2, description="`grid`: points per float/int range (choices use all values)."
    )
    max_epochs: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Epoch-wise models: epochs a trial may run before early stopping picks the best "
            "(default: the model's configured `epochs`). Ignored when `epochs` is in the space."
        ),
    )
    patience: int = Field(default=3, ge=1, description="Epochs without improvement before early stopping.")
    min_delta: float = Field(
        default=0.0, ge=0, description="Smallest gain in the objective that counts as an improvement."
    )
    prune: bool = Field(default=True, description="Stop a trial whose curve falls below the median of finished ones.")
    prune_warmup_epochs: int = Field(default=3, ge=1, description="Epochs a trial runs before it may be pruned.")
    prune_min_trials: int = Field(default=4, ge=1, description="Finished trials needed before pruning starts.")
    n_jobs: int = Field(default=1, description="Parallel trial processes; -1 for all cores.")

    @model_validator(mode="after")
    def _one_form(self) -> TuneConfig:
        if self.space and self.model is None:
            raise ValueError("`space` is the space of `model`; name the model, or use spaces: {<model>: {...}}")
        if self.model is not None and self.models is not None:
            raise ValueError("give `model` (one) or `models` (several), not both")
        return self

    def model_names(self, configured: list[str]) -> list[str]:
        """The names of the models searched, in config order."""
        if self.model is not None:
            return [self.model]
        if self.models is None or self.models == "all":
            return list(configured)
        return list(self.models)

    def space_for(self, name: str) -> dict[str, ChoiceSpace | IntSpace | FloatSpace] | None:
        """The configured space of model ``name`` (``None``: use its kind's default space)."""
        if name == self.model and self.space:
            return dict(self.space)
        return dict(self.spaces[name]) if name in self.spaces else None

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        parse_objective(value)
        return value.strip()

    @field_validator("n_jobs")
    @classmethod
    def _jobs(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"n_jobs must be a positive number of processes or -1 (all cores); got {value}")
        return value

    @property
    def metric(self) -> str:
        """The objective's metric name (``ndcg`` in ``ndcg@10``)."""
        return parse_objective(self.objective)[0]

    @property
    def k(self) -> int:
        """The objective's cut-off (``10`` in ``ndcg@10``)."""
        return parse_objective(self.objective)[1]
