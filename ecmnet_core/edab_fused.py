"""EDAB's middle, from its 1x3 convolution's output to its expand convolution's input, in three
launches (two Triton kernels around the fused dual-direction-attention kernel).

Why: between those two convolutions an EDAB is two depthwise branches, PReLUs, three means for
its attentions and the weighted sum, which torch.compile turns into 8 small kernels per block
(about 34 us per block at 1/8 resolution on an H100, 21 blocks per forward; profile in
docs/benchmarks/inference.md). Here one kernel reads the conv output once for all three means,
the DDA kernel turns them into gates, and one kernel reads it again and writes the sum:
edab_fused_triton.py. On CPU, without Triton, or for other block shapes the block runs its own
modules (the test oracle).
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch
import torch.nn as nn

from .dda_gate import dda_gates

_ops = None
if importlib.util.find_spec("triton") is not None and torch.cuda.is_available():
    try:
        from . import edab_fused_triton as _ops
    except Exception as exc:  # noqa: BLE001 - a Triton too old for the kernels: the modules instead
        import warnings

        warnings.warn(f"fused EDAB kernels unavailable ({type(exc).__name__}: {exc}); using the modules")

MAX_KERNEL_CHANNELS = 128    # EDAB's reduced width; ECMNet's are 16-64

# rows of the packed per-channel parameters (edab_fused_triton reads them by these indices)
PACKED_ROWS = ("y_prelu",
               "local_3x1_top", "local_3x1_mid", "local_3x1_bottom", "local_3x1_bias", "local_3x1_prelu",
               "local_1x3_left", "local_1x3_mid", "local_1x3_right", "local_1x3_bias", "local_1x3_prelu",
               "atrous_3x1_top", "atrous_3x1_mid", "atrous_3x1_bottom", "atrous_3x1_bias", "atrous_3x1_prelu",
               "atrous_1x3_left", "atrous_1x3_mid", "atrous_1x3_right", "atrous_1x3_bias", "atrous_1x3_prelu",
               "post_scale", "post_shift", "post_prelu")


def _conv_act(seq):
    """(conv, PReLU) of a BN-folded ConvBNAct ([conv with bias, Identity, PReLU]), else None."""
    if not (isinstance(seq, nn.Sequential) and len(seq) == 3 and type(seq[1]) is nn.Identity
            and type(seq[2]) is nn.PReLU and getattr(seq[0], "bias", None) is not None):
        return None
    return seq[0], seq[2]


def _prelu_weight(prelu: nn.PReLU, c: int) -> torch.Tensor:
    return prelu.weight.detach().float().expand(c) if prelu.weight.numel() == 1 else prelu.weight.detach().float()


def pack_edab(block) -> Optional[dict]:
    """The per-channel parameters of a BN-folded, DDA-rewritten EDAB's middle, or None if the block
    does not have the expected form (then it keeps running its own modules)."""
    from .inference_rewrites import _ChannelAttentionTaps, _FusedDualDirectionAttention
    from .layers import ChannelAttention

    parts = [_conv_act(block.conv1x3), _conv_act(block.local[0]), _conv_act(block.local[1]),
             _conv_act(block.atrous[0]), _conv_act(block.atrous[1])]
    ca, dda, post = block.local[2], block.atrous[2], block.post
    if any(p is None for p in parts) or type(dda) is not _FusedDualDirectionAttention:
        return None
    if type(ca) is ChannelAttention and ca.conv.bias is None:
        ca_weight = ca.conv.weight.detach().reshape(-1)
    elif type(ca) is _ChannelAttentionTaps:
        ca_weight = ca.weight.detach().reshape(-1)
    else:
        return None
    if not (isinstance(post, nn.Sequential) and len(post) == 2 and type(post[0]) is nn.BatchNorm2d
            and type(post[1]) is nn.PReLU and post[0].running_var is not None):
        return None
    (conv1x3, y_prelu), (l1, l1a), (l2, l2a), (a1, a1a), (a2, a2a) = parts
    c = conv1x3.weight.shape[0]
    d = a1.dilation[0]
    shapes_ok = (tuple(l1.weight.shape) == (c, 1, 3, 1) and tuple(l2.weight.shape) == (c, 1, 1, 3)
                 and tuple(a1.weight.shape) == (c, 1, 3, 1) and tuple(a2.weight.shape) == (c, 1, 1, 3)
                 and tuple(l1.dilation) == (1, 1) and tuple(l2.dilation) == (1, 1)
                 and tuple(a1.dilation) == (d, 1) and tuple(a2.dilation) == (1, d) and ca_weight.numel() % 2 == 1)
    if not shapes_ok:
        return None
    bn = post[0]
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.detach().float() - bn.running_mean.float() * scale
    rows = [_prelu_weight(y_prelu, c)]
    for conv3x1, act1, conv1x3_, act2 in ((l1, l1a, l2, l2a), (a1, a1a, a2, a2a)):
        rows += list(conv3x1.weight.detach().float()[:, 0, :, 0].t())
        rows += [conv3x1.bias.detach().float(), _prelu_weight(act1, c)]
        rows += list(conv1x3_.weight.detach().float()[:, 0, 0, :].t())
        rows += [conv1x3_.bias.detach().float(), _prelu_weight(act2, c)]
    rows += [scale, shift, _prelu_weight(post[1], c)]
    packed = torch.stack([r.reshape(c) for r in rows])
    assert packed.shape[0] == len(PACKED_ROWS)
    return dict(packed=packed, ca_weight=ca_weight.float(), dilation=int(d), dda=dda)


def edab_pool(t, packed, dilation: int):
    """(B, C, H + W) pooled DDA descriptors and (B, C) channel-attention means (Triton, CUDA)."""
    return _ops.edab_pool_op(t, packed, dilation)


def edab_combine(t, packed, gates, ca, ca_weight, dilation: int):
    """The expand convolution's input (Triton, CUDA)."""
    return _ops.edab_combine_op(t, packed, gates, ca, ca_weight, dilation)


class FusedEDAB(nn.Module):
    """An EDAB whose middle runs as edab_pool -> dda_gates -> edab_combine on CUDA with Triton."""

    def __init__(self, block, packed: dict):
        super().__init__()
        self.block = block                               # its modules: the path everywhere else
        self.register_buffer("packed", packed["packed"].to(block.conv1x3[0].weight.device))
        self.register_buffer("ca_weight", packed["ca_weight"].to(block.conv1x3[0].weight.device))
        self.dilation = packed["dilation"]
        self.dda = packed["dda"]

    def forward(self, x):
        blk = self.block
        if not (_ops is not None and x.is_cuda and x.dim() == 4 and blk.conv1x3[0].out_channels <= MAX_KERNEL_CHANNELS):
            return blk(x)
        return self.fused_forward(x)

    def fused_forward(self, x, pool=edab_pool, combine=edab_combine):
        blk = self.block
        t = blk.conv1x3[0](blk.conv3x1(blk.reduce(blk.pre(x))))
        pooled, ca = pool(t, self.packed, self.dilation)
        dda = self.dda
        gates = dda_gates(pooled.to(t.dtype), dda.qk.weight.flatten(1), dda.v.weight.flatten(1), dda.inner,
                          t.shape[2], dda.scale)
        u = combine(t, self.packed, gates, ca, self.ca_weight, self.dilation)
        return blk.shuffle(blk.expand(u) + x)
