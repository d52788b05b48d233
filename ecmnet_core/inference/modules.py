"""Kernel-backed and compiler-friendly nn.Modules that replace trained ones in an eval model copy.

Why apart from the passes (rewrites.py) that swap them in: each module here computes what the
module it replaces computes (tested against it in test/core/inference/), and fused_edab.py reads
their parameters; the passes only decide where they go.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.channels_last import conv_prelu, depthwise_conv2d, resize_bilinear
from ..ops.dda import dda_gates


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
    """A 'same' depthwise conv through ops.channels_last (one Triton launch on CUDA, F.conv2d elsewhere)."""

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
    1) through ops.channels_last.conv_prelu: one launch on CUDA with the PReLU fused (the stem's
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
    """BilinearResize through ops.channels_last: the final logits resize as one Triton launch on CUDA."""

    def forward(self, x, size):
        return resize_bilinear(x, size)
