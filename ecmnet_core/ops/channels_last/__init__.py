"""Depthwise convolution, bilinear resize and conv + PReLU for channels_last GPU tensors, one
Triton launch each.

Why: at batch 1 and 1024x2048, cuDNN's depthwise kernel for fp16 channels_last
(conv2d_c1_k1_nhwc / conv2d_grouped_direct, 30-45 us per call) and Inductor's resize of
the 19-channel logits to full resolution (165 us, strided stores) are among the slowest
kernels of an ECMNet forward. The kernels in triton.py read and write whole
pixels (all channels) per access. Elsewhere (CPU, no Triton, wider tensors) these
functions are exactly the PyTorch operators, which are also the test oracles.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .._triton import load_kernels

_ops = load_kernels("channels_last.triton", "channels_last Triton kernels")

MAX_KERNEL_CHANNELS = 256   # one program holds a pixel's channels in registers


def _use_kernel(x: torch.Tensor) -> bool:
    return _ops is not None and x.is_cuda and x.dim() == 4 and x.shape[1] <= MAX_KERNEL_CHANNELS


def depthwise_conv2d(x, weight, bias=None, dilation: Sequence[int] = (1, 1)):
    """'same' depthwise convolution with stride 1 and an odd kernel:
    F.conv2d(x, weight, bias, 1, dilation * (k // 2), dilation, groups=C)."""
    kh, kw = weight.shape[-2:]
    if _use_kernel(x):
        return _ops.depthwise_conv2d_op(x, weight, bias, [int(d) for d in dilation])
    return F.conv2d(x, weight, bias, 1, (dilation[0] * (kh // 2), dilation[1] * (kw // 2)), tuple(dilation),
                    x.shape[1])


def resize_bilinear(x, size: Sequence[int]):
    """F.interpolate(x, size, mode='bilinear', align_corners=False)."""
    if _use_kernel(x):
        return _ops.resize_bilinear_op(x, [int(s) for s in size])
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def conv_prelu(x, weight, weight_t, bias, prelu=None):
    """PReLU(F.conv2d(x, weight, bias, padding=(KH // 2, KW // 2))) for an odd KH x KW kernel, stride 1
    (prelu None: the conv alone); the kernel takes weight_t = weight permuted to (KH, KW, CI, CO),
    flattened to (KH * KW * CI, CO)."""
    if _use_kernel(x) and weight.shape[0] <= MAX_KERNEL_CHANNELS:
        return _ops.conv_prelu_op(x, weight, weight_t, bias, prelu)
    kh, kw = weight.shape[-2:]
    y = F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2))
    return F.prelu(y, prelu) if prelu is not None else y
