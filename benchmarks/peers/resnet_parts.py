"""ResNet-style parts shared by DDRNet and PIDNet (both build on the same basic / bottleneck blocks,
stage rule and segmentation head; DDRNet's paper Table I, PIDNet's paper Fig. 3 and Table 1).

Every function is shape-generic: resizes take the target size from a tensor, so the networks run at
any input size (not only multiples of 64) and trace under torch.fx / torch.compile without
data-dependent Python branches.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, kernel=1, stride=1):
    """Bias-free conv + BN (folded into one conv by the benchmark)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


def bn_relu_conv(cin, cout, kernel=1, groups=1):
    """Pre-activation unit of the pyramid-pooling modules and heads (BN, ReLU, then conv)."""
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False))


def resize_to(x, ref):
    """Bilinear resize of x to ref's H x W (align_corners=False, as in all three official codes)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class _Residual(nn.Module):
    """body(x) + shortcut(x) (1x1 conv-BN when the shape changes), then ReLU if relu_out."""

    def __init__(self, body, cin, cout, stride, relu_out):
        super().__init__()
        self.body = body
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu_out = relu_out

    def forward(self, x):
        y = self.body(x) + self.shortcut(x)
        return F.relu(y) if self.relu_out else y


class BasicBlock(_Residual):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut."""
    expansion = 1

    def __init__(self, cin, planes, stride=1, relu_out=True):
        body = nn.Sequential(nn.Conv2d(cin, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                             nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        super().__init__(body, cin, planes, stride, relu_out)


class Bottleneck(_Residual):
    """1x1 conv-BN-ReLU, 3x3 (strided) conv-BN-ReLU, 1x1 conv-BN to 2 x planes, + shortcut."""
    expansion = 2

    def __init__(self, cin, planes, stride=1, relu_out=False):
        cout = planes * self.expansion
        body = nn.Sequential(nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                             nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                             nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        super().__init__(body, cin, cout, stride, relu_out)


def residual_stage(block, cin, planes, blocks, stride=1):
    """`blocks` blocks, the first one strided. Which blocks end with a ReLU follows the official code:
    the last block never does (the caller applies ReLU where the next stage or fusion needs it), a
    first bottleneck doesn't either, every other block does."""
    layers = []
    for i in range(blocks):
        relu_out = (block is BasicBlock) if i == 0 else i < blocks - 1
        layers.append(block(cin if i == 0 else planes * block.expansion, planes, stride if i == 0 else 1,
                            relu_out=relu_out))
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """What DDRNet's DAPPM and PIDNet's PAPPM share on the 1/64 map: four average pools (5/9/17
    windows and global), a 1x1 BN-ReLU-conv per scale and for the unpooled input, a 1x1 compression of
    the five branches and a 1x1 shortcut. They differ only in how the pooled branches are processed
    (`process`, set by the subclass, and forward)."""

    def __init__(self, cin, mid, cout):
        super().__init__()
        self.pools = nn.ModuleList([nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8),
                                    nn.AdaptiveAvgPool2d(1)])
        self.scale0 = bn_relu_conv(cin, mid)
        self.scales = nn.ModuleList([bn_relu_conv(cin, mid) for _ in self.pools])
        self.compression = bn_relu_conv(mid * (len(self.pools) + 1), cout)
        self.shortcut = bn_relu_conv(cin, cout)

    def pooled(self, x):
        """Each pooled scale, 1x1-convolved and resized back to x."""
        return [resize_to(scale(pool(x)), x) for pool, scale in zip(self.pools, self.scales)]


class SegmentHead(nn.Module):
    """BN-ReLU-3x3 conv, BN-ReLU-1x1 conv with bias: per-pixel class logits at the feature's resolution."""

    def __init__(self, cin, mid, classes):
        super().__init__()
        self.body = nn.Sequential(bn_relu_conv(cin, mid, 3), nn.BatchNorm2d(mid), nn.ReLU(),
                                  nn.Conv2d(mid, classes, 1, bias=True))

    def forward(self, x):
        return self.body(x)
