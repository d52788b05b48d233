"""STDC1 backbone (Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021,
Table 1 / Fig. 3) as PP-LiteSeg-T uses it (PaddleSeg's STDC1: features only, no classifier).

    stage 1-2  3x3 s2 conv-BN-ReLU 3->32 (1/2), 3x3 s2 conv-BN-ReLU 32->64 (1/4)
    stage 3    STDC module 64->256 (s2), STDC module 256->256                 1/8
    stage 4    STDC module 256->512 (s2), STDC module 512->512                1/16
    stage 5    STDC module 512->1024 (s2), STDC module 1024->1024             1/32
STDC module (4 blocks, concatenation): 1x1 conv to N/2, then 3x3 convs to N/4, N/8, N/8, each on the
previous block's output; the four outputs concatenated (N channels). Strided modules put a 3x3 s2
depthwise conv-BN between the first two blocks and average-pool (3x3 s2) the first block's output
before the concatenation.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn_relu(cin, cout, kernel=3, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class STDCModule(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        half = cout // 2
        self.reduce = conv_bn_relu(cin, half, 1)
        strided = stride == 2
        self.down = (nn.Sequential(nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False), nn.BatchNorm2d(half))
                     if strided else nn.Identity())
        # PaddlePaddle average pools leave the padding out of the mean (exclusive=True)
        self.skip = nn.AvgPool2d(3, 2, 1, count_include_pad=False) if strided else nn.Identity()
        self.blocks = nn.ModuleList([conv_bn_relu(half, cout // 4), conv_bn_relu(cout // 4, cout // 8),
                                     conv_bn_relu(cout // 8, cout // 8)])

    def forward(self, x):
        first = self.reduce(x)
        outs, y = [self.skip(first)], self.down(first)
        for block in self.blocks:
            y = block(y)
            outs.append(y)
        return torch.cat(outs, 1)


class STDC1(nn.Module):
    """Returns the 1/8, 1/16 and 1/32 feature maps (256, 512, 1024 channels)."""

    def __init__(self, base=64):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, base // 2, 3, 2), conv_bn_relu(base // 2, base, 3, 2))
        self.stage3 = nn.Sequential(STDCModule(base, 4 * base, 2), STDCModule(4 * base, 4 * base))
        self.stage4 = nn.Sequential(STDCModule(4 * base, 8 * base, 2), STDCModule(8 * base, 8 * base))
        self.stage5 = nn.Sequential(STDCModule(8 * base, 16 * base, 2), STDCModule(16 * base, 16 * base))

    def forward(self, x):
        f8 = self.stage3(self.stem(x))
        f16 = self.stage4(f8)
        return f8, f16, self.stage5(f16)
