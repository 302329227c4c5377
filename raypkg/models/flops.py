"""Forward FLOPs of a model per example, layer by layer: the compute measure of
`effray bench frontier` beside its seconds.

Counted: the multiply-adds of every ``nn.Linear`` and ``nn.Conv*d`` call, two FLOPs each
(batch norm, activations and pooling are a few percent of a ResNet's and are left out).
One training step on an example costs about 3x its forward FLOPs (the backward pass
computes gradients for the activations and for the weights, each about one forward;
Evci et al. 2020, RigL, appendix H), and a layer whose weights are kept at density d
costs d times its dense FLOPs.
"""

from __future__ import annotations

import torch
from torch import nn

TRAIN_STEP_FACTOR = 3  # forward + backward, in forward FLOPs (RigL, appendix H)


def layer_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Forward FLOPs per example of each Linear/Conv layer, keyed by its weight's name
    (``features.1.weight``, as ``raypkg.sparsity.masks.maskable_parameters`` names it):
    2 x weight.numel() x the output positions it is applied at (a conv's H x W, one for
    a linear layer on a vector), measured with one example through ``model``."""
    names = {module: name for name, module in model.named_modules()}
    flops: dict[str, float] = {}

    def count(module, args, output):
        positions = output[0].numel() / module.weight.shape[0]  # per example: outputs per output channel
        key = f"{names[module]}.weight" if names[module] else "weight"
        flops[key] = flops.get(key, 0.0) + 2.0 * module.weight.numel() * positions

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return flops


def forward_flops(flops: dict[str, float], densities: dict[str, float] | None = None) -> float:
    """Forward FLOPs per example: the sum over layers, each weighted by its density
    (``densities`` by weight name, e.g. ``raypkg.models.density.layer_densities``; a layer
    not named there is dense)."""
    densities = densities or {}
    return sum(f * densities.get(name, 1.0) for name, f in flops.items())


def flops_per_example(model_name: str, data):
    """``per_example(density=1.0, init="ERK", model=None)``: the forward FLOPs per example of
    the model ``model_name`` (or of ``model``, another one: an SVP proxy) on ``data``, dense,
    or each layer weighted by its density under ``init`` (``raypkg.models.density.layer_densities``)."""
    import functools

    from raypkg.models.density import layer_densities
    from raypkg.models.registry import build_model

    @functools.cache
    def layers_of(name: str):
        model = build_model(name, data.input_shape, data.num_classes)
        return model, layer_flops(model, data.input_shape)

    def per_example(density: float = 1.0, init: str = "ERK", model: str | None = None) -> float:
        net, layers = layers_of(model or model_name)
        return forward_flops(layers, None if density == 1 else layer_densities(net, density, init))

    return per_example
