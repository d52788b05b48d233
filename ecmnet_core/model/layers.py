"""Small building blocks shared by EDAB, MSAU and the decoder."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.dda.reference import axis_attention


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + optional BatchNorm + PReLU; padding keeps the size for stride 1."""

    def __init__(self, cin, cout, kernel, stride=1, dilation=(1, 1), groups=1, act=True):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=not act)]
        if act:
            layers += [nn.BatchNorm2d(cout, eps=1e-3), nn.PReLU(cout)]
        super().__init__(*layers)


class BNPReLU(nn.Sequential):
    def __init__(self, channels):
        super().__init__(nn.BatchNorm2d(channels, eps=1e-3), nn.PReLU(channels))


class ChannelAttention(nn.Module):
    """ECA-style channel attention: global pool, 1-D conv across channels, sigmoid gate."""

    def __init__(self, channels, k_size=3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k_size, padding=k_size // 2, bias=False)

    def forward(self, x):
        y = x.mean(dim=(2, 3))                              # B, C
        y = self.conv(y.unsqueeze(1)).squeeze(1)            # B, C
        return x * torch.sigmoid(y)[:, :, None, None]


class DualDirectionAttention(nn.Module):
    """Dual-direction attention (DDA): Q/K/V attention along height and along width.

    Each direction attends over the axis descriptor obtained by averaging the
    other axis, so the cost is O(H^2 + W^2) per image rather than O((HW)^2),
    which keeps the block usable at 1024x2048.
    """

    def __init__(self, channels, reduction=4):
        super().__init__()
        inner = max(channels // reduction, 4)
        self.qk = nn.Conv2d(channels, 2 * inner, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.scale = inner ** -0.5
        self.inner = inner

    def _axis(self, q, k, v):
        return axis_attention(q, k, v, self.scale)

    def forward(self, x):
        q, k = self.qk(x).split(self.inner, dim=1)
        v = self.v(x)
        gate_h = self._axis(q.mean(3), k.mean(3), v.mean(3))    # B, C, H
        gate_w = self._axis(q.mean(2), k.mean(2), v.mean(2))    # B, C, W
        gate = torch.sigmoid(gate_h.unsqueeze(3) + gate_w.unsqueeze(2))
        return x * gate


class ChannelShuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.groups
        return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)


class DownSample(nn.Module):
    """Strided 3x3 conv, concatenated with max-pool when widening (ENet/LETNet style).

    The pool uses ceil_mode so odd sizes give the same shape as the strided conv.
    """

    def __init__(self, cin, cout):
        super().__init__()
        self.widen = cin < cout
        self.conv = nn.Conv2d(cin, cout - cin if self.widen else cout, 3, 2, 1, bias=False)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.bn_act = BNPReLU(cout)

    def forward(self, x):
        y = self.conv(x)
        if self.widen:
            y = torch.cat([y, self.pool(x)], 1)
        return self.bn_act(y)


class BilinearResize(nn.Module):
    """F.interpolate(x, size, bilinear, align_corners=False); a module so that inference can swap in
    a faster kernel for the same function (ecmnet_core.inference)."""

    def forward(self, x, size):
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UpSample(nn.Module):
    """Transposed 3x3 stride-2 conv to exactly the skip connection's size."""

    def __init__(self, cin, cout):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x, size):
        y = self.deconv(x)
        if y.shape[-2:] != tuple(size):
            # odd skip sizes: 2n output is one pixel too big; crop (no resampling).
            y = y[..., : size[0], : size[1]]
        return F.relu6(self.bn(y))
