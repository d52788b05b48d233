"""DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes", arXiv 2101.06085, 2021; official code github.com/ydhongHIT/DDRNet),
written from the paper's Table I / Fig. 3-4 and the official architecture for speed comparisons.

    stem        3x3 s2 conv 3->32, BN, ReLU; 3x3 s2 conv 32->32, BN, ReLU               1/4
    conv2-3     2 basic blocks 32; 2 basic blocks 32->64 (s2)                         1/8
    conv4       low branch  2 basic blocks 64->128 (s2), 1/16 | high branch 2 basic blocks 64, 1/8
                bilateral fusion: low += 3x3 s2 conv-BN(high); high += up(1x1 conv-BN(low))
    conv5_1     low 2 basic blocks 128->256 (s2), 1/32 | high 2 basic blocks 64
                fusion: low += two 3x3 s2 convs(high); high += up(1x1 conv-BN(low))
    conv5_2     low 1 bottleneck 256->512 (s2), 1/64, then DAPPM -> 128, up to 1/8
                | high 1 bottleneck 64->128
    head        BN-ReLU-3x3 conv 128->64, BN-ReLU-1x1 conv 64->C on (low + high) at 1/8,
                bilinear upsampling x8 to the input size
Every fusion input and stage input passes through ReLU first (the stages end without it).
DAPPM: 1x1 conv on the input and on 5x5/s2, 9x9/s4, 17x17/s8 average pools and the global mean,
each scale upsampled, added to the previous scale's output and refined by a 3x3 conv (hierarchical),
concatenated, 1x1 conv, plus a 1x1 shortcut; every conv pre-activated (BN, ReLU, conv).
The training-only auxiliary head on the high branch after conv4 is left out. 5.70 M parameters
for 19 classes (paper: 5.7 M).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .resnet_parts import (BasicBlock, Bottleneck, PyramidPooling, SegmentHead, bn_relu_conv, conv_bn, resize_to,
                           residual_stage)


class DAPPM(PyramidPooling):
    """Deep aggregation pyramid pooling (paper Fig. 4) on the 1/64 map: each scale is processed after
    adding the previous one (sequential)."""

    def __init__(self, cin, mid, cout):
        super().__init__(cin, mid, cout)
        self.process = nn.ModuleList([bn_relu_conv(mid, mid, 3) for _ in self.pools])

    def forward(self, x):
        outs = [self.scale0(x)]
        for scaled, process in zip(self.pooled(x), self.process):
            outs.append(process(scaled + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


class DDRNet23Slim(nn.Module):
    def __init__(self, num_classes=19, planes=32, spp_planes=128, head_planes=64):
        super().__init__()
        p, high = planes, planes * 2
        self.stem = nn.Sequential(nn.Conv2d(3, p, 3, 2, 1), nn.BatchNorm2d(p), nn.ReLU(),
                                  nn.Conv2d(p, p, 3, 2, 1), nn.BatchNorm2d(p), nn.ReLU())
        self.layer1 = residual_stage(BasicBlock, p, p, 2)
        self.layer2 = residual_stage(BasicBlock, p, 2 * p, 2, stride=2)
        self.layer3 = residual_stage(BasicBlock, 2 * p, 4 * p, 2, stride=2)      # low, 1/16
        self.layer3_high = residual_stage(BasicBlock, 2 * p, high, 2)            # high, 1/8
        self.down3 = conv_bn(high, 4 * p, 3, 2)
        self.compression3 = conv_bn(4 * p, high)
        self.layer4 = residual_stage(BasicBlock, 4 * p, 8 * p, 2, stride=2)      # low, 1/32
        self.layer4_high = residual_stage(BasicBlock, high, high, 2)
        self.down4 = nn.Sequential(conv_bn(high, 4 * p, 3, 2), nn.ReLU(), conv_bn(4 * p, 8 * p, 3, 2))
        self.compression4 = conv_bn(8 * p, high)
        self.layer5 = residual_stage(Bottleneck, 8 * p, 8 * p, 1, stride=2)      # low, 1/64, 16p channels
        self.layer5_high = residual_stage(Bottleneck, high, high, 1)             # 2 * high channels
        self.spp = DAPPM(16 * p, spp_planes, 4 * p)
        self.head = SegmentHead(4 * p, head_planes, num_classes)

    def forward(self, x):
        y = self.layer1(self.stem(x))
        y = F.relu(self.layer2(F.relu(y)))
        low, high = self.layer3(y), self.layer3_high(y)
        low, high = (low + self.down3(F.relu(high)),
                     high + resize_to(self.compression3(F.relu(low)), high))
        low, high = self.layer4(F.relu(low)), self.layer4_high(F.relu(high))
        low, high = (low + self.down4(F.relu(high)),
                     high + resize_to(self.compression4(F.relu(low)), high))
        high = self.layer5_high(F.relu(high))
        low = resize_to(self.spp(self.layer5(F.relu(low))), high)
        return resize_to(self.head(low + high), x)
