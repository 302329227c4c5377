"""Model registry: ``build_model(name, input_shape, num_classes)``; ``effray models`` lists it."""

from raypkg.models.base import Classifier
from raypkg.models.registry import MODELS, build_model, register_model

__all__ = ["Classifier", "MODELS", "build_model", "register_model"]
