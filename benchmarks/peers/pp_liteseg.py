"""PP-LiteSeg-T (Peng et al., "PP-LiteSeg: A Superior Real-Time Semantic Segmentation Model",
arXiv 2204.02681, 2022; official code PaddleSeg, paddleseg/models/pp_liteseg.py and the config
configs/pp_liteseg/pp_liteseg_stdc1_cityscapes_*.yml), written from the paper's Fig. 2-4 and the
official architecture for speed comparisons. T: STDC1 encoder, decoder channels 32/64/128.

    encoder   STDC1 (stdcnet.py): 1/8 (256), 1/16 (512), 1/32 (1024 channels)
    SPPM      average pools to 1x1, 2x2, 4x4 of the 1/32 map, each 1x1 conv-BN-ReLU 1024->128,
              upsampled and summed, 3x3 conv-BN-ReLU 128->128
    FLD       three UAFMs from coarse to fine: (1024 at 1/32, SPPM 128) -> 128,
              (512 at 1/16, 128) -> 64, (256 at 1/8, 64) -> 32
    head      3x3 conv-BN-ReLU 32->32, 1x1 conv 32->C (no bias) at 1/8, bilinear up to the input
UAFM with spatial attention: the low-level map x gets a 3x3 conv-BN-ReLU to the high-level map's
channels, the high-level map y is upsampled to x; alpha = sigmoid(3x3 conv-BN(3x3 conv-BN-ReLU(
[mean_c x, max_c x, mean_c y, max_c y]))) (4->2->1); out = 3x3 conv-BN-ReLU(alpha x + (1 - alpha) y).
The training-only heads on the 1/16 and 1/32 decoder outputs are left out, and so is the 1x1
conv_last 1024->1024 (1.05 M) that PaddleSeg's STDC1 builds but segmentation never runs. 8.03 M
parameters for 19 classes (no published count; an independent port of the STDC1 version: about 8.0 M).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .resnet_parts import resize_to
from .stdcnet import STDC1, conv_bn_relu


class SPPM(nn.Module):
    """Simple pyramid pooling: bins summed instead of concatenated (paper Fig. 4)."""

    def __init__(self, cin, mid, cout, bins=(1, 2, 4)):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), conv_bn_relu(cin, mid, 1)) for b in bins])
        self.out = conv_bn_relu(mid, cout, 3)

    def forward(self, x):
        y = resize_to(self.stages[0](x), x)
        for stage in self.stages[1:]:
            y = y + resize_to(stage(x), x)
        return self.out(y)


class UAFMSpatial(nn.Module):
    """Unified attention fusion module, spatial-attention version (paper Fig. 3)."""

    def __init__(self, low_ch, high_ch, cout):
        super().__init__()
        self.conv_low = conv_bn_relu(low_ch, high_ch, 3)
        self.attention = nn.Sequential(conv_bn_relu(4, 2, 3),
                                       nn.Conv2d(2, 1, 3, padding=1, bias=False), nn.BatchNorm2d(1))
        self.out = conv_bn_relu(high_ch, cout, 3)

    def forward(self, low, high):
        x = self.conv_low(low)
        y = resize_to(high, x)
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True),
                           y.mean(1, keepdim=True), y.amax(1, keepdim=True)], 1)
        alpha = torch.sigmoid(self.attention(stats))
        return self.out(x * alpha + y * (1 - alpha))


class PPLiteSegT(nn.Module):
    def __init__(self, num_classes=19, decoder_chs=(32, 64, 128), context_ch=128, head_ch=32):
        super().__init__()
        self.encoder = STDC1()
        self.sppm = SPPM(1024, context_ch, context_ch)
        self.fuse32 = UAFMSpatial(1024, context_ch, decoder_chs[2])
        self.fuse16 = UAFMSpatial(512, decoder_chs[2], decoder_chs[1])
        self.fuse8 = UAFMSpatial(256, decoder_chs[1], decoder_chs[0])
        self.head = nn.Sequential(conv_bn_relu(decoder_chs[0], head_ch, 3),
                                  nn.Conv2d(head_ch, num_classes, 1, bias=False))

    def forward(self, x):
        f8, f16, f32 = self.encoder(x)
        y = self.fuse32(f32, self.sppm(f32))
        y = self.fuse16(f16, y)
        y = self.fuse8(f8, y)
        return resize_to(self.head(y), x)
