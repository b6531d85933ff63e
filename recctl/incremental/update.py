"""Update trained models with a grown dataset instead of retraining them.

Per model kind (``exact`` means: the same model a full fit on the grown data gives):

* **LightFM** — approximate: grow the tables, fold in the changed users, optionally continue
  training on their histories plus a replay sample (:mod:`recctl.incremental.lightfm_update`).
* **popularity** — exact: counts are recounted on the grown matrix (a sum; cheap).
* **item_knn** — exact: co-occurrences change only through users with new events, so only
  the similarity rows of items sharing a user with a touched item are recomputed; with
  TF-IDF / BM25 weighting (global statistics) the similarity is rebuilt, and said so in
  ``info`` (the model's own ``partial_fit``).
* **content, user_knn** — exact: they store vectors and compute profiles at scoring time, so
  refreshing them on the grown data is all there is to do (their ``partial_fit``).
* anything else (EASE, SASRec, a blend with a LightFM part, ...) — **rebuilt**: refitted on the
  grown data, which is exact by definition and as slow as a full fit of that model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recctl.config import Config
from recctl.data.dataset import Dataset
from recctl.incremental.foldin import FoldInConfig
from recctl.incremental.lightfm_update import LightFMUpdateSettings, update_lightfm

__all__ = ["ModelUpdate", "fresh_model", "lightfm_settings", "update_model"]

log = logging.getLogger(__name__)


@dataclass
class ModelUpdate:
    """The outcome of updating one model."""

    name: str
    kind: str
    model: Any
    how: str  # "fit_partial" | "fold_in" | "incremental" | "rebuilt"
    exact: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the manifest (without the model)."""
        return {
            "kind": self.kind,
            "how": self.how,
            "exact": self.exact,
            "seconds": round(self.seconds, 3),
            "info": self.info,
        }


def lightfm_settings(cfg: Config) -> LightFMUpdateSettings:
    """The LightFM update settings of the config's ``update`` section."""
    uc = cfg.update
    fold = FoldInConfig(
        method=uc.fold_in.method,
        reg=uc.fold_in.reg,
        steps=uc.fold_in.steps,
        learning_rate=uc.fold_in.learning_rate,
        seed=cfg.seed,
    )
    return LightFMUpdateSettings(
        mode=uc.lightfm_mode,
        epochs=uc.epochs,
        replay_ratio=uc.replay_ratio,
        fold_in=fold,
        seed=cfg.seed,
    )


def fresh_model(cfg: Config, name: str) -> Any:
    """An unfitted model ``name`` exactly as the train stage builds it (seeded)."""
    from recctl.model_store import build_model

    return build_model(cfg, name)


def _is_lightfm(model: Any) -> bool:
    return getattr(model, "kind", "") == "lightfm" and hasattr(model, "lightfm_")


def update_model(
    cfg: Config,
    name: str,
    model: Any,
    dataset: Dataset,
    changed_users: np.ndarray,
    *,
    progress: Any = None,
) -> ModelUpdate:
    """Update one fitted model with the grown dataset (see the module docstring).

    Parameters
    ----------
    cfg
        The experiment config (``update`` section, seed, the model's config for rebuilds).
    name
        The model's name in ``models``.
    model
        The fitted model, trained on a prefix of ``dataset``'s users and items.
    dataset
        The grown dataset.
    changed_users
        Users with new events.
    progress
        Optional callback with the fraction done.

    Returns
    -------
    ModelUpdate
    """
    t0 = time.perf_counter()
    if _is_lightfm(model):
        settings = lightfm_settings(cfg)
        info = update_lightfm(model, dataset, changed_users, settings, progress=progress)
        return ModelUpdate(name, model.kind, model, settings.mode, False, time.perf_counter() - t0, info)
    if model.supports_incremental:
        model.partial_fit(dataset, progress=progress)
        info = dict(getattr(model, "update_info_", {}) or {})
        return ModelUpdate(name, model.kind, model, "incremental", True, time.perf_counter() - t0, info)
    fresh = fresh_model(cfg, name).fit(dataset, progress=progress)
    reason = f"model kind '{model.kind}' has no incremental update"
    log.info("%s: rebuilt on the grown data (%s)", name, reason)
    return ModelUpdate(name, fresh.kind, fresh, "rebuilt", True, time.perf_counter() - t0, {"reason": reason})
