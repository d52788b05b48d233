"""Enhanced Dual-Attention Block (EDAB), the encoder/decoder bottleneck of ECMNet."""
from __future__ import annotations

import torch.nn as nn

from .layers import BNPReLU, ChannelAttention, ChannelShuffle, ConvBNAct, DualDirectionAttention


class EDAB(nn.Module):
    """1x1 bottleneck to C/2, 3x1+1x3 factorized convs, then two branches:

    local:  depthwise 3x1/1x3 -> channel attention (CA)
    global: atrous depthwise 3x1/1x3 (rate d) -> dual-direction attention (DDA)
    The branches are summed with their input, projected back to C by 1x1,
    added to the block input (residual) and channel-shuffled.
    """

    def __init__(self, channels, dilation=1):
        super().__init__()
        c = channels // 2
        self.pre = BNPReLU(channels)
        self.reduce = nn.Conv2d(channels, c, 1, bias=False)
        self.conv3x1 = ConvBNAct(c, c, (3, 1))
        self.conv1x3 = ConvBNAct(c, c, (1, 3))
        self.local = nn.Sequential(
            ConvBNAct(c, c, (3, 1), groups=c), ConvBNAct(c, c, (1, 3), groups=c), ChannelAttention(c)
        )
        self.atrous = nn.Sequential(
            ConvBNAct(c, c, (3, 1), dilation=(dilation, 1), groups=c),
            ConvBNAct(c, c, (1, 3), dilation=(1, dilation), groups=c),
            DualDirectionAttention(c),
        )
        self.post = BNPReLU(c)
        self.expand = nn.Conv2d(c, channels, 1, bias=False)
        self.shuffle = ChannelShuffle(c)

    def forward(self, x):
        y = self.conv1x3(self.conv3x1(self.reduce(self.pre(x))))
        y = y + self.local(y) + self.atrous(y)
        y = self.expand(self.post(y))
        return self.shuffle(y + x)


def edab_stage(channels, dilations):
    return nn.Sequential(*[EDAB(channels, d) for d in dilations])
