"""Model registry: ``build_model(name, input_shape, num_classes)``; ``effray models`` lists it.

The names below load on first use, so that a torch-free module of this package
(``raypkg.models.density``'s settings, read while the command line is built) loads no torch.
"""

import importlib

_EXPORTS = {"Classifier": "raypkg.models.base", "MODELS": "raypkg.models.registry",
            "build_model": "raypkg.models.registry", "register_model": "raypkg.models.registry"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'raypkg.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
