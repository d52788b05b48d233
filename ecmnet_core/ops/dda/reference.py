"""Dual-direction attention in plain PyTorch: the model's own math and the oracle of the DDA kernel.

Why here, below the model: model/layers.py (DualDirectionAttention) and the kernel's dispatcher
(ops/dda) both compute this; the op layer owns it so that no op imports the model.
"""
from __future__ import annotations

import torch


def axis_attention(q, k, v, scale):
    """Softmax attention along one axis. q, k: B x c' x L; v: B x C x L -> B x C x L."""
    attn = torch.softmax(torch.einsum("bcl,bcm->blm", q, k) * scale, dim=-1)
    return torch.einsum("bcm,blm->bcl", v, attn)


def dda_gates_reference(pooled, w_qk, w_v, inner: int, split: int, scale: float):
    """pooled: B x C x (H + W), the H-axis descriptor (mean over W) then the W-axis one.
    w_qk: 2*inner x C, w_v: C x C. Returns B x C x (H + W): attention output per axis."""
    proj = torch.einsum("oc,bcl->bol", torch.cat([w_qk, w_v]), pooled)
    segments = (proj[:, :, :split], proj[:, :, split:])
    return torch.cat([axis_attention(p[:, :inner], p[:, inner:2 * inner], p[:, 2 * inner:], scale)
                      for p in segments], dim=2)
