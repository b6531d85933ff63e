"""Which models and data serve now: the train stage's, or a later incremental update's.

``recctl update`` writes ``<workdir>/update/`` (models + the grown dataset in the preprocess
layout). It *serves* — ``recommend`` and ``serve-export`` read it instead of ``train/`` +
``preprocess/`` — only while it is current: its manifest names the sha256 of the train
manifest it was built on, and that must still be the train stage's manifest. A later full
``recctl train`` (or ``recctl run``) therefore silently retires the update, and an update
never mixes with models of another training run. ``evaluate`` and ``tune`` always read the
train stage: they measure what was trained, on the split it was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recctl.artifacts import Manifest
from recctl.config import Config
from recctl.errors import ArtifactError
from recctl.graph import current_update, require_stage

__all__ = [
    "UPDATE_STAGE",
    "ServingSource",
    "current_update",
    "load_serving_model",
    "serving_source",
]

UPDATE_STAGE = "update"


@dataclass
class ServingSource:
    """Where serving reads from: a data directory (preprocess layout) and model files."""

    data_dir: Path
    models_dir: Path
    manifest: Manifest
    stage: str  # "train" or "update"

    def model_file(self, name: str) -> Path:
        """Path of model ``name``'s file (whether or not the stage has it)."""
        entry = self.manifest.summary.get("models", {}).get(name, {})
        return self.models_dir / entry.get("file", f"{name}.pkl")

    def has_model(self, name: str) -> bool:
        """True when this source holds model ``name``."""
        return name in self.manifest.summary.get("models", {})


def serving_source(cfg: Config) -> ServingSource:
    """The current update when there is one, else ``preprocess/`` + ``train/``.

    Raises
    ------
    ArtifactError
        When neither a current update nor finished preprocess + train stages exist.
    """
    update = current_update(cfg)
    if update is not None:
        require_stage(cfg, UPDATE_STAGE)  # an update behind ingest serves stale lists
        return ServingSource(data_dir=update[0], models_dir=update[0], manifest=update[1], stage=UPDATE_STAGE)
    pre_dir, _ = require_stage(cfg, "preprocess", ["users.parquet", "items.parquet"])
    train_dir, train_manifest = require_stage(cfg, "train")
    return ServingSource(data_dir=pre_dir, models_dir=train_dir, manifest=train_manifest, stage="train")


def load_serving_model(cfg: Config, name: str, source: ServingSource | None = None) -> Any:
    """Load model ``name`` from the serving source (sha256 checked before unpickling).

    A model the update did not touch (not listed in its manifest) is refused rather than
    served against the grown id maps it was not trained on.

    Raises
    ------
    ArtifactError
        Naming the command to run.
    """
    from recctl.model_store import load_trained_model
    from recctl.models.base import Recommender

    src = source or serving_source(cfg)
    if src.stage == "train":
        return load_trained_model(cfg, name, for_serving=True)
    if not src.has_model(name):
        raise ArtifactError(
            f"{src.models_dir}: the current update has no model '{name}' (updated: "
            f"{', '.join(src.manifest.summary.get('models', {})) or 'none'}); run "
            f"`recctl update {cfg.source_path or 'CONFIG'}` with it (update.models) or retrain."
        )
    entry = src.manifest.summary["models"][name]
    record = src.manifest.output(entry["file"])
    return Recommender.load(src.models_dir / entry["file"], record.sha256)
