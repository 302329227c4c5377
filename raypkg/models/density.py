"""Which weights a mask covers and how an overall density splits into layer densities
(uniform, or ERK after Evci et al., "Rigging the Lottery", RigL, ICML 2020, section 3
"Sparsity distribution"): the masks of ``raypkg.sparsity`` and the FLOP counts of
``raypkg.models.flops`` both use them. Importing it loads no torch: the sparse settings
(``raypkg.sparsity.settings``) take their choices and check from here while the command line
is built."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from raypkg.errors import UsageError, choose

if TYPE_CHECKING:
    from torch import nn

SPARSE_INITS = ("uniform", "ERK")


def check_density(density: float) -> None:
    if not (0.0 < density <= 1.0):
        raise UsageError(f"density must be in (0, 1], got {density:g}")


def norm_types() -> tuple[type, ...]:
    """The normalisation layers, whose parameters no mask covers."""
    from torch import nn

    return (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def maskable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every weight tensor of ``model`` except biases and normalisation parameters
    (BatchNorm/InstanceNorm/LayerNorm/GroupNorm), keyed by ``named_parameters`` name, in
    module order. A parameter shared by two modules is listed once."""
    out: dict[str, nn.Parameter] = {}
    skipped = norm_types()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, skipped):
            continue
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or name.endswith("_bias") or id(param) in seen:
                continue
            seen.add(id(param))
            out[f"{module_name}.{name}" if module_name else name] = param
    return out


def erk_densities(model: nn.Module, density: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel densities (RigL section 3): layer l keeps eps * score_l of its
    N_l weights, score_l = sum(shape_l) / prod(shape_l), with eps solving
    sum_l eps * score_l * N_l = density * sum_l N_l. A layer whose eps * score_l exceeds 1
    is made dense and eps is solved again over the remaining layers (its N_l then counts
    as dense on the right-hand side)."""
    shapes = {name: tuple(p.shape) for name, p in maskable_parameters(model).items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    scores = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    target = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [name for name in shapes if name not in dense]
        if not rest:
            eps = 0.0
            break
        budget = target - sum(sizes[name] for name in dense)
        eps = budget / sum(scores[name] * sizes[name] for name in rest)
        saturated = {name for name in rest if eps * scores[name] > 1.0}
        if not saturated:
            break
        dense |= saturated
    return {name: 1.0 if name in dense else eps * scores[name] for name in shapes}


def layer_densities(model: nn.Module, density: float, init: str = "ERK") -> dict[str, float]:
    """Per-layer densities of the ``init`` distribution: "uniform" (every layer
    ``density``) or "ERK" (``erk_densities``); a bad density or init is a UsageError."""
    check_density(density)
    choose("sparse init", init, SPARSE_INITS)
    if init == "uniform":
        return {name: density for name in maskable_parameters(model)}
    return erk_densities(model, density)
