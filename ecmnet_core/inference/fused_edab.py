"""EDAB stages with each block's work after its 1x3 convolution in four launches: three Triton
kernels around the fused dual-direction-attention kernel.

Why: after an EDAB's 1x3 convolution come two depthwise branches, PReLUs, three means for its
attentions, the weighted sum, the expand convolution, the residual, the channel shuffle and the
next block's BN + PReLU. torch.compile makes ~10 small kernels and a cuDNN call of that per block
(at 1/8 resolution on an H100: about 34 us for the part before the expand convolution alone, 21
blocks per forward; profile in docs/benchmarks/inference.md). Here edab_vertical runs both
branches' first depthwise stage, edab_pool the second one and all three means, the DDA kernel turns
them into gates, and edab_finish redoes the cheap second stage and writes the block's output and
the next block's first-conv input: ops/edab/triton.py. On CPU,
without Triton, or for other block shapes the stage runs its own modules (the test oracle).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..model.edab import EDAB
from ..model.layers import ChannelAttention
from ..ops.dda import dda_gates
from ..ops.edab import (MAX_KERNEL_CHANNELS, PACKED_ROWS, edab_finish, edab_pool, edab_vertical, split_means,
                        use_kernels)
from .modules import (_ChannelAttentionTaps, _FusedDualDirectionAttention, _KernelConvPReLU, folded_conv_prelu,
                      prelu_slopes)

def _bn_prelu_params(seq, channels: int) -> Optional[torch.Tensor]:
    """(3, C): an eval BNPReLU's BN scale and shift and its PReLU slopes, or None if not of that form."""
    if not (isinstance(seq, nn.Sequential) and len(seq) == 2 and type(seq[0]) is nn.BatchNorm2d
            and type(seq[1]) is nn.PReLU and seq[0].running_var is not None and seq[0].affine):
        return None
    bn = seq[0]
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.detach().float() - bn.running_mean.float() * scale
    return torch.stack([scale, shift, prelu_slopes(seq[1], channels)])


def pack_edab(block) -> Optional[dict]:
    """The per-channel parameters of a BN-folded, DDA-rewritten EDAB between its 1x3 and expand
    convolutions, or None if the block does not have that form (then its stage keeps its modules)."""
    parts = [folded_conv_prelu(seq) for seq in (block.conv1x3, block.local[0], block.local[1], block.atrous[0],
                                                block.atrous[1])]
    ca, dda, post = block.local[2], block.atrous[2], block.post
    if any(p is None for p in parts) or type(dda) is not _FusedDualDirectionAttention:
        return None
    if type(ca) is ChannelAttention and ca.conv.bias is None:
        ca_weight = ca.conv.weight.detach().reshape(-1)
    elif type(ca) is _ChannelAttentionTaps:
        ca_weight = ca.weight.detach().reshape(-1)
    else:
        return None
    (conv1x3, y_prelu), (l1, l1a), (l2, l2a), (a1, a1a), (a2, a2a) = parts
    c = conv1x3.weight.shape[0]
    post = _bn_prelu_params(post, c)
    if post is None:
        return None
    d = a1.dilation[0]
    shapes_ok = (tuple(l1.weight.shape) == (c, 1, 3, 1) and tuple(l2.weight.shape) == (c, 1, 1, 3)
                 and tuple(a1.weight.shape) == (c, 1, 3, 1) and tuple(a2.weight.shape) == (c, 1, 1, 3)
                 and tuple(l1.dilation) == (1, 1) and tuple(l2.dilation) == (1, 1)
                 and tuple(a1.dilation) == (d, 1) and tuple(a2.dilation) == (1, d) and ca_weight.numel() % 2 == 1)
    if not shapes_ok:
        return None
    rows = [prelu_slopes(y_prelu, c)]
    for conv3x1, act1, conv1x3_, act2 in ((l1, l1a, l2, l2a), (a1, a1a, a2, a2a)):
        rows += list(conv3x1.weight.detach().float()[:, 0, :, 0].t())
        rows += [conv3x1.bias.detach().float(), prelu_slopes(act1, c)]
        rows += list(conv1x3_.weight.detach().float()[:, 0, 0, :].t())
        rows += [conv1x3_.bias.detach().float(), prelu_slopes(act2, c)]
    rows += list(post)                                   # post BN scale, shift, PReLU
    packed = torch.stack([r.reshape(c) for r in rows])
    assert packed.shape[0] == len(PACKED_ROWS)
    return dict(packed=packed, ca_weight=ca_weight.float(), dilation=int(d))


