"""LiPT step 3: merge the K shard models in one round (Ro et al. 2023, Sec. 3).

Weight averaging ("model soup", Wortsman et al. 2022): theta = (1/K) sum_k theta_k, every
floating-point tensor of the state dict averaged entrywise.

Masks: each shard model is sparse (its masked weights are exactly 0), and the average is
taken over the masked weights as they are, zeros included: theta = (1/K) sum_k m_k * w_k.
The merged model's support is the union of the K supports, and a weight that only some
shards keep is shrunk by (shards keeping it) / K. The merged model is dense on that
union and no mask is applied to it afterwards.

Batch norm: averaged running statistics do not describe the averaged weights' features,
so they are re-estimated on a sample of the training data (``torch.optim.swa_utils.update_bn``,
as for SWA, Izmailov et al. 2018): one pass in train mode with cumulative averaging.
Integer buffers (``num_batches_tracked``) are taken from the first model; update_bn
resets them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from raypkg.data.base import IndexedDataset


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The entrywise mean of K state dicts with the same keys (integer tensors: the first's)."""
    if not states:
        raise ValueError("nothing to average")
    merged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            merged[key] = torch.stack([s[key].to(first.device) for s in states]).mean(0)
        else:
            merged[key] = first.clone()
    return merged


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reestimate_bn(model: nn.Module, data: IndexedDataset, samples: int, batch_size: int, seed: int,
                  device: torch.device | str | None = None) -> int:
    """Re-estimate ``model``'s batch-norm running statistics on ``samples`` training examples
    drawn without replacement (seeded); returns how many were used (0: no batch norm)."""
    from torch.optim.swa_utils import update_bn

    if not has_batch_norm(model):
        return 0
    device = device or next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    take = torch.randperm(len(data), generator=g)[:min(samples, len(data))]
    x = data.x[take.to(data.x.device)]
    loader = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    update_bn(loader, model, device=device)
    return len(take)
