"""The three fused EDAB launches (Triton, CUDA): functions over tensors in the kernels' layouts.

inference/fused_edab.py packs a trained EDAB's parameters into these layouts (PACKED_ROWS) and
decides where the launches replace the block's modules; the kernels are in triton.py. There is no
PyTorch twin here: the oracle is the EDAB stage's own modules (test/core/inference/test_fused_edab.py).
"""
from __future__ import annotations

import torch

from .._triton import load_kernels

_ops = load_kernels("edab.triton", "fused EDAB kernels")

MAX_KERNEL_CHANNELS = 128    # EDAB's reduced width (ECMNet's: 16-64); the block width up to twice that

# rows of the packed per-channel parameters (triton.py reads them by these indices)
PACKED_ROWS = ("y_prelu",
               "local_3x1_top", "local_3x1_mid", "local_3x1_bottom", "local_3x1_bias", "local_3x1_prelu",
               "local_1x3_left", "local_1x3_mid", "local_1x3_right", "local_1x3_bias", "local_1x3_prelu",
               "atrous_3x1_top", "atrous_3x1_mid", "atrous_3x1_bottom", "atrous_3x1_bias", "atrous_3x1_prelu",
               "atrous_1x3_left", "atrous_1x3_mid", "atrous_1x3_right", "atrous_1x3_bias", "atrous_1x3_prelu",
               "post_scale", "post_shift", "post_prelu")


def use_kernels(x: torch.Tensor) -> bool:
    """Whether the kernels can run on x: Triton loaded, a CUDA NCHW-shaped tensor."""
    return _ops is not None and x.is_cuda and x.dim() == 4


def edab_vertical(t, packed, dilation: int):
    """(B, 2C, H, W): both branches' 3x1 stage, [local | atrous] (Triton, CUDA)."""
    return _ops.edab_vertical_op(t, packed, dilation)


def edab_pool(v, packed, dilation: int):
    """(B, C, H + W + 1) fp32: the pooled DDA descriptors, then the channel-attention means (Triton,
    CUDA); split_means gives the two parts."""
    return _ops.edab_pool_op(v, packed, dilation)


def split_means(means):
    """edab_pool's buffer as (pooled descriptors (B, C, H + W), channel-attention means (B, C)): views
    of one buffer, so that the kernel's atomics need one zero fill, not two."""
    return means[..., :-1], means[..., -1]


def edab_finish(t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, next_pre, dilation: int,
                pairs: bool = False):
    """(block output, next block's first-conv input or an empty tensor) (Triton, CUDA)."""
    return _ops.edab_finish_op(t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, next_pre, dilation,
                               pairs)
