"""PIDNet-S (Xu, Xiong and Bhattacharyya, "PIDNet: A Real-time Semantic Segmentation Network
Inspired by PID Controllers", CVPR 2023; official code github.com/XuJiacong/PIDNet), written from
the paper's Fig. 3-6 / Table 1 and the official architecture for speed comparisons. S: m=2, n=3,
32 base channels, PAPPM 96, head 128.

    stem      3x3 s2 conv 3->32, BN, ReLU; 3x3 s2 conv 32->32, BN, ReLU                  1/4
    stage 1-2 m basic blocks 32; m basic blocks 32->64 (s2)                             1/8
    I branch  n basic blocks 64->128 (s2, 1/16), n basic blocks 128->256 (s2, 1/32),
              2 bottlenecks 256->512 (s2, 1/64), PAPPM -> 128
    P branch  m basic blocks 64 (x2 stages), 1 bottleneck 64->128; at 1/8. After stages 3 and 4
              Pag: sigmoid(sum_c f_x(P) * up(f_y(I))) weighs P against up(I) (1x1 conv-BN(I) -> 64)
    D branch  1 basic block 64->32, 1 bottleneck 32->64, 1 bottleneck 64->128; at 1/8. After
              stages 3 and 4 it adds up(3x3 conv-BN(I)) (-> 32, -> 64)
    Bag       (light, as PIDNet-S): sigma = sigmoid(D);
              out = 1x1 conv-BN((1 - sigma) * I + P) + 1x1 conv-BN(I + sigma * P), 128 -> 128
    head      BN-ReLU-3x3 conv 128->128, BN-ReLU-1x1 conv 128->C at 1/8, bilinear up to the input
PAPPM: DAPPM's five scales computed in parallel (each scale + the 1x1 input branch, one grouped
3x3 conv over the four), concatenated with the input branch, 1x1 conv, plus a 1x1 shortcut.
The training-only P and D auxiliary heads are left out. 7.63 M parameters for 19 classes
(paper: 7.6 M).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .resnet_parts import (BasicBlock, Bottleneck, PyramidPooling, SegmentHead, bn_relu_conv, conv_bn, resize_to,
                           residual_stage)


class PAPPM(PyramidPooling):
    """Parallel aggregation pyramid pooling (paper Fig. 6) on the 1/64 map: every scale adds the
    unpooled branch, then one grouped 3x3 convolution processes all four at once (parallel)."""

    def __init__(self, cin, mid, cout):
        super().__init__(cin, mid, cout)
        self.process = bn_relu_conv(4 * mid, 4 * mid, 3, groups=4)

    def forward(self, x):
        base = self.scale0(x)
        scales = [scaled + base for scaled in self.pooled(x)]
        return self.compression(torch.cat([base, self.process(torch.cat(scales, 1))], 1)) + self.shortcut(x)


class Pag(nn.Module):
    """Pixel-attention-guided fusion (paper Fig. 4): the P branch takes the I branch's context where
    their embeddings agree."""

    def __init__(self, channels, mid):
        super().__init__()
        self.f_p = conv_bn(channels, mid)
        self.f_i = conv_bn(channels, mid)

    def forward(self, p, i):
        sigma = torch.sigmoid((self.f_p(p) * resize_to(self.f_i(i), p)).sum(1, keepdim=True))
        return (1 - sigma) * p + sigma * resize_to(i, p)


class LightBag(nn.Module):
    """Boundary-attention-guided fusion, light version (paper Fig. 5b): the D branch's boundary
    attention chooses detail (P) near edges and context (I) elsewhere."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_p = conv_bn(cin, cout)
        self.conv_i = conv_bn(cin, cout)

    def forward(self, p, i, d):
        sigma = torch.sigmoid(d)
        return self.conv_p((1 - sigma) * i + p) + self.conv_i(i + sigma * p)


class PIDNetS(nn.Module):
    def __init__(self, num_classes=19, m=2, n=3, planes=32, ppm_planes=96, head_planes=128):
        super().__init__()
        p = planes
        self.stem = nn.Sequential(nn.Conv2d(3, p, 3, 2, 1), nn.BatchNorm2d(p), nn.ReLU(),
                                  nn.Conv2d(p, p, 3, 2, 1), nn.BatchNorm2d(p), nn.ReLU())
        self.layer1 = residual_stage(BasicBlock, p, p, m)
        self.layer2 = residual_stage(BasicBlock, p, 2 * p, m, stride=2)
        # I branch
        self.layer3 = residual_stage(BasicBlock, 2 * p, 4 * p, n, stride=2)
        self.layer4 = residual_stage(BasicBlock, 4 * p, 8 * p, n, stride=2)
        self.layer5 = residual_stage(Bottleneck, 8 * p, 8 * p, 2, stride=2)
        self.spp = PAPPM(16 * p, ppm_planes, 4 * p)
        # P branch
        self.compression3, self.compression4 = conv_bn(4 * p, 2 * p), conv_bn(8 * p, 2 * p)
        self.pag3, self.pag4 = Pag(2 * p, p), Pag(2 * p, p)
        self.layer3_p = residual_stage(BasicBlock, 2 * p, 2 * p, m)
        self.layer4_p = residual_stage(BasicBlock, 2 * p, 2 * p, m)
        self.layer5_p = residual_stage(Bottleneck, 2 * p, 2 * p, 1)
        # D branch
        self.layer3_d = BasicBlock(2 * p, p, relu_out=False)
        self.layer4_d = residual_stage(Bottleneck, p, p, 1)
        self.layer5_d = residual_stage(Bottleneck, 2 * p, 2 * p, 1)
        self.diff3, self.diff4 = conv_bn(4 * p, p, 3), conv_bn(8 * p, 2 * p, 3)
        self.bag = LightBag(4 * p, 4 * p)
        self.head = SegmentHead(4 * p, head_planes, num_classes)

    def forward(self, x):
        y = self.layer1(self.stem(x))
        y = F.relu(self.layer2(F.relu(y)))                      # 1/8, shared by all three branches
        p, d = self.layer3_p(y), self.layer3_d(y)
        i = F.relu(self.layer3(y))
        p = self.pag3(p, self.compression3(i))
        d = d + resize_to(self.diff3(i), d)
        i = F.relu(self.layer4(i))
        p, d = self.layer4_p(F.relu(p)), self.layer4_d(F.relu(d))
        p = self.pag4(p, self.compression4(i))
        d = d + resize_to(self.diff4(i), d)
        p, d = self.layer5_p(F.relu(p)), self.layer5_d(F.relu(d))
        i = resize_to(self.spp(self.layer5(i)), p)
        return resize_to(self.head(self.bag(p, i, d)), x)
