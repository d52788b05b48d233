"""Triton kernel behind dda_gate.dda_gates (imported only where Triton is installed).

One program per (batch, block of BLOCK_Q query positions of one axis). The key projection
is folded into the queries (q.Wk p = (Wk^T q).p) and the value projection applied after
the softmax-weighted sum of the pooled inputs (attention is linear in the values), so the
loop over the axis's keys (BLOCK_K per step, online softmax) is two small matmuls on the
pooled data. Dot operands are zero-padded to 16 (Triton's minimum); projections and
accumulation are fp32. The loop's dots: exact fp32 ("ieee") for fp32 inputs, fp16 tensor
cores for fp16, TF32 for bf16 (bf16's 8-bit mantissa in the scores cost up to 0.07 abs). fp32
pooled inputs with fp16 weights (the fused EDAB path, whose means are fp32 sums) take the fp16
path, converted in registers, and give fp32 gates: no separate cast kernel.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_Q = 16      # query positions per program (benchmarks/dda_gate.py --sweep)
BLOCK_K = 128     # key positions per loop step
NUM_WARPS = 4


@triton.jit
def _dda_gate_kernel(P, WQK, WV, G, C, INNER, SPLIT, L, n_h_blocks, scale,
                     sp_b, sp_c, sp_l, sg_b, sg_c, sg_l,
                     BC: tl.constexpr, BI: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
                     DOT16: tl.constexpr, PRECISION: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    is_w = pid >= n_h_blocks
    seg0 = tl.where(is_w, SPLIT, 0)
    seg_len = tl.where(is_w, L - SPLIT, SPLIT)
    q0 = tl.where(is_w, pid - n_h_blocks, pid) * BQ
    c = tl.arange(0, BC)
    i = tl.arange(0, BI)
    cm, im = c < C, i < INNER
    w_mask = im[:, None] & cm[None, :]
    wq = tl.load(WQK + i[:, None] * C + c[None, :], mask=w_mask, other=0.0).to(tl.float32)           # BI x BC
    wk = tl.load(WQK + (INNER + i[:, None]) * C + c[None, :], mask=w_mask, other=0.0).to(tl.float32)
    base = P + b * sp_b + c[:, None] * sp_c
    lq = q0 + tl.arange(0, BQ)
    qm = lq < seg_len
    pq = tl.load(base + (seg0 + lq)[None, :] * sp_l, mask=cm[:, None] & qm[None, :], other=0.0).to(tl.float32)
    q = tl.dot(wq, pq, input_precision="ieee")                                 # BI x BQ
    # scores q.k = q.(Wk p) = (Wk^T q).p: fold the key projection into the query once
    qk = tl.trans(tl.dot(tl.trans(wk), q, input_precision="ieee")) * scale   # BQ x BC
    if DOT16:
        qk = qk.to(tl.float16)
    m_i = tl.full([BQ], float("-inf"), tl.float32)
    l_i = tl.zeros([BQ], tl.float32)
    acc = tl.zeros([BQ, BC], tl.float32)       # attention-weighted pooled inputs (values projected last)
    for k0 in range(0, seg_len, BK):
        lk = k0 + tl.arange(0, BK)
        km = lk < seg_len
        pk = tl.load(base + (seg0 + lk)[None, :] * sp_l, mask=cm[:, None] & km[None, :], other=0.0)  # BC x BK
        if DOT16:
            pk = pk.to(tl.float16)
            s = tl.dot(qk, pk)                                                  # BQ x BK, fp32 accumulate
        else:
            pk = pk.to(tl.float32)
            s = tl.dot(qk, pk, input_precision=PRECISION)
        s = tl.where(km[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if DOT16:
            acc = acc * alpha[:, None] + tl.dot(p.to(pk.dtype), tl.trans(pk))
        else:
            acc = acc * alpha[:, None] + tl.dot(p, tl.trans(pk), input_precision=PRECISION)
        m_i = m_new
    # values are linear in the pooled inputs: sum_m a[l, m] (Wv p_m) = Wv (sum_m a[l, m] p_m)
    wvt = tl.load(WV + c[None, :] * C + c[:, None], mask=cm[:, None] & cm[None, :], other=0.0).to(tl.float32)
    out = tl.dot(acc / l_i[:, None], wvt, input_precision="ieee")             # BQ x BC
    tl.store(G + b * sg_b + c[None, :] * sg_c + (seg0 + lq)[:, None] * sg_l, out.to(G.dtype.element_ty),
             mask=qm[:, None] & cm[None, :])


def _pow2(n: int) -> int:
    return max(16, 1 << (max(int(n), 1) - 1).bit_length())


def dda_gates_triton(pooled, w_qk, w_v, inner: int, split: int, scale: float, block_q=None, block_k=None,
                     num_warps=None):
    """Same as dda_gates_reference, one kernel launch (CUDA tensors). Block sizes and warps:
    benchmarks/dda_gate.py --sweep."""
    bq, bk = block_q or BLOCK_Q, block_k or BLOCK_K
    b, c, length = pooled.shape
    out = torch.empty_like(pooled)
    n_h = triton.cdiv(split, bq)
    grid = (n_h + triton.cdiv(length - split, bq), b)
    _dda_gate_kernel[grid](pooled, w_qk.contiguous(), w_v.contiguous(), out,
                           c, inner, split, length, n_h, float(scale), *pooled.stride(), *out.stride(),
                           BC=_pow2(c), BI=_pow2(inner), BQ=bq, BK=bk,
                           DOT16=torch.float16 in (pooled.dtype, w_qk.dtype),
                           PRECISION="ieee" if pooled.dtype == torch.float32 else "tf32",
                           num_warps=num_warps or NUM_WARPS)
    return out


# An opaque operator for torch.compile: Inductor calls the launcher above as it is (no re-tracing of
# the kernel), and CUDA-graph capture records the launch like any other.
@torch.library.custom_op("ecmnet::dda_gates", mutates_args=())
def dda_gates_op(pooled: torch.Tensor, w_qk: torch.Tensor, w_v: torch.Tensor, inner: int, split: int,
                 scale: float) -> torch.Tensor:
    return dda_gates_triton(pooled, w_qk, w_v, inner, split, scale)


@dda_gates_op.register_fake
def _(pooled, w_qk, w_v, inner, split, scale):
    return torch.empty_like(pooled)
