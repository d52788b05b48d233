"""Training losses, normalised over the whole global batch so DDP's gradient average equals the
single-process gradient (plain per-rank means do not when ranks hold different numbers of pixels).

`global_weighted_ce` is the paper's class-weighted cross-entropy. `global_ohem_ce` is online hard
example mining as the real-time segmentation nets train with it (BiSeNet, DDRNet, PIDNet): only the
pixels whose true-class probability is below a threshold count, but never fewer than `min_kept` of
the hardest; thin classes (pole, sign, fence) are mostly such pixels. Both avoid host syncs, so the
graphed training step can capture them (the k-th probability comes from a device sort, not kthvalue,
whose CUDA kernel selects with one thread block per slice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .datasets import IGNORE
from .distributed import all_reduce_sum


def pixel_weights(weights, num_classes: int, device) -> torch.Tensor:
    """256-entry weight per label value: class weight (or 1), 0 for ignore and unused values."""
    full = torch.zeros(256, device=device)
    full[:num_classes] = torch.as_tensor(weights, device=device, dtype=torch.float32) if weights is not None else 1.0
    return full


def _normalised(loss_sum, denom, world_size: int):
    with torch.no_grad():
        denom = denom.reshape(1)
        all_reduce_sum(denom)
    return loss_sum * world_size / denom.clamp_min(1e-12)


def global_weighted_ce(logits, target, weight, pixel_weight, world_size: int = 1):
    """Weighted CE normalised by the weight sum over ALL ranks' pixels."""
    loss_sum = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE, reduction="sum")
    return _normalised(loss_sum, pixel_weight[target].sum(), world_size)


def ohem_keep(logits, target, thresh: float, min_kept: int) -> torch.Tensor:
    """Mask of the pixels OHEM trains on: labelled, and true-class probability below
    max(thresh, the min_kept-th smallest such probability in this batch)."""
    with torch.no_grad():
        valid = target != IGNORE
        prob = logits.float().softmax(1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
        prob = prob.masked_fill(~valid, 2.0)            # above any threshold: never kept
        flat = prob.flatten()
        k = max(1, min(int(min_kept), flat.numel()))
        kth = flat.sort().values[k - 1]                 # 2.0 when fewer than k labelled pixels: keep all
        return valid & (prob <= torch.clamp(kth, min=float(thresh)))


def global_ohem_ce(logits, target, weight, pixel_weight, thresh: float, min_kept: int, world_size: int = 1):
    """Weighted CE over the OHEM-kept pixels, normalised by their weight sum over all ranks."""
    keep = ohem_keep(logits, target, thresh, min_kept)
    per_pixel = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE, reduction="none")
    return _normalised((per_pixel * keep).sum(), (pixel_weight[target] * keep).sum(), world_size)
