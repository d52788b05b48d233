"""Feature Fusion Module: concatenates the encoder output with the MSAU outputs, then SS2D + FFN."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvBNAct
from .ss2d_block import SS2D, ChannelLayerNorm


class FFN(nn.Module):
    def __init__(self, dim, ratio=2):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, dim * ratio, 1)
        self.dw = nn.Conv2d(dim * ratio, dim * ratio, 3, padding=1, groups=dim * ratio)
        self.fc2 = nn.Conv2d(dim * ratio, dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.dw(self.fc1(x))))


class FFM(nn.Module):
    """Fuse multi-level features at the bottleneck resolution with global context from SS2D."""

    def __init__(self, in_channels, out_channels, d_model=64, d_state=16, expand=2, ffn_ratio=2,
                 backend="reference"):
        super().__init__()
        self.fuse = ConvBNAct(in_channels, d_model, 1)
        self.norm1 = ChannelLayerNorm(d_model)
        self.ss2d = SS2D(d_model, d_state=d_state, expand=expand, backend=backend)
        self.norm2 = ChannelLayerNorm(d_model)
        self.ffn = FFN(d_model, ffn_ratio)
        self.out = ConvBNAct(d_model, out_channels, 1)

    def forward(self, bottleneck, skips):
        size = bottleneck.shape[-2:]
        feats = [bottleneck] + [
            s if s.shape[-2:] == size else F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            for s in skips
        ]
        x = self.fuse(torch.cat(feats, dim=1))
        x = x + self.ss2d(self.norm1(x))
        x = x + self.ffn(self.norm2(x))
        return self.out(x) + bottleneck
