"""CREST's quadratic model of the loss around a region start w0 (spec crest.md, steps 4 and 6).

    F(w0 + delta) ~ L0 + g . delta + 1/2 delta^T diag(H) delta          (paper, Sec. 4.2)

g is the gradient at w0, H a diagonal Hessian estimate (Hutchinson 1990: E[v * Hv] over
Rademacher v is the diagonal of H). Hessian-vector products come from differentiating
the gradient a second time with ``torch.autograd.grad(create_graph=True)``; nothing
here calls ``.backward()``, so the loop's gradients are never touched.

As the reference code builds it, a region's model comes from its coreset mini-batches
one at a time: each mini-batch b gives (L_b, g_b, h_b), and with ``approx_moment`` each
mini-batch steps the AdaHessian/Adam moving averages once (beta1 0.9, beta2 0.999,
bias-corrected; H_b = sqrt(EMA of squares) + 1e-4), which carry over from region to
region. The region's L0, g and H are the means over its mini-batches of L_b and of the
smoothed g_b and H_b (without ``approx_moment``: of the raw g_b and h_b).

``loss_fn`` is any closure of the parameters' current values: the callback passes the
model's (weighted) cross-entropy on the coresets, the tests a linear model's squared
loss, for which the model is exact.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

BETA1, BETA2, H_EPS = 0.9, 0.999, 1e-4


def flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters as one float64 vector (a copy): w - w0 of two of these is exact."""
    return torch.cat([p.detach().reshape(-1).double() for p in params])


def rademacher_like(params: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Independent +-1 entries shaped like ``params`` (drawn on the CPU generator, one
    draw per entry, straight into the parameters' dtype)."""
    return [torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype).mul_(2).sub_(1).to(p.device)
            for p in params]


def gradient_and_hessian_diagonal(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                                  probes: int, generator: torch.Generator, out: torch.Tensor | None = None
                                  ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(L0, g, h) at the current parameters: the loss, its gradient and the Hutchinson
    diagonal mean_v (v * Hv) over ``probes`` Rademacher vectors, g and h flat float64:
    the two halves of ``out`` (float64, twice the parameters' size) when it is given."""
    sizes = [p.numel() for p in params]
    if out is None:
        out = torch.empty(2 * sum(sizes), dtype=torch.float64, device=params[0].device)
    g, h = out[:sum(sizes)], out[sum(sizes):]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    for flat, gr in zip(g.split(sizes), grads):
        flat.copy_(gr.detach().reshape(-1))
    h.zero_()
    diag = [flat.view(p.shape) for flat, p in zip(h.split(sizes), params)]
    for k in range(probes):
        vs = rademacher_like(params, generator)
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=k < probes - 1)
        for d, v, hv in zip(diag, vs, hvs):
            d += (v * hv).double() / probes
    return float(loss.detach()), g, h


class QuadraticModel:
    """L0, g, H of the current region, and the moving averages that smooth g and H."""

    def __init__(self, approx_moment: bool = True):
        self.approx_moment = approx_moment
        self.loss0 = 0.0
        self.g: torch.Tensor | None = None
        self.h: torch.Tensor | None = None
        self.m: torch.Tensor | None = None  # EMA of mini-batch gradients
        self.v: torch.Tensor | None = None  # EMA of squared mini-batch Hessian diagonals
        self.updates = 0  # mini-batches the EMAs have seen (over all regions)

    def smooth(self, g: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch's step of the moving averages; its bias-corrected (g, H).

        m = b1 m + (1 - b1) g_b,  v = b2 v + (1 - b2) h_b^2,
        g = m / (1 - b1^t),  H = sqrt(v / (1 - b2^t)) + 1e-4   (paper Sec. 4.2, as AdaHessian)."""
        self.updates += 1
        t = self.updates
        if self.m is None:
            self.m, self.v = (1 - BETA1) * g, (1 - BETA2) * h.square()
        else:  # in place, with the same roundings
            self.m.mul_(BETA1).add_(g * (1 - BETA1))
            self.v.mul_(BETA2).add_(h.square().mul_(1 - BETA2))
        return self.m / (1 - BETA1 ** t), (self.v / (1 - BETA2 ** t)).sqrt_().add_(H_EPS)

    def fit_region(self, batches: Iterable[tuple[float, torch.Tensor, torch.Tensor]]) -> None:
        """A new region from its mini-batches' raw (L_b, g_b, h_b), in order: the moving
        averages step once per mini-batch (not once per region), and L0, g, H are the means
        over the mini-batches of L_b and of the smoothed (or, without approx_moment, raw)
        g_b and h_b. The mini-batches are of equal size, so plain means weight them alike."""
        count, loss_sum, g_sum, h_sum = 0, 0.0, None, None
        for loss, g, h in batches:
            if self.approx_moment:
                g, h = self.smooth(g, h)
            count += 1
            loss_sum += loss
            g_sum = g.clone() if g_sum is None else g_sum.add_(g)
            h_sum = h.clone() if h_sum is None else h_sum.add_(h)
        if not count:
            raise ValueError("a quadratic region needs at least one mini-batch")
        self.loss0, self.g, self.h = loss_sum / count, g_sum / count, h_sum / count

    def predict(self, delta: torch.Tensor) -> float:
        """L0 + g . delta + 1/2 delta^T diag(H) delta."""
        return self.loss0 + float(self.g @ delta) + 0.5 * float((self.h * delta) @ delta)

    def curvature_norm(self) -> float:
        return float(self.h.norm())

    def state_dict(self) -> dict:
        copy = {key: None if value is None else value.clone() for key, value in (("m", self.m), ("v", self.v))}
        return {"approx_moment": self.approx_moment, "loss0": self.loss0, "g": self.g, "h": self.h,
                "updates": self.updates, **copy}  # copies of the moving averages, which step in place

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value.clone() if key in ("m", "v") and value is not None else value)


def region_left(true_loss: float, predicted: float, thresh_factor: float) -> bool:
    """The validity check (spec step 6): the quadratic region is left when the model's
    error exceeds ``thresh_factor`` times the true loss."""
    return abs(true_loss - predicted) > thresh_factor * true_loss
