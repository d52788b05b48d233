"""Dual-direction attention (DDA) on pooled descriptors: both axes in one Triton launch.

Why: after the axis means, DDA's work is tiny (a C x H and a C x W descriptor), but
written with PyTorch ops it is about ten kernel launches per EDAB (q/k/v projections,
two score matmuls, two softmaxes, two value matmuls). At batch 1 those launches cost
more GPU time than the full-resolution work around them (21 EDABs per forward). The
kernel in triton.py projects, attends and reduces both axes in one launch
(flash-attention style online softmax, fp32 accumulation); `dda_gates_reference`
(reference.py) is the same function in PyTorch, used on CPU, without Triton, and as the test oracle.
"""
from __future__ import annotations

from .._triton import load_kernels
from .reference import dda_gates_reference

_kernels = load_kernels("dda.triton", "fused DDA kernel")
_op = _kernels.dda_gates_op if _kernels is not None else None

MAX_KERNEL_CHANNELS = 128   # the kernel keeps a C x C weight tile in registers; ECMNet's EDABs have 16-64


def dda_gates(pooled, w_qk, w_v, inner: int, split: int, scale: float):
    """The Triton kernel on CUDA when Triton is installed (and C <= 128), else the PyTorch reference."""
    if pooled.is_cuda and _op is not None and pooled.shape[1] <= MAX_KERNEL_CHANNELS:
        return _op(pooled, w_qk, w_v, inner, split, scale)
    return dda_gates_reference(pooled, w_qk, w_v, inner, split, scale)
