"""Equivalent-math rewrites of an eval-mode ECMNet for fast inference.

Why: at batch 1 and driving resolution ECMNet is bound by the number of kernel launches
(about 25 per EDAB as trained), not by arithmetic. Every rewrite here computes the same
function as the trained modules (tested in test/test_inference_rewrites.py) with fewer
or cheaper kernels; the engine applies them to its own copy of the model.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .channels_last_ops import conv_prelu, depthwise_conv2d, resize_bilinear
from .dda_gate import dda_gates


class _ChannelsLastShuffle(nn.Module):
    """Channel shuffle that keeps a channels_last tensor channels_last (same permutation).

    The training-time view/transpose/reshape returns a plain NCHW tensor, which makes
    every following convolution convert memory formats.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.groups
        if not x.is_contiguous(memory_format=torch.channels_last):
            return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = x.permute(0, 2, 3, 1).reshape(b, h, w, g, c // g).transpose(3, 4).reshape(b, h, w, c)
        return y.permute(0, 3, 1, 2)


class _FusedDualDirectionAttention(nn.Module):
    """DualDirectionAttention with its projections after the axis means, both axes in one kernel.

    The 1x1 q/k/v projections are linear and bias-free, so mean(W x) == W mean(x): no
    full-resolution convolutions, two full-resolution means (over W and over H), and the
    projections + attention of both axes in one launch (dda_gate.dda_gates).
    """

    def __init__(self, dda: nn.Module):
        super().__init__()
        self.qk, self.v = dda.qk, dda.v
        self.scale, self.inner = dda.scale, dda.inner
        self.gates = dda_gates         # benchmarks swap in dda_gate.dda_gates_reference to compare

    def forward(self, x):
        h = x.shape[2]
        pooled = torch.cat([x.mean(3), x.mean(2)], dim=2)                 # B, C, H + W
        g = self.gates(pooled, self.qk.weight.flatten(1), self.v.weight.flatten(1), self.inner, h, self.scale)
        return x * torch.sigmoid(g[:, :, :h, None] + g[:, :, None, h:])


class _ChannelAttentionTaps(nn.Module):
    """ECA channel attention with its 1-D convolution written as shifted multiply-adds.

    For torch.compile: cuDNN runs a 1-channel Conv1d as a kernel of its own; as taps
    the compiler inlines the gate into the multiply that uses it.
    """

    def __init__(self, ca: nn.Module):
        super().__init__()
        self.weight = ca.conv.weight
        self.k = ca.conv.kernel_size[0]

    def forward(self, x):
        # mean of row means (equal counts): a row reduction the compiler fuses with DDA's over W
        y = x.mean(3).mean(2)                                            # B, C
        c, p = y.shape[1], self.k // 2
        yp = F.pad(y, (p, p))
        w = self.weight.view(-1)
        g = sum(yp[:, j:j + c] * w[j] for j in range(self.k))
        return x * torch.sigmoid(g)[:, :, None, None]


class _ShiftedDepthwiseConv(nn.Module):
    """Depthwise 'same' convolution written as a sum of shifted, per-channel-scaled input copies.

    The same sums; in eager mode it is slower, but torch.compile turns it into one
    pointwise kernel fused with its neighbours (BN-folded bias, PReLU, adds), where
    cuDNN's grouped kernels are slow for fp16 channels_last.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.kernel_size, self.padding, self.dilation = conv.kernel_size, conv.padding, conv.dilation

    def forward(self, x):
        (kh, kw), (ph, pw), (dh, dw) = self.kernel_size, self.padding, self.dilation
        h, w = x.shape[-2:]
        xp = F.pad(x, (pw, pw, ph, ph))
        out = None
        for i in range(kh):
            for j in range(kw):
                tap = xp[:, :, i * dh:i * dh + h, j * dw:j * dw + w] * self.weight[:, 0, i, j].view(1, -1, 1, 1)
                out = tap if out is None else out + tap
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out


class _KernelDepthwiseConv(nn.Module):
    """A 'same' depthwise conv through channels_last_ops (one Triton launch on CUDA, F.conv2d elsewhere)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias, self.dilation = conv.weight, conv.bias, conv.dilation

    def forward(self, x):
        return depthwise_conv2d(x, self.weight, self.bias, self.dilation)


def folded_conv_prelu(seq):
    """(conv, PReLU) of a BN-folded ConvBNAct ([conv with bias, Identity, PReLU], or that pair as a
    _KernelConvPReLU), else None."""
    if type(seq) is _KernelConvPReLU:
        return seq.conv, seq.act
    if not (isinstance(seq, nn.Sequential) and len(seq) == 3 and type(seq[1]) is nn.Identity
            and type(seq[2]) is nn.PReLU and getattr(seq[0], "bias", None) is not None):
        return None
    return seq[0], seq[2]


def prelu_slopes(prelu: nn.PReLU, channels: int) -> torch.Tensor:
    """The per-channel slopes of a PReLU (one shared slope repeated), fp32."""
    return prelu.weight.detach().float().expand(channels).clone()


class _KernelConvPReLU(nn.Module):
    """A BN-folded ConvBNAct ([conv with bias, Identity, PReLU], odd 'same' kernel, stride 1, groups
    1) through channels_last_ops.conv_prelu: one launch on CUDA with the PReLU fused (the stem's
    3x3 convs, EDAB's 3x1 and 1x3 convs), or cuDNN where that is faster for the shape."""

    KERNELS = ((3, 3), (3, 1), (1, 3))

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.conv, self.act = seq[0], seq[2]
        # (KH * KW * CI, CO): 2-D, so that .to(memory_format=channels_last) leaves it as it is
        self.register_buffer("weight_t", self.conv.weight.detach().permute(2, 3, 1, 0)
                             .reshape(-1, self.conv.out_channels).contiguous())
        self.register_buffer("prelu", prelu_slopes(self.act, self.conv.out_channels))

    @classmethod
    def fits(cls, seq) -> bool:
        found = folded_conv_prelu(seq) if isinstance(seq, nn.Sequential) else None
        conv = found[0] if found else None
        return (type(conv) is nn.Conv2d and conv.kernel_size in cls.KERNELS and conv.stride == (1, 1)
                and conv.padding == (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")

    def forward(self, x):
        return conv_prelu(x, self.conv.weight, self.weight_t, self.conv.bias, self.prelu)

    def conv_only(self, x):
        """The convolution without its PReLU (fused EDAB stages apply that PReLU in their kernels)."""
        return conv_prelu(x, self.conv.weight, self.weight_t, self.conv.bias)


class _KernelResize(nn.Module):
    """BilinearResize through channels_last_ops: the final logits resize as one Triton launch on CUDA."""

    def forward(self, x, size):
        return resize_bilinear(x, size)


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
    from .layers import UpSample
    from .msau import MSAU

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
    from .edab import EDAB

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
    through channels_last_ops (Triton kernels on CUDA; cuDNN for the convs it runs faster).
    `fused_edab` runs each EDAB stage's blocks after their 1x3 convolution as the kernels of
    edab_fused.py on CUDA (needs fold_bn). Both are off here; SegmentationEngine turns them on
    for torch.compile on CUDA (engine.default_kernel_options; timings: docs/benchmarks/inference.md).
    """
    from .layers import BilinearResize, ChannelAttention, ChannelShuffle, DualDirectionAttention
    from .msau import MSAU

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
        from .edab_fused import FusedEDABStage, pack_stage

        for module in list(model.modules()):
            for name, child in list(module._modules.items()):
                packs = pack_stage(child)
                if packs is not None:
                    module._modules[name] = FusedEDABStage(child, packs)
    return model
