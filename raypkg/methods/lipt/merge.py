"""LiPT step 3: merge the K shard models in one round (Ro et al. 2023, Sec. 3).

Weight averaging ("model soup", Wortsman et al. 2022): theta = (1/K) sum_k theta_k, every
floating-point tensor of the state dict averaged entrywise. Each shard model is sparse:
shard k keeps the weights where its boolean mask m_k is on and holds exact zeros
elsewhere (``StaticMask``). How those zeros enter the average is the merge rule
(``--merge``), for every masked weight tensor w (biases, norm parameters and buffers are
dense and always take the plain mean):

- ``zeros``: the plain mean of the masked weights, zeros included,
  w = (1/K) sum_k m_k * w_k                                                    (1)
  Its support is the union of the K supports, and a weight kept by j of K shards is
  shrunk by j/K. With K own ERK masks at density 0.05 most weights are kept by one shard,
  so most of the merged model is its shards' weights divided by K: a near-flat softmax.
- ``keepers``: each weight averaged over the shards that keep it,
  w = sum_k m_k * w_k / max(1, c),   c = sum_k m_k  (the keep count)            (2)
  weights kept by no shard stay 0. No shrinkage, but a weight kept by one shard is that
  shard's alone, so the merged model mixes unrelated pieces of K networks.
- ``shared-mask``: every shard trains under the same mask m (drawn once per run from the
  run seed), so c is K on the mask and 0 off it and (1) and (2) coincide:
  w = m * (1/K) sum_k w_k                                                      (3)
  the soup of K models that share their init and their sparsity pattern.

The masks are not read off the weights (a kept weight can be exactly 0): the caller
passes the masks the shards trained under (``raypkg.methods.lipt.pretrain.shard_masks``).

Batch norm: averaged running statistics do not describe the averaged weights' features,
so they are re-estimated on a sample of the training data (``torch.optim.swa_utils.update_bn``,
as for SWA, Izmailov et al. 2018): one pass in train mode with cumulative averaging, for
every merge rule. Before it the running statistics are the plain means; integer
buffers (``num_batches_tracked``) are taken from the first model; update_bn resets them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from raypkg.data.base import IndexedDataset


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]],
                        masks: Sequence[dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """The merge of K state dicts with the same keys. ``masks`` None: the entrywise mean of
    every floating-point tensor, eq. (1). Otherwise ``masks[k]`` is shard k's boolean
    masks by state-dict key, and each masked tensor is averaged over its keepers, eq. (2)
    (the same mask K times: eq. (3)); other floating tensors take the plain mean, integer
    tensors the first state's."""
    if not states:
        raise ValueError("nothing to average")
    if masks is not None and len(masks) != len(states):
        raise ValueError(f"{len(masks)} mask sets for {len(states)} state dicts")
    masked = set(masks[0]) if masks is not None else set()
    merged = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            merged[key] = first.clone()
            continue
        stacked = torch.stack([s[key].to(first.device) for s in states])
        if key not in masked:
            merged[key] = stacked.mean(0)
            continue
        keep = torch.stack([m[key].to(first.device, torch.bool) for m in masks])
        count = keep.sum(0).clamp(min=1).to(first.dtype)
        merged[key] = torch.where(keep, stacked, torch.zeros_like(stacked)).sum(0) / count
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
