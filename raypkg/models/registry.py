"""Model registry: one builder per name, ``builder(input_shape, num_classes) -> Classifier``.

Adding a model is one new class or function with ``@register_model`` in a module that
``raypkg.models.zoo`` imports. A model defined outside effray is named by import path
(``pkg.module:factory``) or by an ``effray.models`` entry point (``raypkg.plugins``).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

from raypkg.errors import UsageError
from raypkg.models.base import Classifier


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    build: Callable[..., Classifier]
    plugin: bool = False  # named by import path or entry point


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str):
    def decorator(build: Callable[..., Classifier]):
        MODELS[name] = ModelEntry(name, description, build)
        return build

    return decorator


def available_models() -> dict[str, str]:
    """Every model name with its description: the registered ones, then the entry points."""
    import raypkg.models.zoo  # noqa: F401  (registers the builders)
    from raypkg import plugins

    return plugins.listing("model", MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry of model ``name``: registered, an entry point or an import path. One-line
    ``UsageError`` for an unknown name or a plug-in that cannot be loaded."""
    import raypkg.models.zoo  # noqa: F401  (registers the builders)
    from raypkg import plugins

    if name in MODELS:
        return MODELS[name]
    factory = plugins.factory_for("model", name, MODELS)
    try:
        inspect.signature(factory).bind(None, None)
    except TypeError:
        raise UsageError(f"model {name!r}: a model factory takes (input_shape, num_classes); "
                         f"its signature is {inspect.signature(factory)}") from None
    except ValueError:  # no signature to inspect (some builtins): call it and see
        pass
    return ModelEntry(name, plugins.describe("model", name), functools.partial(_build_plugin, name, factory),
                      plugin=True)


def _build_plugin(name: str, factory: Callable, input_shape: tuple[int, ...], num_classes: int,
                  **kwargs) -> Classifier:
    from torch import nn

    from raypkg.models.base import ModuleClassifier
    from raypkg.plugins import call_factory

    model = call_factory("model", name, factory, input_shape, num_classes, **kwargs)
    if isinstance(model, Classifier):
        return model
    if not isinstance(model, nn.Module):
        raise UsageError(f"model {name!r} returned a {type(model).__name__}, not a torch nn.Module")
    return ModuleClassifier(model, name)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> Classifier:
    """Build model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_classes``."""
    return model_entry(name).build(tuple(input_shape), int(num_classes), **kwargs)


def check_model(cfg, data) -> None:
    """Refuse (one-line ``UsageError``) a plug-in model ``cfg.model`` that does not work on
    ``data``: its factory does not return an nn.Module, its output on a batch of the
    training split is not [B, num_classes], or that output is not its last nn.Linear's
    (``forward_head(forward_features(x))`` must equal ``model(x)``), or it cannot take one
    training step (``raypkg.plugins.check_trains``). Registered models
    are not checked, nor is data that is not ``DataSplits`` (a recipe that loads its own).
    The global random state is left as it was."""
    import torch

    from raypkg.data.base import DataSplits
    from raypkg.plugins import check_trains

    if not isinstance(data, DataSplits):
        return
    entry = model_entry(cfg.model)
    if not entry.plugin:
        return
    with torch.random.fork_rng(devices=[]):
        model = entry.build(tuple(data.input_shape), int(data.num_classes))
    x = data.train.x[torch.arange(min(len(data.train), 4))]
    model.eval()
    with torch.no_grad():
        try:
            out = model(x)
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise UsageError(f"model {cfg.model!r} fails on the dataset's samples of shape {data.input_shape}: "
                             f"{type(e).__name__}: {first}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), data.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UsageError(f"model {cfg.model!r} must output [batch, {data.num_classes}] logits for "
                             f"{data.num_classes} classes, got {shape}")
        features = model.forward_features(x)
        if features.dim() != 2 or not torch.equal(model.forward_head(features), out):
            head = getattr(model, "head_name", "head")
            raise UsageError(f"model {cfg.model!r}: its output is not its last nn.Linear's ({head!r}) output on "
                             f"[batch, features]; make that layer the last one registered and applied")
    with torch.random.fork_rng(devices=[]):  # dropout draws
        check_trains(cfg.model, model, x, data.train.y[: len(x)])
