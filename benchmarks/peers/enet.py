"""ENet (Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time Semantic
Segmentation", 2016), written from the paper's Table 1 and Fig. 2 for speed comparisons.

    initial       concat(3x3 stride-2 conv 3->13, max-pool) -> 16
    stage 1       bottleneck1.0 downsampling 16->64, 4 x bottleneck 64
    stage 2       bottleneck2.0 downsampling 64->128, then 2.1 regular, 2.2 dilated 2,
                  2.3 asymmetric 5, 2.4 dilated 4, 2.5 regular, 2.6 dilated 8,
                  2.7 asymmetric 5, 2.8 dilated 16
    stage 3       stage 2 without 2.0
    stage 4       bottleneck4.0 upsampling 128->64, 2 x bottleneck 64
    stage 5       bottleneck5.0 upsampling 64->16, 1 x bottleneck 16
    fullconv      transposed conv 16->C, stride 2
Bottleneck: 1x1 projection (2x2 stride 2 when downsampling) to 1/4 channels, BN, PReLU;
main conv (3x3 / dilated 3x3 / 5x1+1x5 / transposed 3x3); BN, PReLU; 1x1 expansion, BN;
spatial dropout; add the main branch (max-pool + zero channel padding when downsampling,
1x1 conv + BN + max-unpool when upsampling); PReLU. ~0.36 M parameters for 19 classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(cin, cout, kernel, stride=1, padding=0, dilation=1):
    return [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3), nn.PReLU(cout)]


class InitialBlock(nn.Module):
    def __init__(self, cout=16):
        super().__init__()
        self.conv = nn.Conv2d(3, cout - 3, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class Bottleneck(nn.Module):
    """Regular / dilated / asymmetric bottleneck (same channels in and out)."""

    def __init__(self, c, kind="regular", dilation=1, dropout=0.1):
        super().__init__()
        i = c // 4
        if kind == "asymmetric":
            mid = [nn.Conv2d(i, i, (5, 1), padding=(2, 0), bias=False),
                   nn.Conv2d(i, i, (1, 5), padding=(0, 2), bias=False),
                   nn.BatchNorm2d(i, eps=1e-3), nn.PReLU(i)]
        else:
            mid = _cbr(i, i, 3, padding=dilation, dilation=dilation)
        self.ext = nn.Sequential(*_cbr(c, i, 1), *mid, nn.Conv2d(i, c, 1, bias=False),
                                 nn.BatchNorm2d(c, eps=1e-3), nn.Dropout2d(dropout))
        self.act = nn.PReLU(c)

    def forward(self, x):
        return self.act(x + self.ext(x))


class DownBottleneck(nn.Module):
    def __init__(self, cin, cout, dropout=0.1):
        super().__init__()
        i = cin // 4          # projection reduces the input width by 4, as in every bottleneck
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.ext = nn.Sequential(*_cbr(cin, i, 2, stride=2), *_cbr(i, i, 3, padding=1),
                                 nn.Conv2d(i, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                                 nn.Dropout2d(dropout))
        self.act = nn.PReLU(cout)
        self.pad = cout - cin

    def forward(self, x):
        main, idx = self.pool(x)
        main = F.pad(main, (0, 0, 0, 0, 0, self.pad))
        return self.act(main + self.ext(x)), idx


class UpBottleneck(nn.Module):
    def __init__(self, cin, cout, dropout=0.1):
        super().__init__()
        i = cin // 4
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.ext = nn.Sequential(*_cbr(cin, i, 1),
                                 nn.ConvTranspose2d(i, i, 3, stride=2, padding=1, output_padding=1, bias=False),
                                 nn.BatchNorm2d(i, eps=1e-3), nn.PReLU(i),
                                 nn.Conv2d(i, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                                 nn.Dropout2d(dropout))
        self.act = nn.PReLU(cout)

    def forward(self, x, idx, size):
        main = self.unpool(self.main(x), idx, output_size=size)
        return self.act(main + self.ext(x))


def _stage23():
    spec = [("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
            ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)]
    return nn.Sequential(*[Bottleneck(128, kind, d, 0.1) for kind, d in spec])


class ENet(nn.Module):
    def __init__(self, num_classes=19):
        super().__init__()
        self.initial = InitialBlock(16)
        self.down1 = DownBottleneck(16, 64, 0.01)
        self.stage1 = nn.Sequential(*[Bottleneck(64, dropout=0.01) for _ in range(4)])
        self.down2 = DownBottleneck(64, 128, 0.1)
        self.stage2 = _stage23()
        self.stage3 = _stage23()
        self.up4 = UpBottleneck(128, 64)
        self.stage4 = nn.Sequential(Bottleneck(64), Bottleneck(64))
        self.up5 = UpBottleneck(64, 16)
        self.stage5 = Bottleneck(16)
        self.fullconv = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, output_padding=1, bias=False)

    def forward(self, x):
        x0 = self.initial(x)
        x1, idx1 = self.down1(x0)
        x1 = self.stage1(x1)
        x2, idx2 = self.down2(x1)
        x2 = self.stage3(self.stage2(x2))
        y = self.stage4(self.up4(x2, idx2, x1.shape[-2:]))
        y = self.stage5(self.up5(y, idx1, x0.shape[-2:]))
        return self.fullconv(y)
