"""Equivalent-math rewrites of an eval-mode ECMNet for fast inference.

Why: at batch 1 and driving resolution ECMNet is bound by the number of kernel launches
(about 25 per EDAB as trained), not by arithmetic. Every rewrite here computes the same
function as the trained modules (tested in test/core/inference/) with fewer
or cheaper kernels; the engine applies them to its own copy of the model.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..model.edab import EDAB
from ..model.layers import BilinearResize, ChannelAttention, ChannelShuffle, DualDirectionAttention, UpSample
from ..model.msau import MSAU
from .fused_edab import FusedEDABStage, pack_stage
from .modules import (_ChannelAttentionTaps, _ChannelsLastShuffle, _FusedDualDirectionAttention, _KernelConvPReLU,
                      _KernelDepthwiseConv, _KernelResize, _ShiftedDepthwiseConv)


MAX_SHIFT_TAPS = 9


def _is_same_depthwise(conv, max_taps: Optional[int] = None) -> bool:
    """A 'same'-size depthwise conv small enough for shifts (MSAU's merged 7x7, 49 taps, stays on
    cuDNN: recomputing 49 taps inside every kernel that reads it costs more than one cuDNN call)."""
    return (type(conv) is nn.Conv2d and conv.groups == conv.in_channels == conv.out_channels
            and conv.kernel_size[0] * conv.kernel_size[1] <= (max_taps or MAX_SHIFT_TAPS)
            and conv.stride == (1, 1) and conv.padding_mode == "zeros"
            and all(p == d * (k - 1) // 2 and k % 2 == 1
                    for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation)))


def merge_parallel_depthwise(convs) -> Optional[nn.Conv2d]:
    """Sum of bias-free, centred, same-group depthwise convs of one input == one conv with the
    kernels zero-padded to the largest size and added (MSAU's 3x3 + 5x5 + 7x7). None if not mergeable."""
    convs = list(convs)
    if len(convs) < 2 or any(type(c) is not nn.Conv2d or c.bias is not None or c.stride != (1, 1)
                             or c.dilation != (1, 1) or c.groups != convs[0].groups
                             or c.in_channels != convs[0].in_channels or c.out_channels != convs[0].out_channels
                             or c.padding != (c.kernel_size[0] // 2, c.kernel_size[1] // 2)
                             or c.kernel_size[0] % 2 == 0 or c.kernel_size[1] % 2 == 0 for c in convs):
        return None
    kh = max(c.kernel_size[0] for c in convs)
    kw = max(c.kernel_size[1] for c in convs)
    first = convs[0]
    merged = nn.Conv2d(first.in_channels, first.out_channels, (kh, kw), padding=(kh // 2, kw // 2),
                       groups=first.groups, bias=False).to(first.weight.device, first.weight.dtype)
    weight = torch.zeros_like(merged.weight)
    for c in convs:
        ph, pw = (kh - c.kernel_size[0]) // 2, (kw - c.kernel_size[1]) // 2
        weight[:, :, ph:ph + c.kernel_size[0], pw:pw + c.kernel_size[1]] += c.weight.detach()
    merged.weight.data.copy_(weight)
    return merged


def merge_pointwise_into_conv(pointwise, conv) -> Optional[nn.Conv2d]:
    """conv(pointwise(x)) as one convolution, when `pointwise` is a bias-free 1x1 conv.

    EDAB's 1x1 reduction feeds its 3x1 convolution with no activation between: the
    composition is one 3x1 convolution over the block's input, W[o, i] = sum_m W2[o, m] W1[m, i]
    (zero padding commutes with a bias-free 1x1). One kernel and one intermediate less.
    None if the pair does not have that form.
    """
    if not (type(pointwise) is nn.Conv2d and type(conv) is nn.Conv2d and pointwise.bias is None
            and pointwise.kernel_size == (1, 1) and pointwise.stride == (1, 1) and pointwise.padding == (0, 0)
            and pointwise.groups == 1 and conv.groups == 1 and conv.padding_mode == "zeros"
            and pointwise.padding_mode == "zeros" and pointwise.out_channels == conv.in_channels):
        return None
    merged = nn.Conv2d(pointwise.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        merged.weight.copy_(torch.einsum("omhw,mi->oihw", conv.weight, pointwise.weight.flatten(1)))
        if conv.bias is not None:
            merged.bias.copy_(conv.bias)
    return merged


def middle_row_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A 'same' kxk conv applied to one-row inputs, as the 1xk conv of its middle kernel row.

    MSAU's attention runs a 7x7 depthwise conv on a height-1 map (the mean over H): the
    other six kernel rows only ever see zero padding. As 1x7 it is 7 shifts instead of a
    slow cuDNN call (conv2d_c1_k1_nhwc, 45 us at 1/4 resolution on an H100).
    """
    kh, kw = conv.kernel_size
    one_row = nn.Conv2d(conv.in_channels, conv.out_channels, (1, kw), padding=(0, conv.padding[1]),
                        dilation=(1, conv.dilation[1]), groups=conv.groups,
                        bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        one_row.weight.copy_(conv.weight[:, :, kh // 2:kh // 2 + 1])
        if conv.bias is not None:
            one_row.bias.copy_(conv.bias)
    return one_row


def _fuse(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorm into the convolution that directly feeds it, in place.

    Covers conv -> BN inside nn.Sequential (ConvBNAct) and the two ECMNet modules
    where BN directly follows a conv outside a Sequential (MSAU.expand -> bn,
    UpSample.deconv -> bn). Returns the number of folded BatchNorms.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    folded = 0
    for module in list(model.modules()):
        pairs = []
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            pairs = [(a, b) for a, b in zip(names, names[1:])]
        elif isinstance(module, MSAU):
            pairs = [("expand", "bn")]
        elif isinstance(module, UpSample):
            pairs = [("deconv", "bn")]
        for a, b in pairs:
            conv, bn = module._modules[a], module._modules[b]
            if (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and type(bn) is nn.BatchNorm2d
                    and bn.track_running_stats and bn.running_mean is not None):
                module._modules[a] = _fuse(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    return folded


def _merge_edab_reductions(model: nn.Module) -> int:
    merged = 0
    for block in model.modules():
        if type(block) is EDAB and type(block.reduce) is nn.Conv2d:
            conv = merge_pointwise_into_conv(block.reduce, block.conv3x1[0])
            if conv is not None:
                block.conv3x1[0], block.reduce = conv, nn.Identity()
                merged += 1
    return merged


def optimize_for_inference(model: nn.Module, fold_bn: bool = True, depthwise_as_shifts: bool = False,
                           channels_last_kernels: bool = False, fused_edab: bool = False) -> nn.Module:
    """Equivalent-math rewrites of an eval-mode model copy, in place.

    BN folding; EDAB's 1x1 reduction merged into its 3x1 convolution; channels_last-
    preserving channel shuffle; dual-direction attention on pooled descriptors in one
    kernel; MSAU's three parallel depthwise convolutions merged into one 7x7 and its
    one-row attention conv cut to 1x7 (see the helpers above). `depthwise_as_shifts`
    (for torch.compile) writes depthwise convolutions of up to MAX_SHIFT_TAPS taps and
    channel attention's 1-D convolution as shifted multiply-adds, which the compiler fuses
    with their neighbours. `channels_last_kernels` runs the other depthwise convolutions,
    the final logits resize and the conv + PReLU pairs of the stem (3x3) and of EDAB (3x1, 1x3)
    through ops.channels_last (Triton kernels on CUDA; cuDNN for the convs it runs faster).
    `fused_edab` runs each EDAB stage's blocks after their 1x3 convolution as the kernels of
    fused_edab.py on CUDA (needs fold_bn). Both are off here; SegmentationEngine turns them on
    for torch.compile on CUDA (engine.default_kernel_options; timings: docs/benchmarks/inference.md).
    """
    if fold_bn:
        fold_batchnorm(model)
    _merge_edab_reductions(model)
    for module in list(model.modules()):
        if type(module) is MSAU:
            merged = merge_parallel_depthwise(module.dw)
            if merged is not None:          # forward sums over the list: one conv instead of three
                module.dw = nn.ModuleList([merged])
            att = module.att_dw
            if (type(att) is nn.Conv2d and att.kernel_size[0] % 2 == 1 and att.stride == (1, 1)
                    and att.padding[0] == att.dilation[0] * (att.kernel_size[0] // 2)):
                module.att_dw = middle_row_conv(att)    # its input is the 1-row mean over H
        for name, child in list(module._modules.items()):
            if type(child) is ChannelShuffle:
                module._modules[name] = _ChannelsLastShuffle(child.groups)
            elif (type(child) is DualDirectionAttention and child.qk.bias is None and child.v.bias is None
                  and child.qk.kernel_size == (1, 1) and child.v.kernel_size == (1, 1)):
                module._modules[name] = _FusedDualDirectionAttention(child)
            elif depthwise_as_shifts and type(child) is ChannelAttention and child.conv.bias is None:
                module._modules[name] = _ChannelAttentionTaps(child)
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            if depthwise_as_shifts and _is_same_depthwise(child):
                module._modules[name] = _ShiftedDepthwiseConv(child)
            elif channels_last_kernels and _is_same_depthwise(child, max_taps=float("inf")):
                module._modules[name] = _KernelDepthwiseConv(child)
            elif channels_last_kernels and type(child) is BilinearResize:
                module._modules[name] = _KernelResize()
            elif channels_last_kernels and _KernelConvPReLU.fits(child):
                module._modules[name] = _KernelConvPReLU(child)
    if fused_edab:
        for module in list(model.modules()):
            for name, child in list(module._modules.items()):
                packs = pack_stage(child)
                if packs is not None:
                    module._modules[name] = FusedEDABStage(child, packs)
    return model
