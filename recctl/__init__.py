"""recctl: personalised product recommendations from a shop's raw exports.

The Python API mirrors the command line. The entry point is :class:`recctl.Experiment`
(docs/python.md): stages by config, lists by shop ids as polars frames, the same lists as the
CLI. Every public function takes a :class:`~recctl.config.Config` first.

>>> import recctl                                            # doctest: +SKIP
>>> exp = recctl.Experiment("configs/quickstart.yaml")       # doctest: +SKIP
>>> exp.run()                                                # doctest: +SKIP
>>> exp.recommend(["C10001", "C10002"], k=5)                 # doctest: +SKIP

Names are imported lazily so that ``import recctl`` (and ``recctl --help``) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Experiment": "recctl.experiment",
    "load_config": "recctl.config",
    "Config": "recctl.config",
    "run_all": "recctl.pipeline",
    "run_ingest": "recctl.stages.ingest",
    "run_preprocess": "recctl.stages.preprocess",
    "run_train": "recctl.stages.train",
    "load_trained_model": "recctl.model_store",
    "run_update": "recctl.stages.update",
    "run_evaluate": "recctl.stages.evaluate",
    "run_tune": "recctl.stages.tune",
    "run_recommend": "recctl.stages.recommend",
    "run_serve_export": "recctl.stages.export",
    "Dataset": "recctl.data.dataset",
    "load_dataset": "recctl.experiment",
    "Recommender": "recctl.models.base",
    "create_model": "recctl.models.registry",
    "model_kinds": "recctl.models.registry",
    "Columns": "recctl.columns",
    "RecctlError": "recctl.errors",
    "ConfigError": "recctl.errors",
    "DataError": "recctl.errors",
    "ArtifactError": "recctl.errors",
    "MissingExtraError": "recctl.errors",
    "ExportValidationError": "recctl.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recctl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
