"""The engine's optimizer: torch's SGD with the run's settings (a method may put another
stepper in ``ctx.optimizer`` at fit start, as the sparse kernels do: ``raypkg.sparsity.optim``)."""

from __future__ import annotations

import torch
from torch import nn

from raypkg.engine.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr[0], momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