def is_pairs(shuffle_src: torch.Tensor) -> bool:
    """Whether the shuffle sends input channels 0, 2, 4, ... to the first half of the outputs and
    1, 3, 5, ... to the second (EDAB's: groups of half the channels), which edab_finish reads with
    one contiguous load."""
    n = shuffle_src.numel()
    half = torch.arange(n // 2)
    return n % 2 == 0 and bool((shuffle_src.cpu().long() == torch.cat([2 * half, 2 * half + 1])).all())


def _shuffle_source(shuffle, channels: int) -> Optional[torch.Tensor]:
    """src with shuffle(v)[:, o] == v[:, src[o]] for EDAB's channel shuffle (view / transpose / reshape)."""
    groups = getattr(shuffle, "groups", None)
    if groups is None or channels % groups:
        return None
    o = torch.arange(channels)
    return (o % groups) * (channels // groups) + o // groups


class _BlockKernelParams(nn.Module):
    """One block's parameters in the kernels' layouts (buffers: they follow .to(device, dtype))."""

    def __init__(self, block, packed: dict):
        super().__init__()
        device = block.expand.weight.device
        for name in ("packed", "ca_weight", "expand_t", "shuffle_src", "pre"):
            self.register_buffer(name, packed[name].to(device))
        self.dilation = packed["dilation"]
        self.pairs = is_pairs(packed["shuffle_src"])


def pack_stage(stage) -> Optional[list]:
    """pack_edab for every block of an EDAB stage (plus expand weight, shuffle and pre), or None."""
    if not (isinstance(stage, nn.Sequential) and len(stage) and all(type(b) is EDAB for b in stage)):
        return None
    packs = []
    for block in stage:
        packed = pack_edab(block)
        expand = block.expand
        channels = expand.out_channels if type(expand) is nn.Conv2d else None
        if (packed is None or channels is None or expand.bias is not None or expand.kernel_size != (1, 1)
                or expand.groups != 1):
            return None
        src = _shuffle_source(block.shuffle, channels)
        pre = _bn_prelu_params(block.pre, channels)
        if src is None or pre is None:
            return None
        packed.update(expand_t=expand.weight.detach()[src, :, 0, 0].t().contiguous(), shuffle_src=src.to(torch.int32),
                      pre=pre)
        packs.append(packed)
    return packs


def conv_without_prelu(seq, x):
    """A BN-folded ConvBNAct's convolution without its PReLU (edab_vertical and edab_finish apply
    the 1x3 conv's PReLU as they load its output)."""
    return seq.conv_only(x) if type(seq) is _KernelConvPReLU else seq[0](x)


class FusedEDABStage(nn.Module):
    """An EDAB stage whose blocks run conv3x1 -> conv1x3 (conv_prelu kernels or cuDNN) -> edab_vertical
    -> edab_pool -> dda_gates -> edab_finish on CUDA with Triton; the stage's own modules elsewhere."""

    def __init__(self, stage: nn.Sequential, packs: list):
        super().__init__()
        self.stage = stage
        self.kernels = nn.ModuleList(_BlockKernelParams(b, p) for b, p in zip(stage, packs))
        self.fits_kernels = all(b.expand.in_channels <= MAX_KERNEL_CHANNELS
                                and b.expand.out_channels <= 2 * MAX_KERNEL_CHANNELS for b in stage)

    def forward(self, x):
        if not (use_kernels(x) and self.fits_kernels):
            return self.stage(x)
        return self.fused_forward(x)

    def fused_forward(self, x, vertical=edab_vertical, pool=edab_pool, finish=edab_finish):
        p = self.stage[0].pre(x)
        last = len(self.stage) - 1
        for i, (blk, k) in enumerate(zip(self.stage, self.kernels)):
            t = conv_without_prelu(blk.conv1x3, blk.conv3x1(blk.reduce(p)))
            v = vertical(t, k.packed, k.dilation)
            pooled, ca = split_means(pool(v, k.packed, k.dilation))
            dda = blk.atrous[2]
            gates = dda_gates(pooled, dda.qk.weight.flatten(1), dda.v.weight.flatten(1), dda.inner,
                              t.shape[2], dda.scale)
            x, p = finish(t, v, x, k.packed, gates, ca, k.ca_weight, k.expand_t, k.shuffle_src,
                          self.kernels[i + 1].pre if i < last else None, k.dilation, k.pairs)
        return x
