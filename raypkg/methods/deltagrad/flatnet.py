"""A fully connected ReLU classifier seen as one flat parameter vector w.

DeltaGrad works on w (the spec's w_t, g_t are [p] vectors), so the model here is a
description of layer shapes plus closed-form forward/backward passes: for logits
z = W_L h_{L-1} + b_L, h_l = relu(W_l h_{l-1} + b_l), the summed cross-entropy
gradient is delta_L = softmax(z) - onehot(y), dW_l = delta_l^T h_{l-1},
db_l = sum delta_l, delta_{l-1} = (delta_l W_l) * 1[h_{l-1} > 0]. This is two thin
matrix products per layer and no autograd graph; tests/unit/test_deltagrad_core.py checks it
against autograd on the registry model (torch.func.functional_call).

The flat layout is the registry model's ``named_parameters()`` order, so
``load_into(model, w)`` gives back an ordinary nn.Module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.errors import UsageError

# Modules that break exact replay of a trajectory (randomness or batch statistics).
_REFUSED = ("BatchNorm", "Dropout", "AlphaDropout", "GroupNorm", "LayerNorm", "InstanceNorm")


@dataclass(frozen=True)
class FlatNet:
    """Layer sizes [(in, out), ...] of Linear layers, ReLU between them, none after the last."""

    sizes: tuple[tuple[int, int], ...]

    @property
    def num_params(self) -> int:
        return sum(o * i + o for i, o in self.sizes)

    @property
    def num_classes(self) -> int:
        return self.sizes[-1][1]

    @classmethod
    def from_model(cls, model: nn.Module, name: str = "model") -> "FlatNet":
        """Describe a registry model (Flatten, Linear/ReLU stack, Linear head) or refuse it.

        Raises UsageError for modules that break exact replay (batch norm, dropout) and
        for anything that is not a fully connected ReLU stack.
        """
        for module in model.modules():
            kind = type(module).__name__
            if any(kind.startswith(r) for r in _REFUSED):
                raise UsageError(f"model {name!r} has {kind}, which breaks exact replay; DeltaGrad "
                                 "needs a model without batch norm or dropout (e.g. logreg, mlp)")
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        allowed = (nn.Linear, nn.ReLU, nn.Flatten, nn.Sequential)
        others = sorted({type(m).__name__ for m in model.modules()
                         if not isinstance(m, allowed) and list(m.children()) == []})
        params = [p for _, p in model.named_parameters()]
        expected = [p for lin in linears for p in (lin.weight, lin.bias)]
        hidden_ok = _relu_after_each_hidden(model, linears)
        if others or not linears or len(params) != len(expected) or \
                any(a is not b for a, b in zip(params, expected)) or not hidden_ok:
            raise UsageError(f"model {name!r} is not a fully connected ReLU network; DeltaGrad "
                             "supports logreg, mlp and lenet300-100")
        return cls(tuple((lin.in_features, lin.out_features) for lin in linears))

    # ----- the flat vector -------------------------------------------------------------
    def views(self, w: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(W_l [out, in], b_l [out]) views into w, in layer order."""
        out, off = [], 0
        for i, o in self.sizes:
            weight = w[off:off + o * i].view(o, i)
            off += o * i
            out.append((weight, w[off:off + o]))
            off += o
        return out

    # ----- forward / backward ----------------------------------------------------------
    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = x
        layers = self.views(w)
        for weight, bias in layers[:-1]:
            h = torch.addmm(bias, h, weight.t()).clamp_min_(0)
        weight, bias = layers[-1]
        return torch.addmm(bias, h, weight.t())

    def grad_sum(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """sum_i grad_w CE(f(x_i; w), y_i), shape [p], in w's dtype (no weight decay).

        With ``out`` the sum is added into it (chunked sums without a new [p] vector per chunk).
        """
        layers = self.views(w)
        acts = [x]
        h = x
        for weight, bias in layers[:-1]:
            h = torch.addmm(bias, h, weight.t()).clamp_min_(0)
            acts.append(h)
        weight, bias = layers[-1]
        delta = torch.softmax(torch.addmm(bias, h, weight.t()), dim=1)
        delta[torch.arange(len(y), device=y.device), y] -= 1.0
        g = torch.zeros_like(w) if out is None else out
        grads = self.views(g)
        for layer in range(len(layers) - 1, -1, -1):
            g_weight, g_bias = grads[layer]
            g_weight.addmm_(delta.t(), acts[layer])
            g_bias.add_(delta.sum(dim=0))
            if layer > 0:
                delta = delta.mm(layers[layer][0]).mul_(acts[layer] > 0)
        return g

    def grad_sum_rows(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor,
                      chunk: int = 1024) -> torch.Tensor:
        """``grad_sum`` over the rows ``ids`` of (x, y), gathered ``chunk`` rows at a time
        into one reused buffer: the chunk stays in cache between the forward and the
        backward product, and no batch-sized copy is allocated (on CPU the thin products
        are memory-bound, so this is ~2x faster than gathering the whole batch)."""
        g = torch.zeros_like(w)
        if len(ids) == 0:
            return g
        buf = torch.empty((min(chunk, len(ids)), x.shape[1]), dtype=x.dtype, device=x.device)
        for start in range(0, len(ids), chunk):
            idx = ids[start:start + chunk]
            rows = buf[:len(idx)]
            torch.index_select(x, 0, idx, out=rows)
            self.grad_sum(w, rows, y.index_select(0, idx), out=g)
        return g

    @torch.no_grad()
    def evaluate(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 chunk: int = 8192) -> dict[str, float]:
        """Accuracy and mean cross-entropy on (x, y)."""
        correct, loss = 0, 0.0
        for start in range(0, len(y), chunk):
            z = self.logits(w, x[start:start + chunk])
            yy = y[start:start + chunk]
            correct += int((z.argmax(1) == yy).sum())
            loss += float(F.cross_entropy(z, yy, reduction="sum"))
        n = max(len(y), 1)
        return {"acc": correct / n, "loss": loss / n}


def _relu_after_each_hidden(model: nn.Module, linears: list[nn.Linear]) -> bool:
    """True when the module sequence is [Flatten], (Linear, ReLU)*, Linear."""
    leaves = [m for m in model.modules() if list(m.children()) == []]
    leaves = [m for m in leaves if not isinstance(m, nn.Flatten)]
    pattern = [type(m) for m in leaves]
    want = [nn.Linear, nn.ReLU] * (len(linears) - 1) + [nn.Linear]
    return pattern == want


def flatten_params(model: nn.Module, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The model's parameters concatenated in ``named_parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(dtype)


def load_into(model: nn.Module, w: torch.Tensor) -> nn.Module:
    """Copy the flat vector w into ``model``'s parameters (same order as flatten_params)."""
    off = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(w[off:off + p.numel()].view_as(p).to(p.dtype))
            off += p.numel()
    return model
