"""Model files of the train stage: building a model as train does, and loading one checked.

Lives below the stages so that evaluation, A/B previews and incremental updates load and build
models exactly as ``train`` does without importing the stage modules.
"""

from __future__ import annotations

from typing import Any

from recctl.config import Config
from recctl.errors import ArtifactError
from recctl.graph import require_stage

__all__ = ["build_model", "load_trained_model", "with_seed"]


def with_seed(model_config: Any, seed: int) -> Any:
    """A model config whose unset ``random_state`` takes the experiment seed."""
    if "random_state" in type(model_config).model_fields and model_config.random_state is None:
        return model_config.model_copy(update={"random_state": seed})
    return model_config


def build_model(cfg: Config, name: str) -> Any:
    """An unfitted model ``name`` exactly as the train stage builds it (seeded)."""
    from recctl.models.registry import create_model

    return create_model(with_seed(cfg.model_config_for(name), cfg.seed))


def load_trained_model(cfg: Config, name: str, *, for_serving: bool = False, allow_appended: bool = False) -> Any:
    """Load model ``name`` from the train stage (fresh, sha256 checked, restricted unpickling).

    With ``for_serving`` and ``recommend.refit_on_all_data``, the copy refitted on every
    event is loaded; otherwise (and always for evaluation) the one fitted on the train split.

    Raises
    ------
    ArtifactError
        The train stage is missing or stale, or has no such model (naming what to run).
    """
    from recctl.models.base import Recommender

    train_dir, manifest = require_stage(cfg, "train", allow_appended=allow_appended)
    entry = manifest.summary.get("models", {}).get(name)
    rerun = f"recctl train {cfg.source_path or 'CONFIG'}"
    if entry is None:
        trained = ", ".join(manifest.summary.get("models", {})) or "none"
        raise ArtifactError(f"{train_dir}: no trained model '{name}' (trained: {trained}); run `{rerun}`.")
    file = entry["file"]
    if for_serving and cfg.recommend is not None and cfg.recommend.refit_on_all_data:
        if "serve_file" not in entry:
            raise ArtifactError(
                f"{train_dir}: '{name}' was not refitted on all data, but recommend.refit_on_all_data is set; "
                f"run `{rerun}` again."
            )
        file = entry["serve_file"]
    record = manifest.output(file)
    return Recommender.load(train_dir / file, record.sha256)
