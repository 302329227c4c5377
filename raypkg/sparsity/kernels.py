"""Sparse CPU kernels for masked ``nn.Linear`` and ``nn.Conv2d`` layers (SparseProp: Nikdan
et al., "SparseProp: Efficient Sparse Backpropagation for Faster Training of Neural
Networks", ICML 2023; PyPI ``sparseprop``, whose compiled module is the top-level ``backend``).

The dense weight stays the parameter (optimizer, masks, checkpoints and ``model.pt`` see
nothing new); only the arithmetic changes. A ``Layout`` lists the positions of one layer's
mask in the kernels' index format; each step gathers the weight's values there, runs the
sparse forward, and the backward scatters the value gradients into a dense gradient that is
0 off the mask. Off the mask the masked (dense) layer's gradient is not 0, but SGD is
elementwise and ``StaticMask`` zeroes those weights and their momentum after every step,
so the step's result is the same; RigL's growth, which reads the dense gradient, runs its
update steps on the dense path (``SparseExecution.dense_step``).

Activation layout. The kernels vectorise over the batch: they read inputs stored as
(C, H, W, B) and write outputs the same way. A sparse layer returns its output as a view of
logical shape (B, C, H, W) over that storage ("batch-innermost"), so the next sparse layer
reads it without a copy. Element-wise ops keep the layout; ``BatchNorm2d`` would not (it
falls back to a slow strided path), so batch norm is swapped for ``BatchInnerBatchNorm2d``,
which normalises the same storage viewed as (1, C, H*W*B, 1): per-channel statistics over
the same B*H*W values, the same running-statistics update.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def kernels():
    """SparseProp's compiled module, or None when it is not installed."""
    try:
        from sparseprop import backend
    except ImportError:
        return None
    return backend


def match_kernel_threads() -> None:
    """Run the kernels' OpenMP runtime (the system libgomp, not torch's) with torch's thread
    count: two OpenMP pools both spinning on 2 cores can stall a small layer for a second."""
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(torch.get_num_threads())
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True, eq=False)
class Layout:
    """One layer's mask in the kernels' format. ``positions``: flat indices of the mask's
    entries in row-major order, the order of the kernels' values. Linear: CSR over the
    (out, in) weight (``rows`` N+1 offsets, ``cols``). Conv2d: per output channel an offset
    (``rows``, OC+1), per (oc, ic) an offset within the channel (``cols``, OC*(IC+1), int16)
    and each entry's kernel row and column (``xs``, ``ys``, uint8)."""

    shape: tuple[int, ...]
    positions: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    xs: torch.Tensor | None = None
    ys: torch.Tensor | None = None

    def __deepcopy__(self, memo):  # immutable: a model's copy (AGC's snapshot) shares it
        return self


def linear_layout(mask: torch.Tensor) -> Layout:
    nz = mask.cpu().nonzero()  # row-major: sorted by row, then column
    counts = torch.bincount(nz[:, 0], minlength=mask.shape[0])
    rows = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).int()
    positions = nz[:, 0] * mask.shape[1] + nz[:, 1]
    return Layout(tuple(mask.shape), positions, rows, nz[:, 1].int().contiguous())


def conv_layout(mask: torch.Tensor) -> Layout:
    oc_n, ic_n, kh, kw = mask.shape
    nz = mask.cpu().nonzero()  # (oc, ic, x, y), row-major
    per_oc = torch.bincount(nz[:, 0], minlength=oc_n)
    rows = torch.cat([per_oc.new_zeros(1), per_oc.cumsum(0)]).int()
    per_oc_ic = torch.bincount(nz[:, 0] * ic_n + nz[:, 1], minlength=oc_n * ic_n).view(oc_n, ic_n)
    cols = torch.cat([per_oc_ic.new_zeros(oc_n, 1), per_oc_ic.cumsum(1)], dim=1).flatten().short()
    positions = ((nz[:, 0] * ic_n + nz[:, 1]) * kh + nz[:, 2]) * kw + nz[:, 3]
    return Layout(tuple(mask.shape), positions, rows, cols.contiguous(), nz[:, 2].to(torch.uint8).contiguous(),
                  nz[:, 3].to(torch.uint8).contiguous())


