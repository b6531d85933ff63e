"""Models by name: ``@register("item_knn")`` on a class makes it usable as ``kind: item_knn``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from recctl.errors import ConfigError

if TYPE_CHECKING:
    from recctl.models.base import Recommender

__all__ = ["MODELS", "create_model", "get_model_class", "model_kinds", "register"]

MODELS: dict[str, type[Recommender]] = {}
C = TypeVar("C", bound=type[Any])

# Modules that define registered models; imported on first look-up so that importing the
# registry stays cheap. A model module that needs an optional extra (torch) imports it lazily, so
# every kind is registered and a missing extra is reported only when the model is used.
_MODEL_MODULES = (
    "recctl.models.popularity",
    "recctl.models.lightfm_model",
    "recctl.models.item_knn",
    "recctl.models.user_knn",
    "recctl.models.ease",
    "recctl.models.rp3beta",
    "recctl.models.als",
    "recctl.models.content",
    "recctl.models.blend",
    "recctl.models.sasrec",
    "recctl.models.spark_als",
)
_loaded = False
#: the module of each built-in kind: a look-up imports only that one (``recctl recommend`` with an
#: ALS model need not import EASE's LAPACK wrappers or LightFM); other names load every module
_KIND_MODULE = {
    "popularity": "recctl.models.popularity",
    "lightfm": "recctl.models.lightfm_model",
    "item_knn": "recctl.models.item_knn",
    "user_knn": "recctl.models.user_knn",
    "ease": "recctl.models.ease",
    "rp3beta": "recctl.models.rp3beta",
    "als": "recctl.models.als",
    "content": "recctl.models.content",
    "blend": "recctl.models.blend",
    "sasrec": "recctl.models.sasrec",
    "spark_als": "recctl.models.spark_als",
}


def register(kind: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`~recctl.models.base.Recommender` under ``kind``."""

    def deco(cls: C) -> C:
        if kind in MODELS and MODELS[kind] is not cls:
            raise ValueError(f"model kind '{kind}' registered twice")
        cls.kind = kind
        MODELS[kind] = cls
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in _MODEL_MODULES:
        importlib.import_module(module)
    _loaded = True


def model_kinds() -> list[str]:
    """All registered model kinds, sorted."""
    _load_all()
    return sorted(MODELS)


def get_model_class(kind: str) -> type[Recommender]:
    """Return the class registered as ``kind``.

    Raises
    ------
    ConfigError
        Naming the registered kinds (and the closest match) when ``kind`` is unknown.
    """
    if isinstance(kind, str) and kind not in MODELS and kind in _KIND_MODULE:
        importlib.import_module(_KIND_MODULE[kind])
    if isinstance(kind, str) and kind in MODELS:
        return MODELS[kind]
    _load_all()
    if not isinstance(kind, str):  # e.g. `kind: [item_knn]` in the YAML
        raise ConfigError(f"a model kind is one name, got {kind!r}; registered: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[kind]
    except KeyError:
        close = difflib.get_close_matches(kind, MODELS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown model kind '{kind}'{hint}; registered: {', '.join(sorted(MODELS))}") from None


def create_model(config: Any) -> Recommender:
    """Instantiate an unfitted model from a validated model config."""
    cls = get_model_class(config.kind)
    return cls(config)
