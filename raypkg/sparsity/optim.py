"""The sparse kernels' optimizer step: torch's SGD at a weight's mask positions only."""

from __future__ import annotations

import torch


class PositionsSGD(torch.optim.SGD):
    """torch's SGD, which can step a parameter at a few of its positions only.

    ``active[param]`` (flat indices) says that ``param`` and its gradient are exactly 0
    everywhere else: a weight on the sparse kernels (``raypkg.sparsity.backend``). There
    torch's update, -lr * (momentum * 0 + 0 + weight_decay * 0), keeps weight and momentum
    at 0, so stepping the gathered values with the same formula gives the same result at
    a cost that scales with the positions, not the tensor. State and ``state_dict`` are
    torch's (the momentum buffer stays dense), so checkpoints do not change. The sparse
    backend puts it in place of the engine's SGD while layers run on the kernels (``like``)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.active: dict[torch.Tensor, torch.Tensor] = {}

    @classmethod
    def like(cls, optimizer: torch.optim.SGD) -> "PositionsSGD":
        """The same parameter groups, settings and state (momentum buffers) as ``optimizer``."""
        stepper = cls([dict(group) for group in optimizer.param_groups])
        stepper.load_state_dict(optimizer.state_dict())
        return stepper

    @torch.no_grad()
    def step(self, closure=None):
        held = {p: p.grad for p in self.active if p.grad is not None}
        for p in held:
            p.grad = None  # torch's step skips a parameter without a gradient
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p in held:
                    p.grad = held[p]
                    self.step_positions(p, self.active[p], group)
        return loss

    def step_positions(self, p: torch.Tensor, positions: torch.Tensor, group: dict) -> None:
        """torch's SGD update (``torch.optim.sgd._single_tensor_sgd``) on p's values at ``positions``."""
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        values = p.view(-1).index_select(0, positions)
        d_p = p.grad.view(-1).index_select(0, positions)
        if group["weight_decay"]:
            d_p = d_p.add(values, alpha=group["weight_decay"])
        if momentum:
            buf = self.state[p].get("momentum_buffer")
            if buf is None:
                buf = self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                buf_values = d_p.clone()
            else:
                buf_values = buf.view(-1).index_select(0, positions).mul_(momentum).add_(d_p, alpha=1 - dampening)
            buf.view(-1).index_copy_(0, positions, buf_values)
            d_p = d_p.add(buf_values, alpha=momentum) if group["nesterov"] else buf_values
        p.view(-1).index_copy_(0, positions, values.add_(d_p, alpha=-lr))