def gather(weight: torch.Tensor, layout: Layout) -> torch.Tensor:
    return weight.detach().reshape(-1).index_select(0, layout.positions)


def scatter(values: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The dense gradient: ``values`` at the layout's positions, 0 elsewhere."""
    dense = values.new_zeros(layout.positions.new_tensor(layout.shape).prod().item())
    return dense.index_copy_(0, layout.positions, values).view(layout.shape)


class SparseLinearFn(torch.autograd.Function):
    """y = x W^T + b with W sparse; x (B, M) is read as (M, B), y is returned as a (B, N)
    view of (N, B) storage."""

    @staticmethod
    def forward(ctx, x, weight, bias, layout: Layout):
        x_t = x.detach().t().contiguous()  # free when x is a sparse layer's output
        values = gather(weight, layout)
        out = batch_inner_zeros((x.shape[0], layout.shape[0]), x)
        kernels().sparse_linear_vectorized_forward(x_t, layout.rows, layout.cols, values, out.t())
        if bias is not None:
            out += bias.detach()
        ctx.save_for_backward(x_t, values)
        ctx.layout, ctx.has_bias = layout, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x_t, values = ctx.saved_tensors
        layout = ctx.layout
        grad_x_t, grad_values = torch.zeros_like(x_t), torch.empty_like(values)
        kernels().sparse_linear_vectorized_backward(x_t, layout.rows, layout.cols, values,
                                                    grad_out.t().contiguous(), grad_x_t, grad_values)
        grad_bias = grad_out.sum(0) if ctx.has_bias else None
        return grad_x_t.t(), scatter(grad_values, layout), grad_bias, None


def batch_inner_zeros(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Zeros of logical ``shape`` (batch first) stored batch-innermost; not a view, so that
    in-place ops on a custom Function's output (ReLU(inplace=True)) are allowed."""
    order = (*range(1, len(shape)), 0)  # storage order: the other dims, then the batch
    strides, step = [0] * len(shape), 1
    for dim in reversed(order):
        strides[dim], step = step, step * shape[dim]
    return torch.empty_strided(shape, strides, dtype=like.dtype).zero_()


def pad_batch(x_p: torch.Tensor) -> torch.Tensor:
    """(C, H, W, B) contiguous, B zero-padded to a multiple of 8."""
    extra = -x_p.shape[-1] % 8
    return F.pad(x_p, (0, extra)) if extra else x_p.contiguous()


class SparseConv2dFn(torch.autograd.Function):
    """A stride-1 or stride-2 convolution with square kernels and zero padding; x (B, C, H, W)
    is read as (C, H, W, B), the output is a (B, OC, OH, OW) view of (OC, OH, OW, B) storage.
    The kernels' scalar tail is wrong when B is not a multiple of 8 (SparseProp 0.1.14: it
    updates one of four unrolled output columns), so such a batch is padded with zeros."""

    @staticmethod
    def forward(ctx, x, weight, bias, layout: Layout, stride: int, padding: int):
        x_p = pad_batch(x.detach().permute(1, 2, 3, 0))  # no copy when x is batch-innermost
        values = gather(weight, layout)
        oc, _, k, _ = layout.shape
        _, h, w, padded = x_p.shape
        out = batch_inner_zeros((padded, oc, (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1), x)
        forward = (kernels().sparse_conv2d_vectorized_forward_stride_1 if stride == 1
                   else kernels().sparse_conv2d_vectorized_forward_stride_2)
        forward(x_p, layout.rows, layout.cols, layout.xs, layout.ys, values, out.permute(1, 2, 3, 0), k, padding)
        if padded != x.shape[0]:
            out = batch_inner_zeros((x.shape[0], *out.shape[1:]), x).copy_(out[:x.shape[0]])
        if bias is not None:
            out += bias.detach()[:, None, None]
        ctx.save_for_backward(x_p, values)
        ctx.layout, ctx.stride, ctx.padding, ctx.has_bias = layout, stride, padding, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x_p, values = ctx.saved_tensors
        layout = ctx.layout
        grad_x_p, grad_values = torch.zeros_like(x_p), torch.zeros_like(values)  # the kernel accumulates
        backward = (kernels().sparse_conv2d_vectorized_backward_stride_1 if ctx.stride == 1
                    else kernels().sparse_conv2d_vectorized_backward_stride_2)
        backward(x_p, layout.rows, layout.cols, layout.xs, layout.ys, values,
                 pad_batch(grad_out.permute(1, 2, 3, 0)), grad_x_p, grad_values, layout.shape[2], ctx.padding)
        grad_bias = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        return grad_x_p[..., :grad_out.shape[0]].permute(3, 0, 1, 2), scatter(grad_values, layout), grad_bias, None, None, None


# --- the layers: the same modules (parameters, state_dict), another forward -------------------
class SparseKernelLinear(nn.Linear):
    """``nn.Linear`` whose forward uses the kernels while ``sparse_layout`` is set (CPU, 2-D input)."""

    sparse_layout: Layout | None = None

    def forward(self, x):
        if self.sparse_layout is None or x.dim() != 2 or x.device.type != "cpu":
            return super().forward(x)
        return SparseLinearFn.apply(x.float(), self.weight, self.bias, self.sparse_layout)  # fp32 kernels


class SparseKernelConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward uses the kernels while ``sparse_layout`` is set (CPU, 4-D input)."""

    sparse_layout: Layout | None = None

    def forward(self, x):
        if self.sparse_layout is None or x.dim() != 4 or x.device.type != "cpu":
            return super().forward(x)
        return SparseConv2dFn.apply(x.float(), self.weight, self.bias, self.sparse_layout, self.stride[0],
                                    self.padding[0])  # fp32 kernels, in a bf16 run too


def is_batch_inner(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.shape[0] > 1 and not x.is_contiguous() and x.permute(1, 2, 3, 0).is_contiguous()


class BatchInnerBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that keeps a batch-innermost input in that layout (module docstring).
    Other inputs (a dense layer's output) keep theirs: converting them would hand the next
    dense conv a batch-innermost input and gradient, which costs it more than the copy saves."""

    def forward(self, x):
        if not is_batch_inner(x):
            return super().forward(x)
        c, h, w, b = x.shape[1], x.shape[2], x.shape[3], x.shape[0]
        flat = x.permute(1, 2, 3, 0).reshape(1, c, h * w * b, 1)
        return super().forward(flat).view(c, h, w, b).permute(3, 0, 1, 2)


SWAPS = {nn.Linear: SparseKernelLinear, nn.Conv2d: SparseKernelConv2d, nn.BatchNorm2d: BatchInnerBatchNorm2d}


def supports(module: nn.Module) -> bool:
    """Whether the kernels can run ``module``: a plain Linear, or a plain Conv2d with a square
    kernel (< 256), equal strides of 1 or 2, equal zero padding, no dilation, no groups."""
    if type(module) is nn.Linear:
        return True
    if type(module) is not nn.Conv2d:
        return False
    k, stride, padding = module.kernel_size, module.stride, module.padding
    return (k[0] == k[1] < 256 and stride[0] == stride[1] and stride[0] in (1, 2)
            and not isinstance(padding, str) and padding[0] == padding[1] and module.dilation == (1, 1)
            and module.groups == 1 and module.padding_mode == "zeros")


def layout_for(module: nn.Module, mask: torch.Tensor) -> Layout:
    return conv_layout(mask) if isinstance(module, nn.Conv2d) else linear_layout(mask)


def swap_class(module: nn.Module, to_sparse: bool) -> None:
    """Turn a plain Linear/Conv2d/BatchNorm2d into its kernel-aware subclass, or back."""
    if to_sparse and type(module) in SWAPS:
        module.__class__ = SWAPS[type(module)]
    elif not to_sparse and type(module) in SWAPS.values():
        module.__class__ = next(base for base, swapped in SWAPS.items() if swapped is type(module))
        module.__dict__.pop("sparse_layout", None)
