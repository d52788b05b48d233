"""Batched train-time augmentation on whatever device holds the batch (GPU when data is preloaded there).

Random scale + crop (padding with ignore where the scaled image is smaller than the crop) and
horizontal flip are one affine resampling per sample, done for the whole batch by a single
`grid_sample` call; the torchvision reference recipe (RandomResize -> RandomCrop(pad_if_smaller)
-> RandomHorizontalFlip) expressed without per-sample Python work on the host.
Random numbers come from an explicit CPU generator so runs and resumes are reproducible.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

IGNORE = 255


N_PARAMS = 7     # per sample: scale, y offset, x offset, flip, brightness, contrast, saturation


def draw_params(n: int, gen: torch.Generator) -> torch.Tensor:
    """(N_PARAMS, n) uniform [0, 1) numbers from a CPU generator; drawing a whole epoch at once and
    copying it to the GPU once keeps host-device synchronisation out of the training steps."""
    return torch.rand(N_PARAMS, n, generator=gen, dtype=torch.float64)


def _color_jitter(x: torch.Tensor, strength: float, u: torch.Tensor) -> torch.Tensor:
    """Per-sample brightness, contrast, saturation factors in [1-s, 1+s]; x in [0, 1]."""
    f = (1 + (u.to(x.dtype) * 2 - 1) * strength)[:, :, None, None, None]
    x = x * f[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean
    gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * f[2] + gray
    return x.clamp_(0, 1)


def random_scale_crop_flip(img: torch.Tensor, lab: torch.Tensor, crop: Sequence[int],
                           scale_range=(0.5, 2.0), hflip: bool = True, color_jitter: float = 0.0,
                           gen: Optional[torch.Generator] = None, u: Optional[torch.Tensor] = None):
    """img (B,3,H,W) uint8, lab (B,H,W) uint8 -> img (B,3,ch,cw) float in [0,1], lab (B,ch,cw) int64.

    Each sample is scaled by s ~ U(scale_range); a crop of size `crop` is taken at a uniform
    offset when the scaled image is larger, or the scaled image is placed at a uniform offset
    inside the crop (rest = ignore / black) when it is smaller.
    Randomness: `u` (N_PARAMS, B) uniforms from `draw_params` (any device), else drawn from `gen`.
    """
    b, _, h, w = img.shape
    ch, cw = int(crop[0]), int(crop[1])
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if u is None:
        u = draw_params(b, gen or torch.Generator().manual_seed(0))
    dev = img.device
    u = u.to(device=dev, dtype=torch.float32)
    s = lo + (hi - lo) * u[0]
    sh, sw = s * h, s * w                               # scaled size (pixels)
    # offset of the crop in scaled-image pixels (negative = image placed inside a larger crop)
    oy = torch.where(sh >= ch, u[1] * (sh - ch), -u[1] * (ch - sh))
    ox = torch.where(sw >= cw, u[2] * (sw - cw), -u[2] * (cw - sw))
    flip = (u[3] < 0.5) if hflip else torch.zeros(b, dtype=torch.bool, device=dev)
    # output pixel j (centre j+0.5) -> scaled coord j+0.5+ox -> source coord (j+0.5+ox)/s
    # grid_sample(align_corners=False) wants normalized source coords: 2*src/W - 1.
    jj = torch.arange(cw, device=dev, dtype=torch.float32) + 0.5
    ii = torch.arange(ch, device=dev, dtype=torch.float32) + 0.5
    gx = (jj[None] + ox[:, None]) / s[:, None] * (2.0 / w) - 1.0      # B, cw
    gy = (ii[None] + oy[:, None]) / s[:, None] * (2.0 / h) - 1.0      # B, ch
    gx = torch.where(flip[:, None], -gx, gx)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # B,ch,cw,2
    x = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x.div_(255.0)
    # labels: shift by one so that the zero padding is distinguishable, then nearest neighbour
    y = F.grid_sample((lab.float() + 1).unsqueeze(1), grid, mode="nearest", padding_mode="zeros",
                      align_corners=False).squeeze(1)
    y = torch.where(y == 0, torch.full_like(y, IGNORE + 1), y) - 1
    if color_jitter > 0:
        x = _color_jitter(x, color_jitter, u[4:7])
    return x, y.long()


_STATS: dict = {}


def _stats(mean, std, device, dtype):
    """Mean/std tensors cached per device: building them from lists each step is a blocking host->GPU copy."""
    key = (tuple(mean), tuple(std), str(device), dtype)
    if key not in _STATS:
        _STATS[key] = (torch.tensor(mean, device=device, dtype=dtype).view(1, 3, 1, 1),
                       torch.tensor(std, device=device, dtype=dtype).view(1, 3, 1, 1))
    return _STATS[key]


def to_model_input(x01: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    m, s = _stats(mean, std, x01.device, x01.dtype)
    x = (x01 - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
