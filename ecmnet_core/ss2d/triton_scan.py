"""Fused SS2D scan in Triton: cross-scan, selective scan and cross-merge in one pass per axis.

Why a kernel of our own: the PyTorch reference materialises 4 copies of the feature map
and a (B, K, D, H, W) step-size tensor, and mamba-ssm's scan needs them too. Here every
program reads x / dt_low / Bs / Cs in place through their strides, computes the step size
delta = softplus(dt_weight[k] @ dt_low + dt_bias) on the fly and accumulates the four
directions straight into the output.

Layout of the work: one launch per direction k; in it one program per (row or column,
block of D channels, batch item). A sequence is walked in chunks of T positions; inside a
chunk the linear recurrence h_t = a_t * h_{t-1} + b_t runs as a parallel associative scan
over T, and the state is carried from chunk to chunk in registers (fp32). Direction 0
stores the fp32 partial sum, directions 1-2 add theirs, direction 3 adds and writes the
result in x's dtype (launches on one stream are ordered, so no atomics or barriers).

Backward recomputes the chunk from the state saved at its start (states buffer written
by the forward), runs the adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} as a
forward scan of the flipped chunk (tl.associative_scan(reverse=True) has had open
correctness issues), and uses a_t h_{t-1} = h_t - b_t so no division is needed.
Reductions over D (dB, dC, d dt_low) and over positions (dA, d dt_weight, d dt_bias, dDs)
go to per-program partial buffers that are summed afterwards: deterministic, no atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)

# Chunk length T and tiles (BLOCK_D channels) / warps. The backward walks the chunks the
# forward saved states for, so both share T.
# T = 1 (one position per step, no in-chunk scan) is the default because on the H100 with
# Triton 3.6 chunks of T = 16 gave wrong outputs (max error ~3 on O(7) values; T = 1 matched
# the reference to 1e-6 in the same run) although the same code is exact under
# TRITON_INTERPRET=1 and an isolated tl.associative_scan probe is exact on the GPU: an
# unresolved compiler issue to isolate before raising T (see docs/benchmarks/ss2d.md).
CHUNK_T = 1
FWD_CONFIG = dict(BLOCK_D=16, num_warps=4)
BWD_CONFIG = dict(BLOCK_D=16, num_warps=4)


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) is applied first: h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(v):
    # torch.nn.functional.softplus with beta=1, threshold=20
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))))


@triton.jit
def _load_step(x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
               offs_d, dmask, offs_r, rmask, offs_n, nmask,
               sx_b, sx_d, sx_s, sx_l,
               sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
               sb_b, sb_k, sb_n, sb_s, sb_l,
               sc_b, sc_k, sc_n, sc_s, sc_l):
    """Load one chunk: x (BD, T), dt_low (RP, T), B (NP, T), C (NP, T), all fp32."""
    m2 = dmask[:, None] & tmask[None, :]
    x = tl.load(x_ptr + bid * sx_b + offs_d[:, None] * sx_d + s * sx_s + pos[None, :] * sx_l,
                mask=m2, other=0.0).to(tl.float32)
    dtl = tl.load(dtl_ptr + bid * sdt_b + k * sdt_k + offs_r[:, None] * sdt_r + s * sdt_s
                  + pos[None, :] * sdt_l, mask=rmask[:, None] & tmask[None, :], other=0.0).to(tl.float32)
    nm = nmask[:, None] & tmask[None, :]
    bt = tl.load(bs_ptr + bid * sb_b + k * sb_k + offs_n[:, None] * sb_n + s * sb_s + pos[None, :] * sb_l,
                 mask=nm, other=0.0).to(tl.float32)
    ct = tl.load(cs_ptr + bid * sc_b + k * sc_k + offs_n[:, None] * sc_n + s * sc_s + pos[None, :] * sc_l,
                 mask=nm, other=0.0).to(tl.float32)
    return x, dtl, bt, ct


@triton.jit
def _ss2d_fwd_kernel(
    x_ptr, dtl_ptr, bs_ptr, cs_ptr, w_ptr, bias_ptr, a_ptr, ds_ptr,
    acc_ptr, out_ptr, st_ptr,
    D, L, NCHUNK, k,
    sx_b, sx_d, sx_s, sx_l,
    sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
    sb_b, sb_k, sb_n, sb_s, sb_l,
    sc_b, sc_k, sc_n, sc_s, sc_l,
    sa_b, sa_d, sa_s, sa_l,
    so_b, so_d, so_s, so_l,
    R: tl.constexpr, N: tl.constexpr, RP: tl.constexpr, NP: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr,
    REV: tl.constexpr, ACC_IN: tl.constexpr, FINAL: tl.constexpr, SAVE: tl.constexpr,
):
    s = tl.program_id(0)
    db = tl.program_id(1)
    bid = tl.program_id(2).to(tl.int64)
    S = tl.num_programs(0)
    offs_d = db * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    offs_n = tl.arange(0, NP)
    nmask = offs_n < N
    offs_r = tl.arange(0, RP)
    rmask = offs_r < R
    offs_t = tl.arange(0, T)
    dn_mask = dmask[:, None] & nmask[None, :]
    p = k % 2

    a2 = tl.load(a_ptr + (k * D + offs_d[:, None]) * N + offs_n[None, :], mask=dn_mask, other=0.0) * LOG2E
    wt = tl.load(w_ptr + (k * D + offs_d[:, None]) * R + offs_r[None, :],
                 mask=dmask[:, None] & rmask[None, :], other=0.0)
    bias = tl.load(bias_ptr + k * D + offs_d, mask=dmask, other=0.0)
    dsk = tl.load(ds_ptr + k * D + offs_d, mask=dmask, other=0.0)
    h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    for c in range(NCHUNK):
        j = c * T + offs_t
        if REV:
            pos = L - 1 - j
        else:
            pos = j
        tmask = j < L
        x, dtl, bt, ct = _load_step(
            x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
            offs_d, dmask, offs_r, rmask, offs_n, nmask,
            sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
            sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
        dpre = tl.sum(wt[:, :, None] * dtl[None, :, :], axis=1) + bias[:, None]
        delta = _softplus(dpre)
        da = tl.exp2(delta[:, None, :] * a2[:, :, None])
        da = tl.where(tmask[None, None, :], da, 1.0)
        dbu = (delta * x)[:, None, :] * bt[None, :, :]
        if SAVE:
            st_off = (((bid * S + s) * 2 + p) * NCHUNK + c) * D * N
            tl.store(st_ptr + st_off + offs_d[:, None] * N + offs_n[None, :], h, mask=dn_mask)
        sa, sb = tl.associative_scan((da, dbu), 2, _combine)
        hs = sb + sa * h[:, :, None]
        y = tl.sum(hs * ct[None, :, :], axis=1) + dsk[:, None] * x
        h = tl.sum(tl.where(offs_t[None, None, :] == T - 1, hs, 0.0), axis=2)
        m2 = dmask[:, None] & tmask[None, :]
        acc_ptrs = acc_ptr + bid * sa_b + offs_d[:, None] * sa_d + s * sa_s + pos[None, :] * sa_l
        if ACC_IN:
            y += tl.load(acc_ptrs, mask=m2, other=0.0)
        if FINAL:
            out_ptrs = out_ptr + bid * so_b + offs_d[:, None] * so_d + s * so_s + pos[None, :] * so_l
            tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=m2)
        else:
            tl.store(acc_ptrs, y, mask=m2)


@triton.jit
def _ss2d_bwd_kernel(
    x_ptr, dtl_ptr, bs_ptr, cs_ptr, w_ptr, bias_ptr, a_ptr, ds_ptr, st_ptr, dy_ptr,
    dxacc_ptr, dx_ptr, ddtl_ptr, dbs_ptr, dcs_ptr, da_ptr, dw_ptr, dbias_ptr, dds_ptr,
    D, L, NCHUNK, k,
    sx_b, sx_d, sx_s, sx_l,
    sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
    sb_b, sb_k, sb_n, sb_s, sb_l,
    sc_b, sc_k, sc_n, sc_s, sc_l,
    sy_b, sy_d, sy_s, sy_l,
    sa_b, sa_d, sa_s, sa_l,
    so_b, so_d, so_s, so_l,
    # partial buffers (NDB, B, K, R|N, H, W) addressed with the same per-axis strides
    pr_db, pr_b, pr_k, pr_r, pr_s, pr_l,
    pn_db, pn_b, pn_k, pn_n, pn_s, pn_l,
    R: tl.constexpr, N: tl.constexpr, RP: tl.constexpr, NP: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr,
    REV: tl.constexpr, ACC_IN: tl.constexpr, FINAL: tl.constexpr,
):
    s = tl.program_id(0)
    db = tl.program_id(1)
    bid = tl.program_id(2).to(tl.int64)
    S = tl.num_programs(0)
    offs_d = db * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    offs_n = tl.arange(0, NP)
    nmask = offs_n < N
    offs_r = tl.arange(0, RP)
    rmask = offs_r < R
    offs_t = tl.arange(0, T)
    dn_mask = dmask[:, None] & nmask[None, :]
    dr_mask = dmask[:, None] & rmask[None, :]
    p = k % 2

    a_nat = tl.load(a_ptr + (k * D + offs_d[:, None]) * N + offs_n[None, :], mask=dn_mask, other=0.0)
    a2 = a_nat * LOG2E
    wt = tl.load(w_ptr + (k * D + offs_d[:, None]) * R + offs_r[None, :], mask=dr_mask, other=0.0)
    bias = tl.load(bias_ptr + k * D + offs_d, mask=dmask, other=0.0)
    dsk = tl.load(ds_ptr + k * D + offs_d, mask=dmask, other=0.0)
    g = tl.zeros((BLOCK_D, NP), dtype=tl.float32)   # adjoint state after the chunk
    acc_da = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    acc_dw = tl.zeros((BLOCK_D, RP), dtype=tl.float32)
    acc_db = tl.zeros((BLOCK_D,), dtype=tl.float32)
    acc_dd = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for cc in range(NCHUNK):
        c = NCHUNK - 1 - cc
        j = c * T + offs_t
        j1 = j + 1
        if REV:
            pos = L - 1 - j
            pos1 = L - 1 - j1
        else:
            pos = j
            pos1 = j1
        tmask = j < L
        m2 = dmask[:, None] & tmask[None, :]
        x, dtl, bt, ct = _load_step(
            x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
            offs_d, dmask, offs_r, rmask, offs_n, nmask,
            sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
            sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
        dy = tl.load(dy_ptr + bid * sy_b + offs_d[:, None] * sy_d + s * sy_s + pos[None, :] * sy_l,
                     mask=m2, other=0.0).to(tl.float32)
        dpre = tl.sum(wt[:, :, None] * dtl[None, :, :], axis=1) + bias[:, None]
        delta = _softplus(dpre)
        da = tl.exp2(delta[:, None, :] * a2[:, :, None])
        da = tl.where(tmask[None, None, :], da, 1.0)
        dx_u = delta * x
        dbu = dx_u[:, None, :] * bt[None, :, :]
        st_off = (((bid * S + s) * 2 + p) * NCHUNK + c) * D * N
        h0 = tl.load(st_ptr + st_off + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
        sa, sb = tl.associative_scan((da, dbu), 2, _combine)
        hs = sb + sa * h0[:, :, None]
        # a_{t+1}: step size at the next position in scan order (0 past the end)
        t1mask = j1 < L
        dtl1 = tl.load(dtl_ptr + bid * sdt_b + k * sdt_k + offs_r[:, None] * sdt_r + s * sdt_s
                       + pos1[None, :] * sdt_l, mask=rmask[:, None] & t1mask[None, :],
                       other=0.0).to(tl.float32)
        delta1 = _softplus(tl.sum(wt[:, :, None] * dtl1[None, :, :], axis=1) + bias[:, None])
        alpha = tl.exp2(delta1[:, None, :] * a2[:, :, None])
        alpha = tl.where(t1mask[None, None, :], alpha, 0.0)
        cterm = ct[None, :, :] * dy[:, None, :]
        # reverse scan g_t = cterm_t + alpha_t * g_{t+1} as a forward scan of the flipped chunk
        if T > 1:
            ra, rb = tl.associative_scan((tl.flip(alpha, 2), tl.flip(cterm, 2)), 2, _combine)
            gh = tl.flip(rb, 2) + tl.flip(ra, 2) * g[:, :, None]
        else:
            gh = cterm + alpha * g[:, :, None]
        g = tl.sum(tl.where(offs_t[None, None, :] == 0, gh, 0.0), axis=2)
        prev = hs - dbu                                   # a_t * h_{t-1}
        gb = gh * bt[None, :, :]
        ddelta = tl.sum(gb * x[:, None, :] + gh * prev * a_nat[:, :, None], axis=1)
        dx = tl.sum(gb, axis=1) * delta + dsk[:, None] * dy
        dbs = tl.sum(gh * dx_u[:, None, :], axis=0)       # (NP, T)
        dcs = tl.sum(hs * dy[:, None, :], axis=0)          # (NP, T)
        acc_da += tl.sum(gh * prev * delta[:, None, :], axis=2)
        acc_dd += tl.sum(dy * x, axis=1)
        # softplus'(v) = sigmoid(v) = 1 - exp(-softplus(v)); exactly 1 above torch's threshold
        dpre_g = ddelta * tl.where(dpre > 20.0, 1.0, 1.0 - tl.exp(-delta))
        dpre_g = tl.where(m2, dpre_g, 0.0)
        acc_db += tl.sum(dpre_g, axis=1)
        acc_dw += tl.sum(dpre_g[:, None, :] * dtl[None, :, :], axis=2)
        ddtl = tl.sum(dpre_g[:, None, :] * wt[:, :, None], axis=0)   # (RP, T)
        # per-D-block partials of the D reductions
        tl.store(ddtl_ptr + db * pr_db + bid * pr_b + k * pr_k + offs_r[:, None] * pr_r + s * pr_s
                 + pos[None, :] * pr_l, ddtl, mask=rmask[:, None] & tmask[None, :])
        nm = nmask[:, None] & tmask[None, :]
        pn_off = db * pn_db + bid * pn_b + k * pn_k + offs_n[:, None] * pn_n + s * pn_s + pos[None, :] * pn_l
        tl.store(dbs_ptr + pn_off, dbs, mask=nm)
        tl.store(dcs_ptr + pn_off, dcs, mask=nm)
        # dx accumulates over the four directions like the forward output
        acc_ptrs = dxacc_ptr + bid * sa_b + offs_d[:, None] * sa_d + s * sa_s + pos[None, :] * sa_l
        if ACC_IN:
            dx += tl.load(acc_ptrs, mask=m2, other=0.0)
        if FINAL:
            tl.store(dx_ptr + bid * so_b + offs_d[:, None] * so_d + s * so_s + pos[None, :] * so_l,
                     dx.to(dx_ptr.dtype.element_ty), mask=m2)
        else:
            tl.store(acc_ptrs, dx, mask=m2)
    # per-program partials of the position reductions: (B, S, 2, D, .)
    prog = (bid * S + s) * 2 + p
    tl.store(da_ptr + prog * D * N + offs_d[:, None] * N + offs_n[None, :], acc_da, mask=dn_mask)
    tl.store(dw_ptr + prog * D * R + offs_d[:, None] * R + offs_r[None, :], acc_dw, mask=dr_mask)
    tl.store(dbias_ptr + prog * D + offs_d, acc_db, mask=dmask)
    tl.store(dds_ptr + prog * D + offs_d, acc_dd, mask=dmask)


def _axis_strides(t: torch.Tensor, axis: int):
    """Strides of a (..., H, W) tensor as (sequence, position) for rows (axis 0) or columns."""
    sh, sw = t.stride(-2), t.stride(-1)
    return (sh, sw) if axis == 0 else (sw, sh)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def scan_forward(x, dt_low, Bs, Cs, w, bias, A, Ds, save_states: bool, T=CHUNK_T, config=None):
    """Returns (out, states_rows, states_cols); weights must be contiguous fp32."""
    cfg = dict(FWD_CONFIG if config is None else config)
    nw = cfg.pop("num_warps")
    bsz, d, h, wd = x.shape
    r, n = dt_low.shape[2], Bs.shape[2]
    blk = cfg["BLOCK_D"]
    out = torch.empty_like(x)
    acc = out if x.dtype == torch.float32 else torch.empty(x.shape, device=x.device, dtype=torch.float32)
    states = []
    for axis in (0, 1):
        S, L = (h, wd) if axis == 0 else (wd, h)
        nch = triton.cdiv(L, T)
        st = (torch.empty((bsz, S, 2, nch, d, n), device=x.device, dtype=torch.float32)
              if save_states else acc)
        grid = (S, triton.cdiv(d, blk), bsz)
        for k in (2 * axis, 2 * axis + 1):
            _ss2d_fwd_kernel[grid](
                x, dt_low, Bs, Cs, w, bias, A, Ds, acc, out, st,
                d, L, nch, k,
                x.stride(0), x.stride(1), *_axis_strides(x, axis),
                dt_low.stride(0), dt_low.stride(1), dt_low.stride(2), *_axis_strides(dt_low, axis),
                Bs.stride(0), Bs.stride(1), Bs.stride(2), *_axis_strides(Bs, axis),
                Cs.stride(0), Cs.stride(1), Cs.stride(2), *_axis_strides(Cs, axis),
                acc.stride(0), acc.stride(1), *_axis_strides(acc, axis),
                out.stride(0), out.stride(1), *_axis_strides(out, axis),
                R=r, N=n, RP=_pow2(r), NP=_pow2(n), BLOCK_D=blk, T=T,
                REV=k % 2 == 1, ACC_IN=k > 0, FINAL=k == 3, SAVE=save_states, num_warps=nw,
            )
        states.append(st if save_states else None)
    return out, states[0], states[1]


def scan_backward(dy, x, dt_low, Bs, Cs, w, bias, A, Ds, states, T=CHUNK_T, config=None):
    """Gradients (dx, d dt_low, dBs, dCs, dW, dbias, dA, dDs) in fp32 except dx (x's dtype).

    `states` and `T` must come from the scan_forward call of the same inputs.
    """
    cfg = dict(BWD_CONFIG if config is None else config)
    nw = cfg.pop("num_warps")
    blk = cfg["BLOCK_D"]
    bsz, d, h, wd = x.shape
    k, r, n = dt_low.shape[1], dt_low.shape[2], Bs.shape[2]
    ndb = triton.cdiv(d, blk)
    dev = x.device
    dx = torch.empty_like(x)
    dxacc = dx if x.dtype == torch.float32 else torch.empty(x.shape, device=dev, dtype=torch.float32)
    ddtl = torch.empty((ndb, bsz, k, r, h, wd), device=dev, dtype=torch.float32)
    dbs = torch.empty((ndb, bsz, k, n, h, wd), device=dev, dtype=torch.float32)
    dcs = torch.empty_like(dbs)
    da_parts, dw_parts, dbias_parts, dds_parts = [], [], [], []
    for axis in (0, 1):
        S, L = (h, wd) if axis == 0 else (wd, h)
        nch = triton.cdiv(L, T)
        st = states[axis]
        if st.shape[3] != nch:
            raise RuntimeError("SS2D backward must use the forward's chunk size T")
        pa = torch.empty((bsz, S, 2, d, n), device=dev, dtype=torch.float32)
        pw = torch.empty((bsz, S, 2, d, r), device=dev, dtype=torch.float32)
        pb = torch.empty((bsz, S, 2, d), device=dev, dtype=torch.float32)
        pd = torch.empty_like(pb)
        grid = (S, ndb, bsz)
        for k in (2 * axis, 2 * axis + 1):
            _ss2d_bwd_kernel[grid](
                x, dt_low, Bs, Cs, w, bias, A, Ds, st, dy,
                dxacc, dx, ddtl, dbs, dcs, pa, pw, pb, pd,
                d, L, nch, k,
                x.stride(0), x.stride(1), *_axis_strides(x, axis),
                dt_low.stride(0), dt_low.stride(1), dt_low.stride(2), *_axis_strides(dt_low, axis),
                Bs.stride(0), Bs.stride(1), Bs.stride(2), *_axis_strides(Bs, axis),
                Cs.stride(0), Cs.stride(1), Cs.stride(2), *_axis_strides(Cs, axis),
                dy.stride(0), dy.stride(1), *_axis_strides(dy, axis),
                dxacc.stride(0), dxacc.stride(1), *_axis_strides(dxacc, axis),
                dx.stride(0), dx.stride(1), *_axis_strides(dx, axis),
                ddtl.stride(0), ddtl.stride(1), ddtl.stride(2), ddtl.stride(3), *_axis_strides(ddtl, axis),
                dbs.stride(0), dbs.stride(1), dbs.stride(2), dbs.stride(3), *_axis_strides(dbs, axis),
                R=r, N=n, RP=_pow2(r), NP=_pow2(n), BLOCK_D=blk, T=T,
                REV=k % 2 == 1, ACC_IN=k > 0, FINAL=k == 3, num_warps=nw,
            )
        da_parts.append(pa.sum((0, 1)))
        dw_parts.append(pw.sum((0, 1)))
        dbias_parts.append(pb.sum((0, 1)))
        dds_parts.append(pd.sum((0, 1)))
    dA = torch.cat(da_parts)          # (K, D, N): rows give k=0,1, columns k=2,3
    dW = torch.cat(dw_parts)
    dbias = torch.cat(dbias_parts)
    dDs = torch.cat(dds_parts)
    return dx, ddtl.sum(0), dbs.sum(0), dcs.sum(0), dW, dbias, dA, dDs
