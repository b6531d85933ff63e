"""Default search spaces per model kind, and what to do when a best value sits at an edge.

``recctl tune`` searches every listed model in its own space: ``tune.spaces.<name>`` when the
config gives one, otherwise the default space of the model's kind below. The ranges come
from the values that won on MovieLens and Online Retail under per-user temporal splits
(weights are scaled to mean 1 by ``load_dataset``, so regularisation ranges hold whatever
``event_weights`` or the recency decay are). Kinds with nothing worth searching (popularity)
have an empty space: their configured parameters are scored once, so they still take part in
the ranking on validation.

A kind registered later adds its space with :func:`register_space` (the sequence model does).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import TypeAdapter

from recctl.config.tune import ChoiceSpace, FloatSpace, IntSpace, ParamSpace

__all__ = ["DEFAULT_SPACES", "at_edge", "default_space", "extend_space", "register_space"]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ParamSpace)

#: kind -> parameter -> space (plain data, validated on use)
DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "popularity": {},
    "ease": {
        "l2": {"type": "loguniform", "low": 20.0, "high": 5000.0},
        # scoring recent history more (0 = off) lifted NDCG@10 by ~12% on MovieLens latest-small
        "recency_half_life": {"type": "choice", "values": [0.0, 3.0, 5.0, 10.0, 30.0]},
    },
    "item_knn": {
        "neighbors": {"type": "int", "low": 10, "high": 500, "log": True},
        "shrink": {"type": "choice", "values": [0.0, 1.0, 10.0, 50.0, 200.0]},
        "weighting": {"type": "choice", "values": ["none", "tfidf", "bm25"]},
    },
    "user_knn": {
        "neighbors": {"type": "int", "low": 10, "high": 500, "log": True},
        "shrink": {"type": "choice", "values": [0.0, 1.0, 10.0, 50.0, 200.0]},
        "use_weights": {"type": "choice", "values": [True, False]},
    },
    "rp3beta": {
        "alpha": {"type": "float", "low": 0.2, "high": 1.5},
        "beta": {"type": "float", "low": 0.0, "high": 0.9},
        "neighbors": {"type": "int", "low": 20, "high": 1000, "log": True},
    },
    "als": {
        "factors": {"type": "choice", "values": [32, 64, 128, 256]},
        "regularization": {"type": "loguniform", "low": 0.001, "high": 50.0},
        "alpha": {"type": "loguniform", "low": 0.5, "high": 100.0},
        "iterations": {"type": "int", "low": 8, "high": 30},
    },
    "lightfm": {
        "no_components": {"type": "choice", "values": [16, 32, 64, 128]},
        "learning_rate": {"type": "loguniform", "low": 0.005, "high": 0.1},
        "item_alpha": {"type": "choice", "values": [0.0, 1e-7, 1e-6, 1e-5]},
        "user_alpha": {"type": "choice", "values": [0.0, 1e-7, 1e-6, 1e-5]},
    },
    # epochs are searched epoch-wise (iter_fit); each trial costs minutes, so the space is small
    "sasrec": {
        "lr": {"type": "loguniform", "low": 5e-4, "high": 5e-3},
        "dropout": {"type": "float", "low": 0.1, "high": 0.5},
        "hidden_size": {"type": "choice", "values": [32, 64, 128]},
        "max_len": {"type": "choice", "values": [20, 50, 100]},
    },
    "content": {},
    "blend": {},
}


def register_space(kind: str, space: dict[str, dict[str, Any]]) -> None:
    """Set the default space of ``kind`` (each entry a ``tune.space``-style mapping)."""
    for key, spec in space.items():
        _ADAPTER.validate_python(spec)  # fail at import, not mid-search
        assert isinstance(key, str)
    DEFAULT_SPACES[kind] = dict(space)


def default_space(kind: str, allowed: set[str] | None = None) -> dict[str, ChoiceSpace | IntSpace | FloatSpace]:
    """The validated default space of ``kind`` (empty when it has none).

    ``allowed`` drops parameters the model's config class does not have (a space written for a
    newer version of a model).
    """
    raw = DEFAULT_SPACES.get(kind, {})
    return {k: _ADAPTER.validate_python(v) for k, v in raw.items() if allowed is None or k in allowed}


def at_edge(spec: ChoiceSpace | IntSpace | FloatSpace, value: Any) -> str | None:
    """``"low"`` / ``"high"`` when ``value`` lies in the outer 5% of a numeric range (on its own scale).

    Choices have no edge worth extending and return ``None``; so does a range of one value.
    """
    if isinstance(spec, ChoiceSpace) or value is None or spec.low == spec.high:
        return None
    log = (isinstance(spec, IntSpace) and spec.log) or getattr(spec, "type", "") == "loguniform"
    low, high, v = float(spec.low), float(spec.high), float(value)
    if log:
        low, high, v = math.log(low), math.log(high), math.log(max(v, 1e-300))
    share = (v - low) / (high - low)
    if share <= 0.05:
        return "low"
    if share >= 0.95:
        return "high"
    return None


def extend_space(spec: ChoiceSpace | IntSpace | FloatSpace, side: str) -> IntSpace | FloatSpace | None:
    """The range beyond an edge, for log-scaled ranges only (``None`` when extending is not sensible).

    Log-scaled parameters are scales (a regularisation, a neighbourhood size, a confidence):
    their natural bounds are 0 and infinity, so the next decade is worth a look. Linear ranges
    usually have hard bounds (a probability, an exponent in [0, 1]); those are only reported.
    """
    if isinstance(spec, ChoiceSpace):
        return None
    if isinstance(spec, IntSpace):
        if not spec.log:
            return None
        if side == "high":
            return IntSpace(type="int", low=spec.high, high=spec.high * 4, log=True)
        low = max(1, spec.low // 4)
        return None if low >= spec.low else IntSpace(type="int", low=low, high=spec.low, log=True)
    if spec.type != "loguniform":
        return None
    if side == "high":
        return FloatSpace(type="loguniform", low=spec.high, high=spec.high * 10)
    return FloatSpace(type="loguniform", low=spec.low / 10, high=spec.low)
