"""The model contract every registered model follows (timm-like feature/head split)."""

from __future__ import annotations

import torch
from torch import nn


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
