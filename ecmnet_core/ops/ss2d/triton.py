"""Fused SS2D scan in Triton: cross-scan, selective scan and cross-merge in one launch.

Why a kernel of our own: the PyTorch reference materialises 4 copies of the feature map
and a (B, K, D, H, W) step-size tensor, and mamba-ssm's scan needs them too. Here every
program reads x / dt_low / Bs / Cs in place through their strides (rows or columns, in
either order), computes the step size delta = softplus(dt_weight[k] @ dt_low + dt_bias) on
the fly and keeps the state h (BLOCK_D x N, fp32) in registers.

Layout of the work: ONE launch for all four directions. Program (s, d-block, 4*b + k) walks
sequence s (a row for k = 0, 1; a column for k = 2, 3) of batch item b in direction k. The
scan is latency-bound (a sequence is only 64-128 positions at driving resolution), so
running the four directions side by side instead of one launch after another is what pays.
Each direction writes its own fp32 partial output; the cross-merge is one sum over the
four partials (no atomics, deterministic).

A sequence is walked in chunks of T positions. T = 1 (the default) carries the state
position by position. T > 1 runs the in-chunk linear recurrence h_t = a_t h_{t-1} + b_t as
a tl.associative_scan: exact on an H100 for T = 2 and 4 but slower than T = 1, and wrong for
T = 16 with Triton 3.6 although exact under TRITON_INTERPRET=1 (docs/benchmarks/ss2d.md), so
T > 1 is kept for probing only.

Backward recomputes each chunk from the state the forward saved at its start, runs the
adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} backwards, and uses a_t h_{t-1} = h_t - b_t
so no division is needed. Reductions over D (dB, dC, d dt_low) and over positions (dA,
d dt_weight, d dt_bias, dDs) go to per-program partial buffers summed afterwards:
deterministic, no atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)

# Defaults from `benchmarks/ss2d.py --sweep` on an H100 at the FFM's 1024x2048 shapes
# (docs/benchmarks/ss2d.md): one warp per 16-channel block was fastest for both passes, and
# T = 1 beat the exact T = 2 / 4 chunked variants.
CHUNK_T = 1
FWD_CONFIG = dict(BLOCK_D=16, num_warps=1)
BWD_CONFIG = dict(BLOCK_D=16, num_warps=1)
# Inference-only forward (_ss2d_fwd_infer_kernel): state tiles N x BLOCK_D, one channel per lane.
# scan_forward(infer_kernel=None) follows INFER_KERNEL. `benchmarks/ss2d.py --sweep-inference` on an
# H100 (2026-11-23, ECMNet's FFM scan at 1024x2048 input): 0.114 ms at BLOCK_D=64 / 2 warps against
# 0.209 ms for the training forward above (1.83x), max error 2.9e-6 (docs/benchmarks/ss2d.md).
INFER_KERNEL = True
INFER_CONFIG = dict(BLOCK_D=64, num_warps=2)


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) is applied first: h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(v):
    # torch.nn.functional.softplus with beta=1, threshold=20
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))))


@triton.jit
def _pick(axis, along_rows, along_cols):
    """The value for this program's axis (0: rows, 1: columns); plain arithmetic on scalars."""
    return along_rows * (1 - axis) + along_cols * axis


