"""`mamba` SS2D backend: mamba-ssm's selective_scan_fn with the cross-scan/merge in PyTorch.

Why keep it next to our own kernel: it is the well-known baseline (VMamba's scan path) that
benchmarks/ss2d.py measures the `cuda` backend against. Rows (k=0,1) and columns (k=2,3) are
two selective_scan_fn calls, each with the forward and the flipped direction stacked along
channels and B/C as two groups; every row / column is its own batch entry, so the state
restarts per row / column exactly as in reference.py.
"""
from __future__ import annotations

from functools import partial

import torch

from . import BackendUnavailable, register_backend
from .reference import _check


def _seq(t: torch.Tensor, axis: int) -> torch.Tensor:
    """(B, C, H, W) -> (B*S, C, L): rows (axis 0) or columns (axis 1) as sequences."""
    b, c, h, w = t.shape
    if axis == 0:
        return t.permute(0, 2, 1, 3).reshape(b * h, c, w)
    return t.permute(0, 3, 1, 2).reshape(b * w, c, h)


def _unseq(seq: torch.Tensor, axis: int, b: int, h: int, w: int) -> torch.Tensor:
    c = seq.shape[1]
    if axis == 0:
        return seq.reshape(b, h, c, w).permute(0, 2, 1, 3)
    return seq.reshape(b, w, c, h).permute(0, 2, 3, 1)


def ss2d_scan_mamba(selective_scan_fn, x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
    """reference.py's scan computed with mamba-ssm's kernel (fp32 state, x's dtype out)."""
    _check(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds)
    b, d, h, w = x.shape
    # delta before bias / softplus (the kernel adds delta_bias and applies softplus)
    dt = torch.einsum("bkrhw,kdr->bkdhw", dt_low.float(), dt_weight.float()).to(x.dtype)
    out = None
    for axis, (kf, kb) in enumerate(((0, 1), (2, 3))):   # adjacent: slices, no host index tensors
        u = _seq(x, axis)
        u2 = torch.cat([u, u.flip(-1)], dim=1).contiguous()                      # (BS, 2D, L)
        dlt = torch.cat([_seq(dt[:, kf], axis), _seq(dt[:, kb], axis).flip(-1)], 1).contiguous()
        bb = torch.stack([_seq(Bs[:, kf], axis), _seq(Bs[:, kb], axis).flip(-1)], 1).to(x.dtype).contiguous()
        cc = torch.stack([_seq(Cs[:, kf], axis), _seq(Cs[:, kb], axis).flip(-1)], 1).to(x.dtype).contiguous()
        y = selective_scan_fn(
            u2, dlt, A[kf:kb + 1].float().reshape(2 * d, -1), bb, cc,
            D=Ds[kf:kb + 1].float().reshape(-1), z=None,
            delta_bias=dt_bias[kf:kb + 1].float().reshape(-1), delta_softplus=True,
        )
        y = y[:, :d].float() + y[:, d:].float().flip(-1)                        # merge directions
        part = _unseq(y, axis, b, h, w)
        out = part if out is None else out + part
    return out.to(x.dtype)


def _load():
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)"
        )
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(
            f"mamba-ssm is not importable ({exc}); pip install mamba-ssm --no-build-isolation, "
            "or on the GPU device run scripts/device/build_mamba_ssm.sh"
        ) from exc
    return partial(ss2d_scan_mamba, selective_scan_fn)


register_backend("mamba", _load, "mamba-ssm selective_scan_fn + PyTorch cross-scan/merge")
