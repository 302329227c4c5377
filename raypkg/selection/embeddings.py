"""Last-layer gradient embeddings in closed form, from one forward pass
(the last-layer gradient approximation of Katharopoulos & Fleuret, "Not all samples are
created equal", ICML 2018, as used by CRAIG, Mirzasoleiman et al., ICML 2020, and
GradMatch, Killamsetty et al., ICML 2021).

For an example with penultimate features ``h`` (dimension D), logits ``z = W h + b`` and
label ``y``, the cross-entropy gradient with respect to the logits is

    g = softmax(z) - onehot(y)                                    (C values)

and the gradient with respect to the last layer is ``dL/db = g``, ``dL/dW = g h^T``. The
embedding is ``e = [g, vec(g h^T)]`` (bias block first, then the weight block in the
row-major order of ``head.weight``), of dimension C * (D + 1). Everything the selectors
need follows from (g, h) without materialising e:

    ||e||^2     = ||g||^2 (1 + ||h||^2)
    e_i . e_j   = (g_i . g_j) (1 + h_i . h_j)
    e_i . v     = g_i . v_b + g_i^T V_W h_i        for v = [v_b, vec(V_W)]

Scaling is per example (the gradient of each example's own loss), not DeepCore's
batch-mean scaling. ``FactoredEmbedding`` is that exact embedding; ``DenseEmbedding``
holds explicit vectors for the cheaper variants: ``bias`` (g alone, the bias gradient)
and ``proj`` (a seeded Gaussian random projection of e, computed from g and h).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from raypkg.data.base import IndexedDataset
from raypkg.engine.execution import autocast
from raypkg.errors import choose
from raypkg.selection.embedding_kinds import EMBEDDINGS

FORWARD_BATCH = 1024


# --------------------------------------------------------------------------------------
# One forward pass: logits and penultimate features
# --------------------------------------------------------------------------------------

@torch.no_grad()
def logits_and_features(model: nn.Module, x: torch.Tensor, device: torch.device | str | None = None,
                        batch_size: int = FORWARD_BATCH, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """``z`` [N, C] and ``h`` [N, D] on ``device`` (float32; float64 for a float64 model),
    the model in eval mode, the forward at ``precision`` (``raypkg.engine.execution``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    zs, hs = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        with autocast(precision, device):
            h = model.forward_features(xb)
            logits = model.forward_head(h)
        dtype = torch.promote_types(h.dtype, torch.float32)  # float32, or float64 models as they are
        zs.append(logits.to(dtype))
        hs.append(h.to(dtype))
    model.train(was_training)
    if not zs:
        return (torch.zeros(0, model.head.out_features, device=device),
                torch.zeros(0, model.head.in_features, device=device))
    return torch.cat(zs), torch.cat(hs)


def logit_gradients(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g = softmax(z) - onehot(y): the per-example cross-entropy gradient w.r.t. the logits."""
    g = torch.softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)  # fp16/bf16 -> fp32
    g[torch.arange(len(y), device=g.device), y.to(g.device)] -= 1.0
    return g


def factored_norms(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """||e|| = ||g|| sqrt(1 + ||h||^2) for e = [g, vec(g h^T)], never forming e."""
    return g.norm(dim=1) * torch.sqrt(1.0 + h.square().sum(1))


# --------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------

class Embedding:
    """Per-example vectors of one set, accessed only through dot products."""

    def __len__(self) -> int:
        raise NotImplementedError

    def subset(self, positions) -> "Embedding":
        raise NotImplementedError

    def sq_norms(self) -> torch.Tensor:
        raise NotImplementedError

    def kernel(self, other: "Embedding") -> torch.Tensor:
        """Gram block [len(self), len(other)] of dot products."""
        raise NotImplementedError

    def sum_vector(self, weights: torch.Tensor | None = None):
        """sum_i w_i e_i as an embedding-space vector (the type ``dot`` takes)."""
        raise NotImplementedError

    def dot(self, vector) -> torch.Tensor:
        """e_i . v for every example."""
        raise NotImplementedError

    def materialize(self) -> torch.Tensor:
        """The explicit vectors [n, dim] (tests and small sets only)."""
        raise NotImplementedError

    def to(self, dtype: torch.dtype) -> "Embedding":
        raise NotImplementedError

    def norms(self) -> torch.Tensor:
        return self.sq_norms().clamp_min(0).sqrt()

    def distances(self, other: "Embedding | None" = None, chunk: int = 2048) -> torch.Tensor:
        """Euclidean distances [len(self), len(other)] from ||a||^2 + ||b||^2 - 2 a.b, computed
        in ``chunk``-row blocks (a block's kernel is all that is held besides the output).
        Without ``other``: the set against itself, exactly symmetric with a zero diagonal
        (upper blocks computed, mirrored), at half the kernel cost."""
        if other is not None:
            other_sq = other.sq_norms()
            out = torch.empty(len(self), len(other), dtype=other_sq.dtype, device=other_sq.device)
            for start in range(0, len(self), chunk):
                rows = self.subset(torch.arange(start, min(start + chunk, len(self))))
                d2 = rows.sq_norms()[:, None] + other_sq[None, :] - 2.0 * rows.kernel(other)
                out[start:start + len(rows)] = d2.clamp_min_(0).sqrt_()
            return out
        sq = self.sq_norms()
        n = len(self)
        out = torch.empty(n, n, dtype=sq.dtype, device=sq.device)
        starts = list(range(0, n, chunk))
        blocks = [self.subset(torch.arange(s, min(s + chunk, n))) for s in starts]
        for a, (sa, rows) in enumerate(zip(starts, blocks)):
            for sb, cols in zip(starts[a:], blocks[a:]):
                d2 = sq[sa:sa + len(rows), None] + sq[None, sb:sb + len(cols)] - 2.0 * rows.kernel(cols)
                d = d2.clamp_min_(0).sqrt_()
                if sa == sb:
                    d = torch.triu(d, 1)
                    d = d + d.T  # symmetric block, zero diagonal
                out[sa:sa + len(rows), sb:sb + len(cols)] = d
                if sb != sa:
                    out[sb:sb + len(cols), sa:sa + len(rows)] = d.T
        return out


@dataclass
class FactoredEmbedding(Embedding):
    """The exact last-layer embedding e = [g, vec(g h^T)], kept as its factors (g, h)."""

    g: torch.Tensor  # [n, C]
    h: torch.Tensor  # [n, D]

    def __len__(self) -> int:
        return len(self.g)

    @property
    def dim(self) -> int:
        return self.g.shape[1] * (self.h.shape[1] + 1)

    def subset(self, positions) -> "FactoredEmbedding":
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.g.device)
        return FactoredEmbedding(self.g[positions], self.h[positions])

    def to(self, dtype: torch.dtype) -> "FactoredEmbedding":
        return FactoredEmbedding(self.g.to(dtype), self.h.to(dtype))

    def sq_norms(self) -> torch.Tensor:
        return self.g.square().sum(1) * (1.0 + self.h.square().sum(1))

    def kernel(self, other: "Embedding") -> torch.Tensor:
        assert isinstance(other, FactoredEmbedding)
        return (self.g @ other.g.T) * (1.0 + self.h @ other.h.T)

    def sum_vector(self, weights: torch.Tensor | None = None):
        g = self.g if weights is None else self.g * weights[:, None].to(self.g)
        return g.sum(0), g.T @ self.h  # (v_b [C], V_W [C, D])

    def dot(self, vector) -> torch.Tensor:
        v_b, v_w = vector
        return self.g @ v_b + ((self.h @ v_w.T) * self.g).sum(1)

    def materialize(self) -> torch.Tensor:
        return torch.cat([self.g, (self.g[:, :, None] * self.h[:, None, :]).flatten(1)], 1)


@dataclass
class DenseEmbedding(Embedding):
    """Explicit vectors e [n, dim]."""

    e: torch.Tensor

    def __len__(self) -> int:
        return len(self.e)

    @property
    def dim(self) -> int:
        return self.e.shape[1]

    def subset(self, positions) -> "DenseEmbedding":
        return DenseEmbedding(self.e[torch.as_tensor(positions, dtype=torch.long, device=self.e.device)])

    def to(self, dtype: torch.dtype) -> "DenseEmbedding":
        return DenseEmbedding(self.e.to(dtype))

    def sq_norms(self) -> torch.Tensor:
        return self.e.square().sum(1)

    def kernel(self, other: "Embedding") -> torch.Tensor:
        assert isinstance(other, DenseEmbedding)
        return self.e @ other.e.T

    def sum_vector(self, weights: torch.Tensor | None = None):
        return self.e.sum(0) if weights is None else weights.to(self.e) @ self.e

    def dot(self, vector) -> torch.Tensor:
        return self.e @ vector

    def materialize(self) -> torch.Tensor:
        return self.e


def projection_matrix(num_classes: int, feature_dim: int, dim: int, seed: int,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Gaussian P [C * (D + 1), dim] / sqrt(dim) (Johnson-Lindenstrauss), fixed by ``seed``."""
    return _projection_cpu(int(num_classes), int(feature_dim), int(dim), int(seed)).to(device)


@functools.lru_cache(maxsize=4)
def _projection_cpu(num_classes: int, feature_dim: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    return torch.randn(num_classes * (feature_dim + 1), dim, generator=gen) / math.sqrt(dim)


def project(g: torch.Tensor, h: torch.Tensor, p: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """e P for e = [g, vec(g h^T)] without forming e: g P_b + sum_c g_c (h P_W[c])."""
    c, d = g.shape[1], h.shape[1]
    p = p.to(g)
    p_b, p_w = p[:c], p[c:].view(c, d, -1).permute(1, 0, 2).reshape(d, -1)  # [D, C*k]
    out = []
    for start in range(0, len(g), chunk):
        gb, hb = g[start:start + chunk], h[start:start + chunk]
        out.append(gb @ p_b + (gb[:, :, None] * (hb @ p_w).view(len(gb), c, -1)).sum(1))
    return torch.cat(out) if out else g.new_zeros(0, p.shape[1])


@dataclass(frozen=True)
class EmbeddingKind:
    """Which embedding the selectors see, and how a last-layer SGD step moves logits.

    ``full``: the exact e (factored). ``bias``: g alone, the bias gradient; a step then
    moves the bias only. ``proj``: e projected to ``proj_dim`` dimensions with a seeded
    Gaussian matrix; steps are the exact last-layer steps.
    """

    name: str = "full"
    proj_dim: int = 256
    seed: int = 0

    def __post_init__(self):
        choose("embedding", self.name, EMBEDDINGS)

    def embed(self, g: torch.Tensor, h: torch.Tensor) -> Embedding:
        if self.name == "full":
            return FactoredEmbedding(g, h)
        if self.name == "bias":
            return DenseEmbedding(g)
        p = projection_matrix(g.shape[1], h.shape[1], self.proj_dim, self.seed, g.device)
        return DenseEmbedding(project(g, h, p))

    def mean_vector(self, g: torch.Tensor, h: torch.Tensor):
        """The mean embedding of a set, as the vector type its ``Embedding.dot`` takes,
        from (g, h) in O(n C D) (the projection of the mean, for ``proj``)."""
        if self.name == "bias":
            return g.mean(0)
        v_b, v_w = g.mean(0), g.T @ h / max(len(g), 1)
        if self.name == "full":
            return v_b, v_w
        p = projection_matrix(g.shape[1], h.shape[1], self.proj_dim, self.seed, g.device).to(g)
        return torch.cat([v_b, v_w.flatten()]) @ p

    def norms(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.name == "full":
            return factored_norms(g, h)
        return self.embed(g, h).norms()

    def logit_shift(self, h_val: torch.Tensor, g_step: torch.Tensor, h_step: torch.Tensor) -> torch.Tensor:
        """Change of the logits of examples with features ``h_val`` after the last-layer
        update theta <- theta - sum_j e_j over the step examples (g_step, h_step):
        dz = -sum_j g_j (1 + h_val . h_j) (weight and bias), or -sum_j g_j (bias only)."""
        if self.name == "bias":
            return -g_step.sum(0).expand(len(h_val), -1)
        return -(1.0 + h_val @ h_step.T) @ g_step


# --------------------------------------------------------------------------------------
# Per-shard work (module-level so that Ray actors can run it; see distributed.shard_pool)
# --------------------------------------------------------------------------------------

def shard_logits_features(shard: IndexedDataset, model: nn.Module, device: str = "cpu", precision: str = "fp32",
                          batch_size: int = FORWARD_BATCH) -> dict[str, torch.Tensor]:
    """z and h of every example in ``shard`` (CPU float32), one forward pass at ``precision``."""
    model = model.to(device)
    z, h = logits_and_features(model, shard.x, device, batch_size, precision)
    return {"z": z.cpu(), "h": h.cpu()}


def shard_mean_scores(shard: IndexedDataset, models: Sequence[nn.Module], score: Callable,
                      device: str = "cpu", precision: str = "fp32", batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """The mean over ``models`` of ``score(g, h)`` per example of the shard (float64, CPU), g
    the logit gradient and h the features, computed batch by batch: only the scores are
    kept (streamed data is read per batch)."""
    total = torch.zeros(len(shard), dtype=torch.float64)
    for model in models:
        model = model.to(device)
        for start in range(0, len(shard), batch_size):
            z, h = logits_and_features(model, shard.x[start:start + batch_size], device, batch_size, precision)
            g = logit_gradients(z, shard.y[start:start + batch_size])
            total[start:start + batch_size] += score(g, h).double().cpu()
    return total / max(len(models), 1)


def shard_mean_norms(shard: IndexedDataset, models: Sequence[nn.Module], kind: EmbeddingKind,
                     device: str = "cpu", precision: str = "fp32", batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """GraNd scores of the shard: the mean over ``models`` of ||e_i||."""
    return shard_mean_scores(shard, models, kind.norms, device, precision, batch_size)


class PerExample:
    """Runs a shard function over a dataset in-process or on a ``ShardPool`` built on it."""

    def __init__(self, data: IndexedDataset, pool=None, device: torch.device | str = "cpu"):
        self.data, self.pool = data, pool
        # actors compute where they hold their shards (their CPU threads, or their GPU share:
        # ``ShardPool.device``); the in-process path on ``device``
        self.device = getattr(pool, "device", "cpu") if pool is not None else str(device)

    def map(self, fn: Callable, *args):
        """``fn(data, *args)``, or the same over the pool's shards concatenated in order."""
        if self.pool is None:
            return fn(self.data, *args)
        return self.pool.map(fn, *args)
