"""Pure-PyTorch SS2D selective scan: the ground truth every faster backend is tested against.

Scan semantics (shared by all backends, see docs/architecture.md):

    x        (B, D, H, W)       features after the SS2D depthwise conv + SiLU
    dt_low   (B, K, R, H, W)    low-rank step size from x_proj, spatial layout
    Bs, Cs   (B, K, N, H, W)    input/output projections from x_proj
    dt_weight(K, D, R)          dt_proj weight per direction
    dt_bias  (K, D)             dt_proj bias (inside the softplus)
    A        (K, D, N)          state matrix diagonal, already negative (-exp(A_log))
    Ds       (K, D)             skip term

K = 4 directions; following the ECMNet paper, rows and columns are scanned
independently (the state restarts at every row / column):
    k=0 rows left->right, k=1 rows right->left,
    k=2 columns top->bottom, k=3 columns bottom->top.
For direction k and a sequence position t:
    delta = softplus(dt_weight[k] @ dt_low[:, k] + dt_bias[k])        (per d)
    h_t   = exp(delta_t * A[k]) * h_{t-1} + delta_t * u_t * B_t      (per d, n)
    y_t   = sum_n C_t[n] * h_t[n] + Ds[k] * u_t
and the output is the sum of the four directions at each pixel (cross-merge).
State and accumulation are fp32 whatever the input dtype; the result has x's dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K_DIRECTIONS = 4


def _delta(dt_low: torch.Tensor, dt_weight: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    """(B, K, R, H, W) -> (B, K, D, H, W) fp32 step sizes."""
    dt = torch.einsum("bkrhw,kdr->bkdhw", dt_low.float(), dt_weight.float())
    return F.softplus(dt + dt_bias.float()[None, :, :, None, None])


def _to_sequences(t: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, S, C, L): S independent sequences of length L in scan order."""
    if k in (0, 1):
        seq = t.permute(0, 2, 1, 3)  # B, H, C, W
    else:
        seq = t.permute(0, 3, 1, 2)  # B, W, C, H
    return seq.flip(-1) if k in (1, 3) else seq


def _from_sequences(seq: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of _to_sequences."""
    if k in (1, 3):
        seq = seq.flip(-1)
    return seq.permute(0, 2, 1, 3) if k in (0, 1) else seq.permute(0, 2, 3, 1)


def _check(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
    if x.dim() != 4:
        raise ValueError(f"SS2D expects x of shape (B, D, H, W), got {tuple(x.shape)}")
    b, d, h, w = x.shape
    k, dd, r = dt_weight.shape
    n = A.shape[-1]
    expect = {
        "dt_low": (dt_low, (b, k, r, h, w)),
        "Bs": (Bs, (b, k, n, h, w)),
        "Cs": (Cs, (b, k, n, h, w)),
        "dt_bias": (dt_bias, (k, d)),
        "A": (A, (k, d, n)),
        "Ds": (Ds, (k, d)),
    }
    if k != K_DIRECTIONS or dd != d:
        raise ValueError(f"dt_weight must be ({K_DIRECTIONS}, {d}, R), got {tuple(dt_weight.shape)}")
    for name, (t, shape) in expect.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"SS2D argument {name} must have shape {shape}, got {tuple(t.shape)}")


def ss2d_scan_sequential(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
    """Readable per-step loop over every sequence; slow, used only as test oracle."""
    _check(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds)
    delta = _delta(dt_low, dt_weight, dt_bias)
    xf = x.float()
    out = torch.zeros_like(xf)
    for k in range(K_DIRECTIONS):
        u = _to_sequences(xf, k)                       # B, S, D, L
        dlt = _to_sequences(delta[:, k], k)            # B, S, D, L
        bb = _to_sequences(Bs[:, k].float(), k)        # B, S, N, L
        cc = _to_sequences(Cs[:, k].float(), k)        # B, S, N, L
        a = A[k].float()                               # D, N
        bsz, s, d, length = u.shape
        h = u.new_zeros(bsz, s, d, a.shape[-1])
        ys = []
        for t in range(length):
            dA = torch.exp(dlt[..., t, None] * a)                       # B,S,D,N
            dBu = dlt[..., t, None] * u[..., t, None] * bb[..., None, :, t]
            h = dA * h + dBu
            y = (h * cc[..., None, :, t]).sum(-1) + Ds[k].float() * u[..., t]
            ys.append(y)
        out = out + _from_sequences(torch.stack(ys, dim=-1), k)
    return out.to(x.dtype)


def ss2d_scan_vectorized(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
    """Both scan axes at once, forward and backward directions stacked.

    Loops only over the sequence length (max(H, W) steps, tens at the FFM's
    1/16 resolution), with all sequences of a direction pair in one tensor op.
    """
    _check(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds)
    delta = _delta(dt_low, dt_weight, dt_bias)         # B,K,D,H,W fp32
    xf = x.float()
    out = torch.zeros_like(xf)
    for pair in ((0, 1), (2, 3)):
        # stack forward and backward directions along a new axis: B, 2, S, ., L
        u = torch.stack([_to_sequences(xf, k) for k in pair], 1)
        dlt = torch.stack([_to_sequences(delta[:, k], k) for k in pair], 1)
        bb = torch.stack([_to_sequences(Bs[:, k].float(), k) for k in pair], 1)
        cc = torch.stack([_to_sequences(Cs[:, k].float(), k) for k in pair], 1)
        # slice, not A[list(pair)]: a list index is a host tensor, which breaks CUDA graph capture
        a = A[pair[0]:pair[1] + 1].float()[None, :, None]          # 1,2,1,D,N
        dd = Ds[pair[0]:pair[1] + 1].float()[None, :, None, :, None]  # 1,2,1,D,1
        dA = torch.exp(dlt.unsqueeze(-1) * a.unsqueeze(-2))   # B,2,S,D,L,N
        dBu = (dlt * u).unsqueeze(-1) * bb.transpose(-1, -2).unsqueeze(-3)  # B,2,S,D,L,N
        length = u.shape[-1]
        h = torch.zeros_like(dBu[..., 0, :])
        hs = []
        for t in range(length):
            h = dA[..., t, :] * h + dBu[..., t, :]
            hs.append(h)
        hs = torch.stack(hs, dim=-2)                    # B,2,S,D,L,N
        y = torch.einsum("bksdln,bksnl->bksdl", hs, cc) + dd * u
        for i, k in enumerate(pair):
            out = out + _from_sequences(y[:, i], k)
    return out.to(x.dtype)
