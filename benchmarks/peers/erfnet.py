"""ERFNet (Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-Time Semantic
Segmentation", T-ITS 2018), written from the paper's Table I for speed comparisons.

Layers 1-16 encoder, 17-23 decoder:
    1  downsampler 3->16            2  downsampler 16->64      3-7  5 x non-bt-1D(64)
    8  downsampler 64->128          9-16 non-bt-1D(128) dilations 2, 4, 8, 16, 2, 4, 8, 16
    17 deconv 128->64   18-19 2 x non-bt-1D(64)   20 deconv 64->16   21-22 2 x non-bt-1D(16)
    23 deconv 16->C (2x2, stride 2)
Downsampler: concat(3x3 stride-2 conv, 2x2 max-pool) + BN + ReLU.
Non-bottleneck-1D: 3x1, ReLU, 1x3, BN, ReLU, 3x1 (dilated), ReLU, 1x3 (dilated), BN, dropout,
residual add, ReLU. ~2.06 M parameters for 19 classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Downsampler(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class NonBottleneck1D(nn.Module):
    def __init__(self, c, dilation=1, dropout=0.0):
        super().__init__()
        d = dilation
        self.conv3x1_1 = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(c, c, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True)
        self.conv1x3_2 = nn.Conv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d), bias=True)
        self.bn2 = nn.BatchNorm2d(c, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x):
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        y = F.relu(self.conv3x1_2(y))
        y = self.dropout(self.bn2(self.conv1x3_2(y)))
        return F.relu(y + x)


class Upsampler(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ERFNet(nn.Module):
    def __init__(self, num_classes=19):
        super().__init__()
        layers = [Downsampler(3, 16), Downsampler(16, 64)]
        layers += [NonBottleneck1D(64, 1, 0.03) for _ in range(5)]
        layers += [Downsampler(64, 128)]
        layers += [NonBottleneck1D(128, d, 0.3) for d in (2, 4, 8, 16, 2, 4, 8, 16)]
        layers += [Upsampler(128, 64), NonBottleneck1D(64), NonBottleneck1D(64)]
        layers += [Upsampler(64, 16), NonBottleneck1D(16), NonBottleneck1D(16)]
        self.body = nn.Sequential(*layers)
        self.output = nn.ConvTranspose2d(16, num_classes, 2, stride=2, bias=True)

    def forward(self, x):
        return self.output(self.body(x))
