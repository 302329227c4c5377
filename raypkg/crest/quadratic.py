"""CREST's quadratic model of the loss around a region start w0 (spec crest.md, steps 4 and 6).

    F(w0 + delta) ~ L0 + g . delta + 1/2 delta^T diag(H) delta          (paper, Sec. 4.2)

g is the gradient at w0, H a diagonal Hessian estimate (Hutchinson 1990: E[v * Hv] over
Rademacher v is the diagonal of H). Hessian-vector products come from differentiating
the gradient a second time with ``torch.autograd.grad(create_graph=True)``; nothing
here calls ``.backward()``, so the loop's gradients are never touched. With
``approx_moment`` g and H are smoothed across regions as AdaHessian/Adam do (beta1 0.9,
beta2 0.999, bias-corrected; H = sqrt(EMA of squares) + 1e-4).

``loss_fn`` is any closure of the parameters' current values: the callback passes the
model's (weighted) cross-entropy on the coresets, the tests a linear model's squared
loss, for which the model is exact.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

BETA1, BETA2, H_EPS = 0.9, 0.999, 1e-4


def flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters as one float64 vector (a copy): w - w0 of two of these is exact."""
    return torch.cat([p.detach().reshape(-1).double() for p in params])


def rademacher_like(params: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Independent +-1 entries shaped like ``params`` (drawn on the CPU generator)."""
    return [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for p in params]


def gradient_and_hessian_diagonal(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                                  probes: int, generator: torch.Generator
                                  ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(L0, g, h) at the current parameters: the loss, its gradient and the Hutchinson
    diagonal mean_v (v * Hv) over ``probes`` Rademacher vectors, g and h flat float64."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    diag = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for k in range(probes):
        vs = rademacher_like(params, generator)
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=k < probes - 1)
        for d, v, hv in zip(diag, vs, hvs):
            d += (v * hv).double() / probes
    g = torch.cat([gr.detach().reshape(-1).double() for gr in grads])
    h = torch.cat([d.reshape(-1) for d in diag])
    return float(loss.detach()), g, h


class QuadraticModel:
    """L0, g, H of the current region, and the EMAs that smooth g and H across regions."""

    def __init__(self, approx_moment: bool = True):
        self.approx_moment = approx_moment
        self.loss0 = 0.0
        self.g: torch.Tensor | None = None
        self.h: torch.Tensor | None = None
        self.m: torch.Tensor | None = None  # EMA of gradients
        self.v: torch.Tensor | None = None  # EMA of squared Hessian diagonals
        self.updates = 0

    def update(self, loss0: float, g: torch.Tensor, h: torch.Tensor) -> None:
        """A new region: raw (L0, g, h) at w0, smoothed when ``approx_moment``."""
        self.loss0 = loss0
        if not self.approx_moment:
            self.g, self.h = g, h
            return
        self.updates += 1
        t = self.updates
        self.m = (1 - BETA1) * g if self.m is None else BETA1 * self.m + (1 - BETA1) * g
        self.v = (1 - BETA2) * h.square() if self.v is None else BETA2 * self.v + (1 - BETA2) * h.square()
        self.g = self.m / (1 - BETA1 ** t)
        self.h = (self.v / (1 - BETA2 ** t)).sqrt() + H_EPS

    def predict(self, delta: torch.Tensor) -> float:
        """L0 + g . delta + 1/2 delta^T diag(H) delta."""
        return self.loss0 + float(self.g @ delta) + 0.5 * float((self.h * delta) @ delta)

    def curvature_norm(self) -> float:
        return float(self.h.norm())

    def state_dict(self) -> dict:
        return {"approx_moment": self.approx_moment, "loss0": self.loss0, "g": self.g, "h": self.h,
                "m": self.m, "v": self.v, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def region_left(true_loss: float, predicted: float, thresh_factor: float) -> bool:
    """The validity check (spec step 6): the quadratic region is left when the model's
    error exceeds ``thresh_factor`` times the true loss."""
    return abs(true_loss - predicted) > thresh_factor * true_loss
