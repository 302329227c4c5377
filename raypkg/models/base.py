"""The model contract every registered model follows (timm-like feature/head split)."""

from __future__ import annotations

import torch
from torch import nn

from raypkg.errors import UsageError


class Classifier(nn.Module):
    """A classifier split into a feature extractor and one last linear layer.

    Subclasses build ``self.head`` (an ``nn.Linear`` from ``feature_dim`` to the class
    count) and implement ``forward_features``. Last-layer gradient embeddings (as in
    CRAIG, Mirzasoleiman et al., ICML 2020, and BADGE, Ash et al., ICLR 2020) need
    exactly this split: penultimate features h and logits z = head(h).
    """

    head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape [B, feature_dim]."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def feature_dim(self) -> int:
        return self.head.in_features


class _Captured(Exception):
    """Stops a forward pass once the classifier layer's input is captured."""


class ModuleClassifier(Classifier):
    """Any ``nn.Module`` as a ``Classifier`` (a plug-in model that is not one).

    ``head`` is the module's last registered ``nn.Linear`` (the last one in
    ``module.modules()``); ``forward_features`` runs the module up to that layer and returns
    its input, captured by a forward pre-hook (the rest of the forward is skipped).
    ``forward`` is the module's own forward, so ``forward_head(forward_features(x))``
    equals ``module(x)`` exactly when the module's output is that layer's output
    (``raypkg.models.registry.check_model`` checks it on a batch of the data).
    """

    def __init__(self, module: nn.Module, name: str = "model"):
        super().__init__()
        linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UsageError(f"model {name!r} has no nn.Linear layer; effray needs a last linear layer "
                             f"(features -> classes) for coreset selection's gradient embeddings")
        self.net = module
        self.head_name = linears[-1]

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
        return self.net.get_submodule(self.head_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def grab(module, args):
            captured.append(args[0])
            raise _Captured

        handle = self.head.register_forward_pre_hook(grab)
        try:
            self.net(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        if not captured:
            raise UsageError(f"the model's forward never calls its last nn.Linear {self.head_name!r}")
        return captured[0]
