"""Evaluation-time forward: optional multi-scale and horizontal-flip averaging of softmax scores."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def predict_probs(model, x: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False,
                  amp_dtype=None) -> torch.Tensor:
    """x: normalized (B,3,H,W) -> averaged class probabilities (B,C,H,W) float32."""
    h, w = x.shape[-2:]
    total = None
    n = 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, size=(max(16, round(h * s)), max(16, round(w * s))),
                                              mode="bilinear", align_corners=False)
        views = [xs, xs.flip(-1)] if flip else [xs]
        for k, v in enumerate(views):
            with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(v)
            logits = logits.float()
            if k == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            p = logits.softmax(1)
            total = p if total is None else total + p
            n += 1
    return total / n
