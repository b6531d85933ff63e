"""Recommendation strategies behind one interface (:class:`recctl.models.base.Recommender`)."""

from recctl.models.base import ModelConfig, Recommender
from recctl.models.registry import MODELS, create_model, get_model_class, model_kinds, register

__all__ = ["MODELS", "ModelConfig", "Recommender", "create_model", "get_model_class", "model_kinds", "register"]
