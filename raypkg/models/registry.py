"""Model registry: one builder per name, ``builder(input_shape, num_classes) -> Classifier``.

Adding a model is one new class or function with ``@register_model`` in a module that
``raypkg.models.zoo`` imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from raypkg.errors import choose
from raypkg.models.base import Classifier


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    build: Callable[..., Classifier]


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str):
    def decorator(build: Callable[..., Classifier]):
        MODELS[name] = ModelEntry(name, description, build)
        return build

    return decorator


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> Classifier:
    """Build model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_classes``."""
    import raypkg.models.zoo  # noqa: F401  (registers the builders)

    choose("model", name, MODELS)
    return MODELS[name].build(tuple(input_shape), int(num_classes), **kwargs)
