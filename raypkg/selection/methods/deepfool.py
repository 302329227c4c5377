"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to
fool deep neural networks", CVPR 2016, Alg. 2), scored as DeepCore does
(``deepcore/methods/deepfool.py``, ``DeepFool.deep_fool``): the size of the smallest input
perturbation that changes the warmed-up model's prediction; the k closest to the boundary
(smallest) are kept, per class when balanced.

From x_0 = x, with l = argmax f(x_0) the predicted class (not the label), each iteration
linearises f at x_i and steps to the nearest linearised boundary (eq. 6 to 8):

    w_c = grad f_c(x_i) - grad f_l(x_i),   f'_c = f_c(x_i) - f_l(x_i),
    c*  = argmin_{c != l} |f'_c| / ||w_c||,
    r_i = |f'_c*| / ||w_c*||^2 w_c*,        r = r + r_i,   x_{i+1} = x_0 + (1 + overshoot) r,

until argmax f(x_{i+1}) != l or ``max_iter`` steps (DeepCore's default 50); the score is
||r||. DeepCore steps with overshoot 0 and returns ||r||^2 (the same order). The default
here is the paper's overshoot 0.02 on the point tried, not on the score: a step onto the
linearised boundary then crosses it instead of landing on it and repeating ever smaller
steps, and for a linear model ||r|| is exactly the closed-form distance
min_{c != l} |f'_c(x)| / ||w_c||. Classes with w_c = 0 are never the target; an example
where every class has w_c = 0 (a dead ReLU region, say) cannot move and has no boundary in
reach: its distance is inf (DeepCore's 0/0 gives NaN, which its argsort ranks last), and
the selector ranks it as far as the farthest example that has one (finite scores for CCS).

Cost: per batch of ``BATCH`` examples, each iteration is one forward and C backward passes
(one gradient per class) for the examples not yet across, and one forward without a graph
to check which are across now. On digits-aug after a 2-epoch warm-up (MLP and ResNet-20,
512 examples) an example takes 1.3 to 1.5 iterations on average: for C = 10 about 4
forwards and 14 backwards per example, some 10 training epochs' worth of compute over the
set (ResNet-20 on all 60,000: ~15 minutes of one CPU thread; a GPU or ``--actors`` divides
that). It
runs batch by batch on each shard (on the shard actors when there is a pool; streamed data
works), holding only one float per example besides the batch. Weights are 1; the stored
score is -||r|| (higher = closer to the boundary, the end top-k keeps, the CCS convention).
"""

from __future__ import annotations

import torch
from torch import nn

from raypkg.data.base import IndexedDataset
from raypkg.errors import UsageError
from raypkg.selection.methods.grand import top_k
from raypkg.selection.registry import Picks, SelectionContext, register_selector

BATCH = 256


def check_deepfool(options: dict) -> None:
    it, overshoot = options["max_iter"], options["overshoot"]
    if isinstance(it, bool) or not isinstance(it, int) or it < 1:
        raise UsageError(f"deepfool: max_iter must be a positive integer, got {it!r}")
    if isinstance(overshoot, bool) or not isinstance(overshoot, (int, float)) or not overshoot >= 0:
        raise UsageError(f"deepfool: overshoot must be a number >= 0, got {overshoot!r}")


def deepfool_distances(model: nn.Module, x: torch.Tensor, max_iter: int = 50, overshoot: float = 0.02
                       ) -> torch.Tensor:
    """||r|| of every row of ``x`` (float64, CPU; inf where it cannot move), DeepFool's
    iteration of the module docstring with the model in eval mode; only input gradients are taken."""
    was_training = model.training
    model.eval()
    x0 = x.detach()
    r = torch.zeros_like(x0)
    with torch.no_grad():
        label = model(x0).argmax(1)
    active = torch.arange(len(x0), device=x0.device)  # not across yet
    stuck = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    for _ in range(max_iter):
        if len(active) == 0:
            break
        xa = (x0[active] + (1.0 + overshoot) * r[active]).requires_grad_(True)
        with torch.enable_grad():
            f = model(xa)
            classes = f.shape[1]
            grad = torch.stack([torch.autograd.grad(f[:, c].sum(), xa, retain_graph=c < classes - 1)[0].flatten(1)
                                for c in range(classes)], 1)  # [m, C, D]
        f, rows, lab = f.detach(), torch.arange(len(active), device=x0.device), label[active]
        w = grad - grad[rows, lab][:, None]
        gap = (f - f[rows, lab][:, None]).abs()
        w_norm = w.norm(dim=2)
        ratio = gap / w_norm
        ratio[(w_norm == 0) | (torch.arange(classes, device=x0.device) == lab[:, None])] = float("inf")
        target = ratio.argmin(1)
        moves = torch.isfinite(ratio[rows, target])
        stuck[active[~moves]] = True  # no direction: it would stay where it is
        active, rows, target = active[moves], rows[moves], target[moves]
        step = (gap[rows, target] / w_norm[rows, target] ** 2)[:, None] * w[rows, target]
        r[active] += step.view_as(r[active])
        if len(active):  # the check, without a graph: examples across take no more gradients
            with torch.no_grad():
                active = active[model(x0[active] + (1.0 + overshoot) * r[active]).argmax(1) == label[active]]
    model.train(was_training)
    distance = r.flatten(1).double().norm(dim=1)
    distance[stuck] = float("inf")
    return distance.cpu()


def shard_deepfool(shard: IndexedDataset, model: nn.Module, max_iter: int, overshoot: float,
                   device: str = "cpu", batch_size: int = BATCH) -> torch.Tensor:
    """DeepFool distances of the shard's examples, ``batch_size`` at a time (float64, CPU)."""
    model = model.to(device)
    out = torch.zeros(len(shard), dtype=torch.float64)
    for start in range(0, len(shard), batch_size):
        out[start:start + batch_size] = deepfool_distances(
            model, shard.x[start:start + batch_size].to(device), max_iter, overshoot)
    return out


@register_selector("deepfool", "DeepFool: the k smallest input perturbations that flip the prediction "
                               "(closest to the boundary; score: minus its norm)",
                   options={"max_iter": 50, "overshoot": 0.02}, check_options=check_deepfool,
                   streams=True, scores=True)
def deepfool(ctx: SelectionContext) -> Picks:
    o = ctx.options
    distances = ctx.per_example.map(shard_deepfool, ctx.model, o["max_iter"], float(o["overshoot"]),
                                    ctx.per_example.device)
    reached = torch.isfinite(distances)
    # no boundary in reach: as far as the farthest example with one (finite scores for CCS)
    distances[~reached] = distances[reached].max() if bool(reached.any()) else 0.0
    scores = -distances
    picks = torch.cat([pos[top_k(scores[pos], k)] for pos, k in ctx.blocks()])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores[picks], all_scores=scores)