@triton.jit
def _program(H, W, D, N: tl.constexpr, R: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr,
             BLOCK_D: tl.constexpr, T: tl.constexpr):
    """Who this program is: sequence s, channel block, batch item, direction k and its geometry."""
    s = tl.program_id(0)
    db = tl.program_id(1)
    pid2 = tl.program_id(2)
    k = pid2 % 4
    bid = (pid2 // 4).to(tl.int64)
    axis = k // 2
    rev = k % 2
    S = _pick(axis, H, W)                 # number of sequences in this direction
    L = _pick(axis, W, H)                 # their length
    offs_d = db * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_r = tl.arange(0, RP)
    offs_t = tl.arange(0, T)
    return (s, db, k, bid, axis, rev, S, L, offs_d, offs_d < D, offs_n, offs_n < N,
            offs_r, offs_r < R, offs_t)


@triton.jit
def _direction_params(w_ptr, bias_ptr, a_ptr, ds_ptr, k, D, R: tl.constexpr, N: tl.constexpr,
                      offs_d, dmask, offs_r, rmask, offs_n, nmask):
    """Direction k's dt_proj weight/bias, A (natural log base) and skip Ds for a channel block."""
    a_nat = tl.load(a_ptr + (k * D + offs_d[:, None]) * N + offs_n[None, :],
                    mask=dmask[:, None] & nmask[None, :], other=0.0)
    wt = tl.load(w_ptr + (k * D + offs_d[:, None]) * R + offs_r[None, :],
                 mask=dmask[:, None] & rmask[None, :], other=0.0)
    bias = tl.load(bias_ptr + k * D + offs_d, mask=dmask, other=0.0)
    dsk = tl.load(ds_ptr + k * D + offs_d, mask=dmask, other=0.0)
    return a_nat, wt, bias, dsk


@triton.jit
def _load_chunk(x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
                offs_d, dmask, offs_r, rmask, offs_n, nmask,
                sx_b, sx_d, sx_s, sx_l,
                sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
                sb_b, sb_k, sb_n, sb_s, sb_l,
                sc_b, sc_k, sc_n, sc_s, sc_l):
    """One chunk as fp32: x (BD, T), dt_low (RP, T), B (NP, T), C (NP, T)."""
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
def _chunk_positions(c, T: tl.constexpr, offs_t, L, rev):
    """Positions of chunk c in scan order (reversed directions walk from the end) and their mask."""
    j = c * T + offs_t
    return rev * (L - 1) + (1 - 2 * rev) * j, (j >= 0) & (j < L)


@triton.jit
def _step_size(wt, dtl, bias):
    """Pre-activation and delta = softplus(dt_weight @ dt_low + dt_bias): (BD, T) each."""
    dpre = tl.sum(wt[:, :, None] * dtl[None, :, :], axis=1) + bias[:, None]
    return dpre, _softplus(dpre)


@triton.jit
def _ss2d_fwd_kernel(
    x_ptr, dtl_ptr, bs_ptr, cs_ptr, w_ptr, bias_ptr, a_ptr, ds_ptr, part_ptr, st_ptr,
    D, H, W, ST_COLS,
    sx_b, sx_d, sx_h, sx_w,
    sdt_b, sdt_k, sdt_r, sdt_h, sdt_w,
    sb_b, sb_k, sb_n, sb_h, sb_w,
    sc_b, sc_k, sc_n, sc_h, sc_w,
    sp_k, sp_b, sp_d, sp_h, sp_w,
    R: tl.constexpr, N: tl.constexpr, RP: tl.constexpr, NP: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr, SAVE: tl.constexpr,
):
    (s, db, k, bid, axis, rev, S, L, offs_d, dmask, offs_n, nmask,
     offs_r, rmask, offs_t) = _program(H, W, D, N, R, NP, RP, BLOCK_D, T)
    if s < S:
        a_nat, wt, bias, dsk = _direction_params(w_ptr, bias_ptr, a_ptr, ds_ptr, k, D, R, N,
                                                 offs_d, dmask, offs_r, rmask, offs_n, nmask)
        a2 = a_nat * LOG2E
        dn_mask = dmask[:, None] & nmask[None, :]
        nch = tl.cdiv(L, T)
        st_base = axis * ST_COLS + ((bid * S + s) * 2 + rev) * nch * D * N
        part_base = part_ptr + k * sp_k + bid * sp_b + s * _pick(axis, sp_h, sp_w)
        sp_l = _pick(axis, sp_w, sp_h)
        sx_s = _pick(axis, sx_h, sx_w)
        sx_l = _pick(axis, sx_w, sx_h)
        sdt_s = _pick(axis, sdt_h, sdt_w)
        sdt_l = _pick(axis, sdt_w, sdt_h)
        sb_s = _pick(axis, sb_h, sb_w)
        sb_l = _pick(axis, sb_w, sb_h)
        sc_s = _pick(axis, sc_h, sc_w)
        sc_l = _pick(axis, sc_w, sc_h)
        h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        pos, tmask = _chunk_positions(0, T, offs_t, L, rev)
        x, dtl, bt, ct = _load_chunk(
            x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
            offs_d, dmask, offs_r, rmask, offs_n, nmask,
            sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
            sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
        for c in range(nch):
            pos, tmask = _chunk_positions(c, T, offs_t, L, rev)
            # issue the next chunk's loads before this chunk's math: hides their latency
            pos_n, tmask_n = _chunk_positions(c + 1, T, offs_t, L, rev)
            x_n, dtl_n, bt_n, ct_n = _load_chunk(
                x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos_n, tmask_n,
                offs_d, dmask, offs_r, rmask, offs_n, nmask,
                sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
                sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
            dpre, delta = _step_size(wt, dtl, bias)
            da = tl.exp2(delta[:, None, :] * a2[:, :, None])
            dbu = (delta * x)[:, None, :] * bt[None, :, :]
            if SAVE:
                tl.store(st_ptr + st_base + c * D * N + offs_d[:, None] * N + offs_n[None, :], h,
                         mask=dn_mask)
            if T == 1:
                hs = da * h[:, :, None] + dbu
                h = tl.sum(hs, axis=2)
            else:
                da = tl.where(tmask[None, None, :], da, 1.0)
                sa, sb = tl.associative_scan((da, dbu), 2, _combine)
                hs = sb + sa * h[:, :, None]
                h = tl.sum(tl.where(offs_t[None, None, :] == T - 1, hs, 0.0), axis=2)
            y = tl.sum(hs * ct[None, :, :], axis=1) + dsk[:, None] * x
            tl.store(part_base + offs_d[:, None] * sp_d + pos[None, :] * sp_l, y,
                     mask=dmask[:, None] & tmask[None, :])
            x, dtl, bt, ct = x_n, dtl_n, bt_n, ct_n


@triton.jit
def _ss2d_fwd_infer_kernel(
    x_ptr, dtl_ptr, bs_ptr, cs_ptr, w_ptr, bias_ptr, a_ptr, ds_ptr, part_ptr,
    D, H, W,
    sx_b, sx_d, sx_h, sx_w,
    sdt_b, sdt_k, sdt_r, sdt_h, sdt_w,
    sb_b, sb_k, sb_n, sb_h, sb_w,
    sc_b, sc_k, sc_n, sc_h, sc_w,
    sp_k, sp_b, sp_d, sp_h, sp_w,
    R: tl.constexpr, N: tl.constexpr, RP: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Forward without saved states, position by position, with the state as an N x BLOCK_D tile:
    laid out channel-fastest, each lane holds one channel's N states, so the sums over the state
    (the output) and over dt_rank (the step size) stay inside a lane. Same programs and partial
    outputs as _ss2d_fwd_kernel."""
    (s, db, k, bid, axis, rev, S, L, offs_d, dmask, offs_n, nmask,
     offs_r, rmask, _) = _program(H, W, D, N, R, NP, RP, BLOCK_D, 1)
    if s < S:
        nd_mask = nmask[:, None] & dmask[None, :]
        a2 = tl.load(a_ptr + (k * D + offs_d[None, :]) * N + offs_n[:, None], mask=nd_mask, other=0.0) * LOG2E
        wt = tl.load(w_ptr + (k * D + offs_d[None, :]) * R + offs_r[:, None],
                     mask=rmask[:, None] & dmask[None, :], other=0.0)                      # RP x BD
        bias = tl.load(bias_ptr + k * D + offs_d, mask=dmask, other=0.0)
        dsk = tl.load(ds_ptr + k * D + offs_d, mask=dmask, other=0.0)
        x_base = x_ptr + bid * sx_b + offs_d * sx_d + s * _pick(axis, sx_h, sx_w)
        dt_base = dtl_ptr + bid * sdt_b + k * sdt_k + offs_r * sdt_r + s * _pick(axis, sdt_h, sdt_w)
        b_base = bs_ptr + bid * sb_b + k * sb_k + offs_n * sb_n + s * _pick(axis, sb_h, sb_w)
        c_base = cs_ptr + bid * sc_b + k * sc_k + offs_n * sc_n + s * _pick(axis, sc_h, sc_w)
        p_base = part_ptr + k * sp_k + bid * sp_b + offs_d * sp_d + s * _pick(axis, sp_h, sp_w)
        sx_l = _pick(axis, sx_w, sx_h)
        sdt_l = _pick(axis, sdt_w, sdt_h)
        sb_l = _pick(axis, sb_w, sb_h)
        sc_l = _pick(axis, sc_w, sc_h)
        sp_l = _pick(axis, sp_w, sp_h)
        step = 1 - 2 * rev
        pos = rev * (L - 1)
        xv = tl.load(x_base + pos * sx_l, mask=dmask, other=0.0).to(tl.float32)
        dtv = tl.load(dt_base + pos * sdt_l, mask=rmask, other=0.0).to(tl.float32)
        bv = tl.load(b_base + pos * sb_l, mask=nmask, other=0.0).to(tl.float32)
        cv = tl.load(c_base + pos * sc_l, mask=nmask, other=0.0).to(tl.float32)
        h = tl.zeros((NP, BLOCK_D), dtype=tl.float32)
        for i in range(L):
            # the next position's loads go out before this position's math (clamped: the last
            # iteration reloads a valid position and never uses it)
            nxt = pos + step
            ld = tl.minimum(tl.maximum(nxt, 0), L - 1)
            xn = tl.load(x_base + ld * sx_l, mask=dmask, other=0.0).to(tl.float32)
            dtn = tl.load(dt_base + ld * sdt_l, mask=rmask, other=0.0).to(tl.float32)
            bn = tl.load(b_base + ld * sb_l, mask=nmask, other=0.0).to(tl.float32)
            cn = tl.load(c_base + ld * sc_l, mask=nmask, other=0.0).to(tl.float32)
            delta = _softplus(tl.sum(wt * dtv[:, None], axis=0) + bias)                     # BD
            h = tl.exp2(a2 * delta[None, :]) * h + bv[:, None] * (delta * xv)[None, :]
            tl.store(p_base + pos * sp_l, tl.sum(h * cv[:, None], axis=0) + dsk * xv, mask=dmask)
            pos = nxt
            xv, dtv, bv, cv = xn, dtn, bn, cn


@triton.jit
def _ss2d_bwd_kernel(
    x_ptr, dtl_ptr, bs_ptr, cs_ptr, w_ptr, bias_ptr, a_ptr, ds_ptr, st_ptr, dy_ptr,
    dxp_ptr, ddtl_ptr, dbs_ptr, dcs_ptr, da_ptr, dw_ptr, dbias_ptr, dds_ptr,
    D, H, W, ST_COLS, SMAX,
    sx_b, sx_d, sx_h, sx_w,
    sdt_b, sdt_k, sdt_r, sdt_h, sdt_w,
    sb_b, sb_k, sb_n, sb_h, sb_w,
    sc_b, sc_k, sc_n, sc_h, sc_w,
    sy_b, sy_d, sy_h, sy_w,
    sp_k, sp_b, sp_d, sp_h, sp_w,
    # D-block partials (NDB, B, K, R|N, H, W)
    pr_db, pr_b, pr_k, pr_r, pr_h, pr_w,
    pn_db, pn_b, pn_k, pn_n, pn_h, pn_w,
    R: tl.constexpr, N: tl.constexpr, RP: tl.constexpr, NP: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr,
):
    (s, db, k, bid, axis, rev, S, L, offs_d, dmask, offs_n, nmask,
     offs_r, rmask, offs_t) = _program(H, W, D, N, R, NP, RP, BLOCK_D, T)
    if s < S:
        a_nat, wt, bias, dsk = _direction_params(w_ptr, bias_ptr, a_ptr, ds_ptr, k, D, R, N,
                                                 offs_d, dmask, offs_r, rmask, offs_n, nmask)
        a2 = a_nat * LOG2E
        dn_mask = dmask[:, None] & nmask[None, :]
        dr_mask = dmask[:, None] & rmask[None, :]
        nch = tl.cdiv(L, T)
        st_base = axis * ST_COLS + ((bid * S + s) * 2 + rev) * nch * D * N
        sx_s = _pick(axis, sx_h, sx_w)
        sx_l = _pick(axis, sx_w, sx_h)
        sdt_s = _pick(axis, sdt_h, sdt_w)
        sdt_l = _pick(axis, sdt_w, sdt_h)
        sb_s = _pick(axis, sb_h, sb_w)
        sb_l = _pick(axis, sb_w, sb_h)
        sc_s = _pick(axis, sc_h, sc_w)
        sc_l = _pick(axis, sc_w, sc_h)
        sy_s = _pick(axis, sy_h, sy_w)
        sy_l = _pick(axis, sy_w, sy_h)
        dxp_base = dxp_ptr + k * sp_k + bid * sp_b + s * _pick(axis, sp_h, sp_w)
        sp_l = _pick(axis, sp_w, sp_h)
        pr_base = ddtl_ptr + db * pr_db + bid * pr_b + k * pr_k + s * _pick(axis, pr_h, pr_w)
        pr_l = _pick(axis, pr_w, pr_h)
        pn_off = db * pn_db + bid * pn_b + k * pn_k + s * _pick(axis, pn_h, pn_w)
        pn_l = _pick(axis, pn_w, pn_h)
        g = tl.zeros((BLOCK_D, NP), dtype=tl.float32)   # adjoint state after the chunk
        acc_da = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        acc_dw = tl.zeros((BLOCK_D, RP), dtype=tl.float32)
        acc_db = tl.zeros((BLOCK_D,), dtype=tl.float32)
        acc_dd = tl.zeros((BLOCK_D,), dtype=tl.float32)
        da_next = tl.zeros((BLOCK_D, NP, T), dtype=tl.float32)   # T == 1: a_{t+1}, 0 past the end
        pos, tmask = _chunk_positions(nch - 1, T, offs_t, L, rev)
        x, dtl, bt, ct = _load_chunk(
            x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos, tmask,
            offs_d, dmask, offs_r, rmask, offs_n, nmask,
            sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
            sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
        dy = tl.load(dy_ptr + bid * sy_b + offs_d[:, None] * sy_d + s * sy_s + pos[None, :] * sy_l,
                     mask=dmask[:, None] & tmask[None, :], other=0.0).to(tl.float32)
        h0 = tl.load(st_ptr + st_base + (nch - 1) * D * N + offs_d[:, None] * N + offs_n[None, :],
                     mask=dn_mask, other=0.0)
        for cc in range(nch):
            c = nch - 1 - cc
            pos, tmask = _chunk_positions(c, T, offs_t, L, rev)
            m2 = dmask[:, None] & tmask[None, :]
            # issue the previous chunk's loads (the next in this walk) before this chunk's math
            pos_n, tmask_n = _chunk_positions(c - 1, T, offs_t, L, rev)
            x_n, dtl_n, bt_n, ct_n = _load_chunk(
                x_ptr, dtl_ptr, bs_ptr, cs_ptr, k, bid, s, pos_n, tmask_n,
                offs_d, dmask, offs_r, rmask, offs_n, nmask,
                sx_b, sx_d, sx_s, sx_l, sdt_b, sdt_k, sdt_r, sdt_s, sdt_l,
                sb_b, sb_k, sb_n, sb_s, sb_l, sc_b, sc_k, sc_n, sc_s, sc_l)
            dy_n = tl.load(dy_ptr + bid * sy_b + offs_d[:, None] * sy_d + s * sy_s + pos_n[None, :] * sy_l,
                           mask=dmask[:, None] & tmask_n[None, :], other=0.0).to(tl.float32)
            h0_n = tl.load(st_ptr + st_base + (c - 1) * D * N + offs_d[:, None] * N + offs_n[None, :],
                           mask=dn_mask & (c > 0), other=0.0)
            dpre, delta = _step_size(wt, dtl, bias)
            da = tl.exp2(delta[:, None, :] * a2[:, :, None])
            dx_u = delta * x
            dbu = dx_u[:, None, :] * bt[None, :, :]
            if T == 1:
                alpha = da_next
                da_next = da
            else:
                # a_{t+1}: step size at the next position in scan order (0 past the end)
                pos1, t1mask = _chunk_positions(c, T, offs_t + 1, L, rev)
                dtl1 = tl.load(dtl_ptr + bid * sdt_b + k * sdt_k + offs_r[:, None] * sdt_r + s * sdt_s
                               + pos1[None, :] * sdt_l, mask=rmask[:, None] & t1mask[None, :],
                               other=0.0).to(tl.float32)
                _, delta1 = _step_size(wt, dtl1, bias)
                alpha = tl.exp2(delta1[:, None, :] * a2[:, :, None])
                alpha = tl.where(t1mask[None, None, :], alpha, 0.0)
            cterm = ct[None, :, :] * dy[:, None, :]
            if T == 1:
                hs = da * h0[:, :, None] + dbu
                gh = cterm + alpha * g[:, :, None]
                g = tl.sum(gh, axis=2)
            else:
                da = tl.where(tmask[None, None, :], da, 1.0)
                sa, sb = tl.associative_scan((da, dbu), 2, _combine)
                hs = sb + sa * h0[:, :, None]
                # reverse scan as a forward scan of the flipped chunk
                ra, rb = tl.associative_scan((tl.flip(alpha, 2), tl.flip(cterm, 2)), 2, _combine)
                gh = tl.flip(rb, 2) + tl.flip(ra, 2) * g[:, :, None]
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
            tl.store(pr_base + offs_r[:, None] * pr_r + pos[None, :] * pr_l, ddtl,
                     mask=rmask[:, None] & tmask[None, :])
            nm = nmask[:, None] & tmask[None, :]
            pn_ptrs = pn_off + offs_n[:, None] * pn_n + pos[None, :] * pn_l
            tl.store(dbs_ptr + pn_ptrs, dbs, mask=nm)
            tl.store(dcs_ptr + pn_ptrs, dcs, mask=nm)
            tl.store(dxp_base + offs_d[:, None] * sp_d + pos[None, :] * sp_l, dx, mask=m2)
            x, dtl, bt, ct, dy, h0 = x_n, dtl_n, bt_n, ct_n, dy_n, h0_n
        # per-program partials of the position reductions: (B, 4, SMAX, D, .)
        prog = (bid * 4 + k) * SMAX + s
        tl.store(da_ptr + prog * D * N + offs_d[:, None] * N + offs_n[None, :], acc_da, mask=dn_mask)
        tl.store(dw_ptr + prog * D * R + offs_d[:, None] * R + offs_r[None, :], acc_dw, mask=dr_mask)
        tl.store(dbias_ptr + prog * D + offs_d, acc_db, mask=dmask)
        tl.store(dds_ptr + prog * D + offs_d, acc_dd, mask=dmask)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _partials_like(x: torch.Tensor) -> torch.Tensor:
    """(4, B, D, H, W) fp32, one slice per direction, in x's memory format (NCHW or NHWC)."""
    b, d, h, w = x.shape
    if x.stride(1) == 1 and d > 1:    # channels_last input: keep channels innermost
        return torch.empty((4, b, h, w, d), device=x.device, dtype=torch.float32).permute(0, 1, 4, 2, 3)
    return torch.empty((4, b, d, h, w), device=x.device, dtype=torch.float32)


def _state_layout(bsz, h, w, d, n, T):
    """Sizes of the saved chunk-start states: rows (B, H, 2, nch_W, D, N), then columns."""
    rows = bsz * h * 2 * triton.cdiv(w, T) * d * n
    cols = bsz * w * 2 * triton.cdiv(h, T) * d * n
    return rows, cols


def _common_args(x, dt_low, Bs, Cs):
    return (x.stride(0), x.stride(1), x.stride(2), x.stride(3),
            *dt_low.stride(), *Bs.stride(), *Cs.stride())


def scan_forward(x, dt_low, Bs, Cs, w, bias, A, Ds, save_states: bool, T=None, config=None, infer_kernel=None):
    """Returns (out, states); weights must be contiguous fp32. `states` is None unless saved.
    infer_kernel: without saved states, use _ss2d_fwd_infer_kernel (None: INFER_KERNEL)."""
    if not save_states and (INFER_KERNEL if infer_kernel is None else infer_kernel):
        return _scan_forward_infer(x, dt_low, Bs, Cs, w, bias, A, Ds, config), None
    T = CHUNK_T if T is None else T
    cfg = dict(FWD_CONFIG if config is None else config)
    nw = cfg.pop("num_warps")
    blk = cfg["BLOCK_D"]
    bsz, d, h, wd = x.shape
    r, n = dt_low.shape[2], Bs.shape[2]
    part = _partials_like(x)
    rows, cols = _state_layout(bsz, h, wd, d, n, T)
    st = (torch.empty(rows + cols, device=x.device, dtype=torch.float32) if save_states else part)
    grid = (max(h, wd), triton.cdiv(d, blk), 4 * bsz)
    _ss2d_fwd_kernel[grid](
        x, dt_low, Bs, Cs, w, bias, A, Ds, part, st,
        d, h, wd, rows,
        *_common_args(x, dt_low, Bs, Cs),
        *part.stride(),
        R=r, N=n, RP=_pow2(r), NP=_pow2(n), BLOCK_D=blk, T=T, SAVE=save_states, num_warps=nw,
    )
    out = part.sum(0).to(x.dtype)
    return out, (st if save_states else None)


def _scan_forward_infer(x, dt_low, Bs, Cs, w, bias, A, Ds, config=None):
    cfg = dict(INFER_CONFIG if config is None else config)
    bsz, d, h, wd = x.shape
    r, n = dt_low.shape[2], Bs.shape[2]
    part = _partials_like(x)
    _ss2d_fwd_infer_kernel[(max(h, wd), triton.cdiv(d, cfg["BLOCK_D"]), 4 * bsz)](
        x, dt_low, Bs, Cs, w, bias, A, Ds, part, d, h, wd,
        *_common_args(x, dt_low, Bs, Cs), *part.stride(),
        R=r, N=n, RP=_pow2(r), NP=_pow2(n), BLOCK_D=cfg["BLOCK_D"], num_warps=cfg["num_warps"])
    return part.sum(0).to(x.dtype)


def scan_backward(dy, x, dt_low, Bs, Cs, w, bias, A, Ds, states, T=None, config=None):
    """Gradients (dx, d dt_low, dBs, dCs, dW, dbias, dA, dDs) in fp32 except dx (x's dtype).

    `states` and `T` must come from the scan_forward call of the same inputs.
    """
    T = CHUNK_T if T is None else T
    cfg = dict(BWD_CONFIG if config is None else config)
    nw = cfg.pop("num_warps")
    blk = cfg["BLOCK_D"]
    bsz, d, h, wd = x.shape
    k, r, n = dt_low.shape[1], dt_low.shape[2], Bs.shape[2]
    rows, cols = _state_layout(bsz, h, wd, d, n, T)
    if states is None or states.numel() != rows + cols:
        raise RuntimeError("SS2D backward must use the states its forward saved with the same chunk size T")
    ndb = triton.cdiv(d, blk)
    smax = max(h, wd)
    dev = x.device
    dxp = _partials_like(x)
    ddtl = torch.empty((ndb, bsz, k, r, h, wd), device=dev, dtype=torch.float32)
    dbs = torch.empty((ndb, bsz, k, n, h, wd), device=dev, dtype=torch.float32)
    dcs = torch.empty_like(dbs)
    # programs past the end of the shorter axis write nothing: zeros keep the sums exact
    pa = torch.zeros((bsz, 4, smax, d, n), device=dev, dtype=torch.float32)
    pw = torch.zeros((bsz, 4, smax, d, r), device=dev, dtype=torch.float32)
    pb = torch.zeros((bsz, 4, smax, d), device=dev, dtype=torch.float32)
    pd = torch.zeros_like(pb)
    grid = (smax, ndb, 4 * bsz)
    _ss2d_bwd_kernel[grid](
        x, dt_low, Bs, Cs, w, bias, A, Ds, states, dy,
        dxp, ddtl, dbs, dcs, pa, pw, pb, pd,
        d, h, wd, rows, smax,
        *_common_args(x, dt_low, Bs, Cs),
        *dy.stride(),
        *dxp.stride(),
        *ddtl.stride(), *dbs.stride(),
        R=r, N=n, RP=_pow2(r), NP=_pow2(n), BLOCK_D=blk, T=T, num_warps=nw,
    )
    dx = dxp.sum(0).to(x.dtype)
    return (dx, ddtl.sum(0), dbs.sum(0), dcs.sum(0), pw.sum((0, 2)), pb.sum((0, 2)),
            pa.sum((0, 2)), pd.sum((0, 2)))
