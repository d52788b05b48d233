"""Triton kernels behind ops.edab (imported only where Triton is installed).

Three launches per block after its 1x3 convolution (output t), each over row segments
(BLOCK_P pixels x all channels, whole 16-byte vectors where the width is a power of two):

  _vertical_kernel      y = PReLU(t), then both branches' 3x1 conv (rates 1 and d) + bias +
                        PReLU, stored as one tensor v = [local | atrous] (5 row loads of t).
  _edab_pool_kernel     walks a band of rows of v, applies each branch's 1x3 conv + bias + PReLU
                        (3 shifted loads each) and accumulates the means the attentions need:
                        local branch over H x W (channel attention), atrous branch over W per
                        row and over H per column (dual-direction attention), relaxed fp32
                        atomics into one zeroed buffer (summation order varies run to run; the
                        kernel that reads them is a later launch).
  _edab_finish_kernel   the same 1x3 stage again, z = y + local * CA gate + atrous *
                        sigmoid(g_h + g_w), post BN + PReLU, then the expand 1x1 conv (tl.dot,
                        its weight rows in channel-shuffle order), the residual (gathered in the
                        same order) and, when there is a next block, its BN + PReLU: the
                        block's output and the next block's first-conv input, two stores.

Why v is stored: the first version recomputed both branches from t in the pool and finish
kernels (17 loads and ~150 fp32 operations per value, twice); on an H100 that made them
instruction-bound at 25-38 us per call, slower than Inductor's unfused kernels
(docs/benchmarks/inference.md). Storing the 3x1 stage costs one write and two L2-resident reads.
Launch configurations are timed per shape on first use (ops/tuning.py).

Per-channel parameters arrive packed as rows of one tensor (ops.edab.PACKED_ROWS).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .. import tuning
from .._triton_lib import is_even, row_segment, row_segment_blocks, tile_mask

# (elements per program = BLOCK_P x padded channels, warps, rows per program; 0: enough programs to
# fill the GPU): timed per shape on first use (rows are a runtime argument: no extra compilation)
# (Four 1-2 warp candidates were tried on 2026-11-23 16:12 UTC: on a fresh machine, cold Triton cache,
# benchmarks/edab_fused.py did not finish tuning the 12 within its 135 s limit, so they were never
# timed; each candidate adds compilations to the engine's first use, so they are not candidates.)
CANDIDATES = ((1024, 4, 1), (2048, 4, 1), (4096, 8, 1), (1024, 4, 0), (2048, 4, 0), (4096, 8, 0),
              (2048, 4, 4), (4096, 8, 4))
DEFAULT_CONFIG = (2048, 4, 0)     # where nothing is timed (tuning off, graph capture, CPU interpreter)


@triton.jit
def _prelu(v, a):
    return tl.where(v >= 0.0, v, v * a)


@triton.jit
def _row(Pk, k, C, c, cm):
    """Packed parameter row k as a (1, BC) fp32 tile."""
    return tl.load(Pk + k * C + c, mask=cm, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _load_y(T, b, hh, ww, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN: tl.constexpr):
    """PReLU(t) at row hh (scalar) and columns ww, zero outside the image (the convs' zero padding)."""
    ok = (ww * 0 + hh >= 0) & (ww * 0 + hh < H) & (ww >= 0) & (ww < W)
    t = tl.load(T + b * st_b + hh * st_h + ww[:, None] * st_w + c[None, :] * st_c,
                mask=tile_mask(ok, cm, EVEN), other=0.0).to(tl.float32)
    return _prelu(t, ay)


@triton.jit
def _vertical_kernel(T, Pk, V, C, H, W, D, st_b, st_c, st_h, st_w, sv_b, sv_c, sv_h, sv_w,
                     EVEN: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    # both branches' 3x1 conv (rates 1 and D) + bias + PReLU of y = PReLU(t): V[:, :C] local, V[:, C:] atrous
    h, b, p, c, cm = row_segment(C, BP, BC)
    ay = _row(Pk, 0, C, c, cm)
    y = _load_y(T, b, h, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN)
    local = (_load_y(T, b, h - 1, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN) * _row(Pk, 1, C, c, cm)
             + y * _row(Pk, 2, C, c, cm)
             + _load_y(T, b, h + 1, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN) * _row(Pk, 3, C, c, cm))
    local = _prelu(local + _row(Pk, 4, C, c, cm), _row(Pk, 5, C, c, cm))
    atrous = (_load_y(T, b, h - D, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN) * _row(Pk, 11, C, c, cm)
              + y * _row(Pk, 12, C, c, cm)
              + _load_y(T, b, h + D, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN) * _row(Pk, 13, C, c, cm))
    atrous = _prelu(atrous + _row(Pk, 14, C, c, cm), _row(Pk, 15, C, c, cm))
    m = tile_mask(p < W, cm, EVEN)
    out = V + b * sv_b + h * sv_h + p[:, None] * sv_w + c[None, :] * sv_c
    tl.store(out, local.to(V.dtype.element_ty), mask=m)
    tl.store(out + C * sv_c, atrous.to(V.dtype.element_ty), mask=m)


@triton.jit
def _horizontal(V, Pk, C, b, h, p, c, cm, H, W, sv_b, sv_c, sv_h, sv_w, D, OFF, R0: tl.constexpr,
                EVEN: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    """A branch's 1x3 conv (rate D) + bias + PReLU at row h (scalar), columns p, from its 3x1 stage
    (V's channels OFF..OFF+C, zero outside the image). Packed rows R0..R0+2 taps, R0+3 bias, R0+4 PReLU."""
    acc = tl.zeros([BP, BC], tl.float32)
    for j in tl.static_range(3):
        ww = p + (j - 1) * D
        ok = (ww * 0 + h < H) & (ww >= 0) & (ww < W)
        v = tl.load(V + b * sv_b + h * sv_h + ww[:, None] * sv_w + (c[None, :] + OFF) * sv_c,
                    mask=tile_mask(ok, cm, EVEN), other=0.0).to(tl.float32)
        acc += v * _row(Pk, R0 + j, C, c, cm)
    return _prelu(acc + _row(Pk, R0 + 3, C, c, cm), _row(Pk, R0 + 4, C, c, cm))


@triton.jit
def _edab_pool_kernel(V, Pk, POOL, C, H, W, D, RB, inv_w, inv_h, inv_hw,
                      sv_b, sv_c, sv_h, sv_w, sp_b, sp_c, sp_l,
                      EVEN: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    band, b, p, c, cm = row_segment(C, BP, BC)
    pm = p < W
    colsum = tl.zeros([BP, BC], tl.float32)
    locsum = tl.zeros([BP, BC], tl.float32)
    for r in range(RB):
        h = band * RB + r
        ok = (pm & (p * 0 + h < H))[:, None] & cm[None, :]
        local = _horizontal(V, Pk, C, b, h, p, c, cm, H, W, sv_b, sv_c, sv_h, sv_w, 1, 0, 6, EVEN, BP, BC)
        atrous = _horizontal(V, Pk, C, b, h, p, c, cm, H, W, sv_b, sv_c, sv_h, sv_w, D, C, 16, EVEN, BP, BC)
        local = tl.where(ok, local, 0.0)
        atrous = tl.where(ok, atrous, 0.0)
        locsum += local
        colsum += atrous
        tl.atomic_add(POOL + b * sp_b + c * sp_c + h * sp_l, tl.sum(atrous, 0) * inv_w,
                      mask=cm & (c * 0 + h < H), sem="relaxed")
    tl.atomic_add(POOL + b * sp_b + c[None, :] * sp_c + (H + p[:, None]) * sp_l, colsum * inv_h,
                  mask=pm[:, None] & cm[None, :], sem="relaxed")
    tl.atomic_add(POOL + b * sp_b + c * sp_c + (H + W) * sp_l, tl.sum(locsum, 0) * inv_hw, mask=cm, sem="relaxed")


@triton.jit
def _edab_finish_kernel(T, V, X, Pk, G, CA, CAW, WE, SRC, NPRE, XO, PO, C, CO, H, W, D, RB,
                        st_b, st_c, st_h, st_w, sv_b, sv_c, sv_h, sv_w, sx_b, sx_c, sx_h, sx_w,
                        sg_b, sg_c, sg_l, sa_b, sa_c, so_b, so_c, so_h, so_w,
                        K_CA: tl.constexpr, HAS_NEXT: tl.constexpr, DOT_IEEE: tl.constexpr,
                        EVEN: tl.constexpr, EVEN_O: tl.constexpr, PAIRS: tl.constexpr,
                        BP: tl.constexpr, BC: tl.constexpr, BO: tl.constexpr):
    # a band of RB rows per program: what depends only on the channel or the column (weights, the
    # channel-attention gate, the column half of the DDA gate) is loaded once per band.
    # PAIRS: EDAB's shuffle of 2C channels in groups of C, i.e. output channel o < C is input channel
    # 2o and C + o is 2o + 1; the residual then comes from one contiguous load of x split into even and
    # odd channels, and the expand conv runs as two C-wide halves (else: SRC gathers, one dot).
    band, b, p, c, cm = row_segment(C, BP, BC)
    pm = p < W
    ay = _row(Pk, 0, C, c, cm)
    # channel attention: sigmoid of the 1-D conv (zero padded) across the channel means
    ca = tl.zeros([BC], tl.float32)
    for k in tl.static_range(K_CA):
        cc = c + (k - K_CA // 2)
        ca += tl.load(CA + b * sa_b + cc * sa_c, mask=(cc >= 0) & (cc < C), other=0.0) * tl.load(CAW + k).to(tl.float32)
    ca = tl.sigmoid(ca)[None, :]
    g_w = tl.load(G + b * sg_b + c[None, :] * sg_c + (H + p[:, None]) * sg_l,
                  mask=pm[:, None] & cm[None, :], other=0.0).to(tl.float32)
    post_s, post_b, post_a = _row(Pk, 21, C, c, cm), _row(Pk, 22, C, c, cm), _row(Pk, 23, C, c, cm)
    o = tl.arange(0, BO)
    om = o < CO
    if PAIRS:
        we_lo = tl.load(WE + c[:, None] * CO + c[None, :])                  # BC x BC: outputs 0..C-1
        we_hi = tl.load(WE + c[:, None] * CO + C + c[None, :])              # outputs C..2C-1
    else:
        we = tl.load(WE + c[:, None] * CO + o[None, :], mask=cm[:, None] & om[None, :], other=0.0)    # BC x BO
        src = tl.load(SRC + o, mask=om, other=0)
    if HAS_NEXT:
        n_s = tl.load(NPRE + o, mask=om, other=0.0).to(tl.float32)[None, :]
        n_b = tl.load(NPRE + CO + o, mask=om, other=0.0).to(tl.float32)[None, :]
        n_a = tl.load(NPRE + 2 * CO + o, mask=om, other=0.0).to(tl.float32)[None, :]
        if PAIRS:
            n_s_lo, n_s_hi = _halves(n_s, BC)
            n_b_lo, n_b_hi = _halves(n_b, BC)
            n_a_lo, n_a_hi = _halves(n_a, BC)
    for r in range(RB):
        h = band * RB + r
        y = _load_y(T, b, h, p, c, cm, H, W, st_b, st_c, st_h, st_w, ay, EVEN)
        local = _horizontal(V, Pk, C, b, h, p, c, cm, H, W, sv_b, sv_c, sv_h, sv_w, 1, 0, 6, EVEN, BP, BC)
        atrous = _horizontal(V, Pk, C, b, h, p, c, cm, H, W, sv_b, sv_c, sv_h, sv_w, D, C, 16, EVEN, BP, BC)
        g_h = tl.load(G + b * sg_b + c * sg_c + h * sg_l, mask=cm & (c * 0 + h < H), other=0.0).to(tl.float32)
        z = y + local * ca + atrous * tl.sigmoid(g_h[None, :] + g_w)
        u = _prelu(z * post_s + post_b, post_a)            # 0 where c >= C
        mo = tile_mask(pm & (p * 0 + h < H), om, EVEN_O)
        row = b * sx_b + h * sx_h + p[:, None] * sx_w
        out = b * so_b + h * so_h + p[:, None] * so_w
        if PAIRS:
            xt = tl.load(X + row + o[None, :] * sx_c, mask=mo, other=0.0).to(tl.float32)
            x_even, x_odd = tl.split(tl.reshape(xt, (BP, BC, 2)))
            lo = _dot(u, we_lo, DOT_IEEE) + x_even
            hi = _dot(u, we_hi, DOT_IEEE) + x_odd
            m_half = tile_mask(pm & (p * 0 + h < H), cm, EVEN)
            out_lo = out + c[None, :] * so_c
            tl.store(XO + out_lo, lo.to(XO.dtype.element_ty), mask=m_half)
            tl.store(XO + out_lo + C * so_c, hi.to(XO.dtype.element_ty), mask=m_half)
            if HAS_NEXT:     # the next block's BN + PReLU, the input of its first convolution
                tl.store(PO + out_lo, _prelu(lo * n_s_lo + n_b_lo, n_a_lo).to(PO.dtype.element_ty), mask=m_half)
                tl.store(PO + out_lo + C * so_c, _prelu(hi * n_s_hi + n_b_hi, n_a_hi).to(PO.dtype.element_ty),
                         mask=m_half)
        else:
            # expand 1x1 conv on the tensor cores, its output channels already in channel-shuffle order,
            # and the residual shuffled the same way: output channel o is input channel SRC[o]
            xn = _dot(u, we, DOT_IEEE) + tl.load(X + row + src[None, :] * sx_c, mask=mo, other=0.0).to(tl.float32)
            tl.store(XO + out + o[None, :] * so_c, xn.to(XO.dtype.element_ty), mask=mo)
            if HAS_NEXT:
                tl.store(PO + out + o[None, :] * so_c, _prelu(xn * n_s + n_b, n_a).to(PO.dtype.element_ty), mask=mo)


@triton.jit
def _dot(u, w, IEEE: tl.constexpr):
    """u (fp32) @ w on the tensor cores: fp32 inputs exactly (IEEE), else in w's dtype, fp32 sums."""
    if IEEE:
        return tl.dot(u, w.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(u.to(w.dtype), w)


@triton.jit
def _halves(v, BC: tl.constexpr):
    """A (1, 2 BC) row as its (1, BC) halves."""
    a, b = tl.split(tl.permute(tl.reshape(v, (1, 2, BC)), (0, 2, 1)))
    return a, b


def _check(t, packed):
    if t.dim() != 4 or packed.shape != (24, t.shape[1]):
        raise ValueError(f"fused EDAB: packed parameters {tuple(packed.shape)} do not fit t {tuple(t.shape)} "
                         "(expected 24 x channels)")


def _check_v(v, t):
    if tuple(v.shape) != (t.shape[0], 2 * t.shape[1], *t.shape[2:]):
        raise ValueError(f"fused EDAB: branch tensor {tuple(v.shape)} does not fit t {tuple(t.shape)} "
                         "(expected twice its channels)")


def _blocks(channels: int, config):
    bp, bc = row_segment_blocks(channels, config[0])
    return bp, bc, is_even(channels, bc)


def _rows(cfg, h: int, n_cols: int, b: int) -> int:
    """Rows per program: the configuration's, or (0) as many as keep >= 1024 programs, at most 16."""
    return cfg[2] or max(1, min(16, (h * n_cols * b) // 1024))


def _config(name: str, t, extra, launch, candidates=None):
    return tuning.pick_for(name, t, extra, candidates or CANDIDATES, launch, DEFAULT_CONFIG)


def edab_vertical_triton(t, packed, dilation: int, config=None):
    """Both branches' 3x1 stage, (B, 2C, H, W) channels_last: [local | atrous]."""
    b, c, h, w = t.shape
    _check(t, packed)
    v = torch.empty((b, 2 * c, h, w), device=t.device, dtype=t.dtype, memory_format=torch.channels_last)

    def launch(cfg):
        bp, bc, even = _blocks(c, cfg)
        _vertical_kernel[(triton.cdiv(w, bp), h, b)](
            t, packed, v, c, h, w, int(dilation), *t.stride(), *v.stride(), EVEN=even, BP=bp, BC=bc,
            num_warps=cfg[1])

    # one row per program (its rows entry is not used): the candidates that differ only in rows are one
    launch(config or _config("edab_vertical", t, int(dilation), launch, tuple(c for c in CANDIDATES if c[2] == 1)))
    return v


def edab_pool_triton(v, packed, dilation: int, config=None):
    """(B, C, H + W + 1) fp32: the dual-direction attention's pooled descriptors (the atrous
    branch's mean over W per row, then its mean over H per column), then the channel-attention
    mean of the local branch. One buffer: one zero fill before the atomics (ops.edab.split_means)."""
    b, c2, h, w = v.shape
    c = c2 // 2
    if c2 % 2 or packed.shape != (24, c):
        raise ValueError(f"edab_pool: packed parameters {tuple(packed.shape)} do not fit the branch tensor "
                         f"{tuple(v.shape)} (expected 24 x half its channels)")

    def launch(cfg):
        bp, bc, even = _blocks(c, cfg)
        n_cols = triton.cdiv(w, bp)
        rows = _rows(cfg, h, n_cols, b)
        means = torch.zeros((b, c, h + w + 1), device=v.device, dtype=torch.float32)    # one fill
        _edab_pool_kernel[(n_cols, triton.cdiv(h, rows), b)](
            v, packed, means, c, h, w, int(dilation), rows, 1.0 / w, 1.0 / h, 1.0 / (h * w),
            *v.stride(), *means.stride(), EVEN=even, BP=bp, BC=bc, num_warps=cfg[1])
        return means

    return launch(config or _config("edab_pool", v, int(dilation), launch))


def edab_finish_triton(t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, next_pre, dilation: int,
                       pairs: bool = False, config=None):
    """The block's output shuffle(expand(PReLU(BN(y + local * CA + atrous * DDA gate))) + x) and, with
    next_pre (3 x C: BN scale, shift, PReLU of the next block), that block's first-conv input; else an
    empty tensor. pairs: shuffle_src is EDAB's (even input channels, then odd ones; inference.fused_edab.is_pairs)."""
    b, c, h, w = t.shape
    co = x.shape[1]
    _check(t, packed)
    _check_v(v, t)
    if (tuple(x.shape) != (b, co, h, w) or tuple(gates.shape) != (b, c, h + w) or tuple(ca.shape) != (b, c)
            or tuple(expand_t.shape) != (c, co) or tuple(shuffle_src.shape) != (co,)
            or (next_pre is not None and tuple(next_pre.shape) != (3, co))):
        raise ValueError(f"edab_finish: shapes do not fit: t {tuple(t.shape)}, x {tuple(x.shape)}, gates "
                         f"{tuple(gates.shape)}, channel means {tuple(ca.shape)}, expand {tuple(expand_t.shape)}, "
                         f"shuffle {tuple(shuffle_src.shape)}")
    x_next = torch.empty_like(x)
    p_next = torch.empty_like(x) if next_pre is not None else x.new_empty(0)
    bo = max(16, triton.next_power_of_2(co))
    ca_weight, expand_t, shuffle_src = ca_weight.contiguous(), expand_t.contiguous(), shuffle_src.contiguous()
    nxt = next_pre.contiguous() if next_pre is not None else packed

    def launch(cfg):
        bp, bc, even = _blocks(c, cfg)
        n_cols = triton.cdiv(w, bp)
        rows = _rows(cfg, h, n_cols, b)
        _edab_finish_kernel[(n_cols, triton.cdiv(h, rows), b)](
            t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, nxt, x_next,
            p_next if next_pre is not None else x_next, c, co, h, w, int(dilation), rows,
            *t.stride(), *v.stride(), *x.stride(), *gates.stride(), *ca.stride(), *x_next.stride(),
            K_CA=ca_weight.numel(), HAS_NEXT=next_pre is not None, DOT_IEEE=t.dtype == torch.float32,
            EVEN=even, EVEN_O=is_even(co, bo), PAIRS=pairs and even and co == 2 * c, BP=bp, BC=bc, BO=bo,
            num_warps=cfg[1])

    launch(config or _config("edab_finish", t, (co, next_pre is not None, pairs), launch))
    return x_next, p_next


# Opaque operators for torch.compile and CUDA-graph capture (as ops/dda/triton.py).
@torch.library.custom_op("ecmnet::edab_vertical", mutates_args=())
def edab_vertical_op(t: torch.Tensor, packed: torch.Tensor, dilation: int) -> torch.Tensor:
    return edab_vertical_triton(t, packed, dilation)


@edab_vertical_op.register_fake
def _(t, packed, dilation):
    b, c, h, w = t.shape
    return torch.empty((b, 2 * c, h, w), device=t.device, dtype=t.dtype, memory_format=torch.channels_last)


@torch.library.custom_op("ecmnet::edab_pool", mutates_args=())
def edab_pool_op(v: torch.Tensor, packed: torch.Tensor, dilation: int) -> torch.Tensor:
    return edab_pool_triton(v, packed, dilation)


@edab_pool_op.register_fake
def _(v, packed, dilation):
    b, c2, h, w = v.shape
    return v.new_empty((b, c2 // 2, h + w + 1), dtype=torch.float32)


@torch.library.custom_op("ecmnet::edab_finish", mutates_args=())
def edab_finish_op(t: torch.Tensor, v: torch.Tensor, x: torch.Tensor, packed: torch.Tensor, gates: torch.Tensor,
                   ca: torch.Tensor, ca_weight: torch.Tensor, expand_t: torch.Tensor, shuffle_src: torch.Tensor,
                   next_pre: Optional[torch.Tensor], dilation: int, pairs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    return edab_finish_triton(t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, next_pre, dilation, pairs)


@edab_finish_op.register_fake
def _(t, v, x, packed, gates, ca, ca_weight, expand_t, shuffle_src, next_pre, dilation, pairs):
    return torch.empty_like(x), (torch.empty_like(x) if next_pre is not None else x.new_empty(0))
