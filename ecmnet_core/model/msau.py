"""Multi-Scale Attention Unit (MSAU) on the long skip connections."""
from __future__ import annotations

import torch
import torch.nn as nn


class MSAU(nn.Module):
    """Multi-scale spatial aggregation x channel aggregation, plus the input (residual).

    spatial: 1x1 C->C/2, depthwise 3x3 + 5x5 + 7x7 (summed), average-pool the
             height to 1, depthwise 7x7 + 1x1 + sigmoid -> attention over width,
             multiply with the multi-scale map, 1x1 C/2->C.
    channel: sigmoid(avg-pool + max-pool) over space, per channel.
    out = spatial * channel + x
    """

    def __init__(self, channels):
        super().__init__()
        c = channels // 2
        self.reduce = nn.Conv2d(channels, c, 1, bias=False)
        self.dw = nn.ModuleList(nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False) for k in (3, 5, 7))
        self.att_dw = nn.Conv2d(c, c, 7, padding=3, groups=c, bias=False)
        self.att_pw = nn.Conv2d(c, c, 1)
        self.expand = nn.Conv2d(c, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)

    def forward(self, x):
        y = self.reduce(x)
        y = sum(conv(y) for conv in self.dw)
        att = torch.sigmoid(self.att_pw(self.att_dw(y.mean(dim=2, keepdim=True))))   # B, C/2, 1, W
        spatial = self.bn(self.expand(y * att))
        channel = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True) + x.amax(dim=(2, 3), keepdim=True))
        return spatial * channel + x
