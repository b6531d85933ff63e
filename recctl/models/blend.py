"""A blend of strategies: a weighted combination, or a fallback chain.

The blend lists its components' model configs inline and fits them itself, so one entry
under ``models:`` describes the whole thing and the train stage needs nothing special::

    models:
      hybrid_blend:
        kind: blend
        combine: weighted          # or: fallback
        normalize: minmax          # or: zscore
        components:
          - weight: 0.7
            model: {kind: lightfm, loss: warp, item_features: true}
          - weight: 0.3
            min_history: 3         # only for users with >= 3 training interactions
            model: {kind: item_knn, neighbors: 50}

``combine: weighted`` normalises each component's scores per user (min-max to [0, 1] or
z-score) and adds them with the weights; a component that cannot tell a user's items apart
(all scores equal, e.g. item-kNN for a user whose items have no neighbours) contributes 0.

``combine: fallback`` is a chain (for example hybrid, then content, then popularity): a
user's list is ordered by the first component that has an opinion about an item, then the
next... An item has an opinion from a component when the component scores it above that
user's lowest score (so item-kNN's zero-similarity items fall through to the next
component). End the chain with ``popularity`` and every user gets exactly K items.
``weight`` is ignored in this mode. ``min_history`` skips a component for users with
fewer training interactions in both modes.

Unknown users (not in the training data at all) are the pipeline's business: the list builder
(:mod:`recctl.lists`) serves them from their history through the recommend chain.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, ValidationError, field_validator

from recctl.config.base import BaseConfig
from recctl.data.dataset import Dataset
from recctl.errors import ConfigError
from recctl.models._similarity import normalize_scores
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import create_model, get_model_class, register

__all__ = ["BlendComponent", "BlendConfig", "BlendModel", "combine_scores"]


class BlendComponent(BaseConfig):
    """One member of a blend: a model config, its weight and who it serves."""

    weight: float = Field(default=1.0, ge=0, description="Weight in `combine: weighted`.")
    min_history: int = Field(default=0, ge=0, description="Skip users with fewer training interactions.")
    model: dict[str, Any] = Field(description="The component's model config (with `kind`).")

    @field_validator("model")
    @classmethod
    def _validate_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        kind = value.get("kind")
        if kind is None:
            raise ValueError("model.kind is required (a registered model kind, e.g. lightfm)")
        try:
            model_cls = get_model_class(kind)
        except ConfigError as exc:  # unknown kind: keep the message (it lists the kinds)
            raise ValueError(f"model.kind: {exc}") from None
        try:
            config = model_cls.config_class.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"model.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ValueError(problems) from None
        return config.model_dump(mode="json")


class BlendConfig(ModelConfig):
    """Parameters of :class:`BlendModel`."""

    kind: Literal["blend"] = "blend"
    components: list[BlendComponent] = Field(min_length=1, description="The blended models, in chain order.")
    combine: Literal["weighted", "fallback"] = Field(default="weighted")
    normalize: Literal["minmax", "zscore"] = Field(
        default="minmax",
        description="Per-user score normalisation (weighted mode; fallback uses minmax).",
    )
    random_state: int | None = Field(default=None, description="Seed handed to components that take one.")


def combine_scores(
    config: BlendConfig, parts: list[tuple[int, np.ndarray, np.ndarray]], shape: tuple[int, int]
) -> np.ndarray:
    """A blend's scores from its components' (see the module docstring for the two modes).

    Parameters
    ----------
    config
        The blend's config (``combine``, ``normalize``, the components' weights).
    parts
        ``(component index, score block, eligible-row mask)`` triples, in chain order; a
        component left out (it cannot score this request) is simply absent.
    shape
        ``(rows, n_items)`` of the result.

    Returns
    -------
    numpy.ndarray
        float32 ``shape``.
    """
    out = np.zeros(shape, np.float64)
    if config.combine == "weighted":
        for i, scores, eligible in parts:
            norm = normalize_scores(scores, config.normalize).astype(np.float64)
            norm = np.where(np.isfinite(norm), norm, 0.0)
            out += config.components[i].weight * norm * eligible[:, None]
        return out.astype(np.float32)
    assigned = np.zeros(shape, bool)
    n = len(config.components)
    for pos, (i, scores, eligible) in enumerate(parts):
        finite = np.isfinite(scores)
        low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
        last = pos == len(parts) - 1
        opinion = finite if last else finite & (scores > low)
        take = opinion & eligible[:, None] & ~assigned
        norm = normalize_scores(scores, "minmax")
        # tiers 2 apart keep every item of an earlier component above all later ones
        out[take] = 2.0 * (n - i) + norm[take]
        assigned |= take
    return out.astype(np.float32)


@register("blend")
class BlendModel(Recommender):
    """Weighted blend or fallback chain of other models (see the module docstring).

    Capabilities follow the components: the blend can score from a list of items, find
    similar items, or reach cold items/users if any component can (those that cannot are
    left out of that call); it updates incrementally only if all components do.
    """

    config_class = BlendConfig
    config: BlendConfig

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.components_ = self._build()
        models = self.components_
        self.supports_cold_users = any(m.supports_cold_users for m in models)
        self.supports_cold_items = any(m.supports_cold_items for m in models)
        self.needs_item_features = any(m.needs_item_features for m in models)
        self.supports_item_history = any(m.supports_item_history for m in models)
        self.supports_similar_items = any(m.supports_similar_items for m in models)
        self.supports_incremental = all(m.supports_incremental for m in models)

    def _build(self) -> list[Recommender]:
        models = []
        for comp in self.config.components:
            model_config = get_model_class(comp.model["kind"]).config_class.model_validate(comp.model)
            # like the train stage: a component without its own seed takes the blend's
            seeded = "random_state" in type(model_config).model_fields
            if seeded and getattr(model_config, "random_state", None) is None:
                model_config = model_config.model_copy(update={"random_state": self.config.random_state})
            models.append(create_model(model_config))
        return models

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        self.components_ = self._build()  # fresh, unfitted: refitting is idempotent
        n = len(self.components_)
        for i, model in enumerate(self.components_):
            sub = (lambda f, i=i: progress((i + f) / n)) if progress else None
            model.fit(dataset, progress=sub)
        self.history_ = np.diff(sp.csr_matrix(dataset.interactions).indptr).astype(np.int64)

    def _combine(self, parts: list[tuple[int, np.ndarray, np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
        """Combine (component index, score block, eligible-row mask) triples."""
        return combine_scores(self.config, parts, shape)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        history = self.history_[user_idx]
        parts = [
            (i, model.score(user_idx), history >= comp.min_history)
            for i, (model, comp) in enumerate(zip(self.components_, self.config.components, strict=True))
        ]
        return self._combine(parts, (len(user_idx), self.n_items))

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        parts = [
            (
                i,
                model.score_from_items(item_idx, weights)[None, :],
                np.array([len(item_idx) >= comp.min_history]),
            )
            for i, (model, comp) in enumerate(zip(self.components_, self.config.components, strict=True))
            if model.supports_item_history
        ]
        return self._combine(parts, (1, self.n_items)).ravel()

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        parts = [
            (i, model._similar_items(item_idx), np.ones(len(item_idx), bool))
            for i, model in enumerate(self.components_)
            if model.supports_similar_items
        ]
        return self._combine(parts, (len(item_idx), self.n_items))

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        for model in self.components_:
            model.partial_fit(dataset)
        self.history_ = np.diff(sp.csr_matrix(dataset.interactions).indptr).astype(np.int64)
