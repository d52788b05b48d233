"""Triton kernels behind ops.channels_last (imported only where Triton is installed).

The kernels work on one output row segment per program: BLOCK_P pixels x all channels
(padded to a power of two), so that with channels_last tensors every load and store is one
contiguous run of memory. cuDNN's depthwise kernel for fp16 channels_last and Inductor's
bilinear resize of a 19-channel channels_last tensor both walk the channel axis with a
stride instead (45 us and 165 us per call at ECMNet's 1024x2048 shapes on an H100). The conv +
PReLU kernel is an implicit GEMM for the stem's 3x3 convs at 1/2 resolution and EDAB's 3x1 and
1x3 convs, bias and PReLU fused: at these small channel counts cuDNN plus the PReLU pass took
2.6-4.7 times as long on an H100 (benchmarks/channels_last_ops.py --sections conv; ECMNet's 44
such convs per forward: 1209 us against 361 us). It is timed against cuDNN per shape
(ops/tuning.py), so it runs only where it is faster.
Accumulation is fp32; the result is rounded once to the input dtype.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .. import tuning
from .._triton_lib import is_even, row_segment, row_segment_blocks, tile_mask

ELEMENTS_PER_PROGRAM = 2048      # BLOCK_P x padded channels; 4 warps


@triton.jit
def _depthwise_kernel(X, Wt, Bias, Y, C, H, W,
                      sx_b, sx_c, sx_h, sx_w, sy_b, sy_c, sy_h, sy_w,
                      KH: tl.constexpr, KW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
                      HAS_BIAS: tl.constexpr, EVEN: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    h, b, p, c, cm = row_segment(C, BP, BC)
    acc = tl.zeros([BP, BC], tl.float32)
    for i in tl.static_range(KH):
        hh = h + (i - KH // 2) * DH
        row_ok = (p * 0 + hh >= 0) & (p * 0 + hh < H)           # as a vector: one mask dtype
        for j in tl.static_range(KW):
            ww = p + (j - KW // 2) * DW
            m = tile_mask(row_ok & (ww >= 0) & (ww < W), cm, EVEN)
            xv = tl.load(X + b * sx_b + hh * sx_h + ww[:, None] * sx_w + c[None, :] * sx_c, mask=m, other=0.0)
            wv = tl.load(Wt + c * (KH * KW) + i * KW + j, mask=cm, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(Bias + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + b * sy_b + h * sy_h + p[:, None] * sy_w + c[None, :] * sy_c, acc.to(Y.dtype.element_ty),
             mask=tile_mask(p < W, cm, EVEN))


@triton.jit
def _source(dst, scale, n_in):
    """PyTorch's align_corners=False rule, src = max(scale * (dst + 0.5) - 0.5, 0): the two source
    indices (clamped to the input) and the weight of the second."""
    src = tl.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = tl.minimum(src.to(tl.int32), n_in - 1)
    return i0, tl.minimum(i0 + 1, n_in - 1), src - i0


@triton.jit
def _interpolate(base, r0, r1, c0, c1, lh, lw, m):
    """The bilinear value from the taps at base + row offset (r0, r1) + column offset (c0, c1)."""
    top = (tl.load(base + r0 + c0, mask=m, other=0.0).to(tl.float32) * (1.0 - lw)
           + tl.load(base + r0 + c1, mask=m, other=0.0).to(tl.float32) * lw)
    bottom = (tl.load(base + r1 + c0, mask=m, other=0.0).to(tl.float32) * (1.0 - lw)
              + tl.load(base + r1 + c1, mask=m, other=0.0).to(tl.float32) * lw)
    return top * (1.0 - lh) + bottom * lh


@triton.jit
def _bilinear_kernel(X, Y, C, H_in, W_in, W_out, scale_h, scale_w,
                     sx_b, sx_c, sx_h, sx_w, sy_b, sy_c, sy_h, sy_w,
                     BP: tl.constexpr, BC: tl.constexpr):
    oh, b, p, c, cm = row_segment(C, BP, BC)
    h0, h1, lh = _source(oh, scale_h, H_in)
    w0, w1, lw = _source(p.to(tl.float32), scale_w, W_in)
    m = (p < W_out)[:, None] & cm[None, :]
    out = _interpolate(X + b * sx_b + c[None, :] * sx_c, h0 * sx_h, h1 * sx_h, w0[:, None] * sx_w,
                       w1[:, None] * sx_w, lh, lw[:, None], m)
    tl.store(Y + b * sy_b + oh * sy_h + p[:, None] * sy_w + c[None, :] * sy_c, out.to(Y.dtype.element_ty), mask=m)


@triton.jit
def _bilinear_flat_kernel(X, Y, H_in, W_in, W_out, N, scale_h, scale_w, sx_b, sx_c, sx_h, sx_w, sy_b, sy_h,
                          C: tl.constexpr, BLOCK: tl.constexpr):
    # the same interpolation with the output row as one flat run of W_out * C values (channels_last):
    # every lane holds a value (no lanes lost to padding C up to a power of two) and the stores are
    # whole vectors; the four taps are gathers from the L2-resident input
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    oh = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    m = e < N
    q = e // C
    h0, h1, lh = _source(oh, scale_h, H_in)
    w0, w1, lw = _source(q.to(tl.float32), scale_w, W_in)
    out = _interpolate(X + b * sx_b + (e - q * C) * sx_c, h0 * sx_h, h1 * sx_h, w0 * sx_w, w1 * sx_w, lh, lw, m)
    tl.store(Y + b * sy_b + oh * sy_h + e, out.to(Y.dtype.element_ty), mask=m)


@triton.jit
def _conv_prelu_kernel(X, Wt, Bias, A, Y, CI, CO, H, W,
                       sx_b, sx_c, sx_h, sx_w, sy_b, sy_c, sy_h, sy_w,
                       KH: tl.constexpr, KW: tl.constexpr, HAS_PRELU: tl.constexpr, DOT_IEEE: tl.constexpr,
                       EVEN_I: tl.constexpr, EVEN_O: tl.constexpr, BP: tl.constexpr, BCI: tl.constexpr,
                       BK: tl.constexpr, BCO: tl.constexpr):
    # implicit GEMM (pixels x KH*KW*CI) @ (KH*KW*CI x CO), bias (+ PReLU) fused. The K axis is walked
    # in chunks of BK gathered from the shifted rows and columns: BK = BCI is one dot per tap, a
    # larger BK one dot over several taps
    h, b, p, _, _ = row_segment(CI, BP, BCI)
    co = tl.arange(0, BCO)
    com = co < CO
    acc = tl.zeros([BP, BCO], tl.float32)
    for k0 in tl.static_range(0, KH * KW * BCI, BK):
        k = k0 + tl.arange(0, BK)
        tap = k // BCI
        ci = k % BCI
        hh = h + tap // KW - KH // 2
        dw = tap % KW - KW // 2
        k_ok = tap < KH * KW
        if not EVEN_I:
            k_ok = k_ok & (ci < CI)
        ww = p[:, None] + dw[None, :]
        m = (k_ok & (hh >= 0) & (hh < H))[None, :] & (ww >= 0) & (ww < W)
        xt = tl.load(X + b * sx_b + hh[None, :] * sx_h + ww * sx_w + ci[None, :] * sx_c, mask=m, other=0.0)
        wt = tl.load(Wt + (tap * CI + ci)[:, None] * CO + co[None, :], mask=k_ok[:, None] & com[None, :],
                     other=0.0)
        if DOT_IEEE:
            acc += tl.dot(xt.to(tl.float32), wt.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(xt, wt)
    acc += tl.load(Bias + co, mask=com, other=0.0).to(tl.float32)[None, :]
    if HAS_PRELU:
        a = tl.load(A + co, mask=com, other=0.0).to(tl.float32)[None, :]
        acc = tl.where(acc >= 0.0, acc, acc * a)
    tl.store(Y + b * sy_b + h * sy_h + p[:, None] * sy_w + co[None, :] * sy_c, acc.to(Y.dtype.element_ty),
             mask=tile_mask(p < W, com, EVEN_O))


# (elements per program, warps) for the depthwise kernel, timed per shape on first use (ops/tuning.py);
# the default is what the H100 runs of 2026-11-23 measured (docs/benchmarks/inference.md)
DEPTHWISE_CANDIDATES = ((2048, 4), (4096, 4), (4096, 8), (8192, 8))
DEPTHWISE_DEFAULT = (ELEMENTS_PER_PROGRAM, 4)


def depthwise_conv2d_triton(x, weight, bias, dilation, config=None):
    """'same' depthwise convolution, stride 1, odd kernel: F.conv2d(x, weight, bias, 1, pad, dilation, C)."""
    b, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    out = torch.empty_like(x)
    weight = weight.contiguous()

    def launch(cfg):
        bp, bc = row_segment_blocks(c, cfg[0])
        _depthwise_kernel[(triton.cdiv(w, bp), h, b)](
            x, weight, bias if bias is not None else weight, out, c, h, w,
            *x.stride(), *out.stride(), KH=kh, KW=kw, DH=dilation[0], DW=dilation[1],
            HAS_BIAS=bias is not None, EVEN=is_even(c, bc), BP=bp, BC=bc, num_warps=cfg[1])

    launch(config or tuning.pick_for("depthwise_conv2d", x, (kh, kw, *dilation, bias is not None),
                                            DEPTHWISE_CANDIDATES, launch, DEPTHWISE_DEFAULT))
    return out


# conv_prelu: (pixels per program, K chunk as a multiple of the padded input channels, warps), or
# cuDNN (F.conv2d, then F.prelu): timed per shape on first use, so the kernel runs only where it wins.
# The H100 run of 2026-11-23 17:01 UTC (benchmarks/channels_last_ops.py --sections conv) timed also
# (64, 2, 4) and (128, 2, 8): never more than 0.2 us faster than these, at ECMNet's shapes; cuDNN
# plus the PReLU pass took 2.6-4.7x as long as the best of these at each of them (it stays a
# candidate for other GPUs and shapes).
CONV_PRELU_CANDIDATES = ((64, 1, 4), (128, 1, 4), (64, 4, 4), ("cudnn",))
CONV_PRELU_DEFAULT = (64, 1, 4)
MAX_CHUNK = 16384          # pixels x K chunk: the gathered input tile stays in registers
FP32_CHUNK = 32


def conv_prelu_triton(x, weight, weight_t, bias, prelu=None, config=None):
    """PReLU(F.conv2d(x, weight, bias, padding=(KH // 2, KW // 2))) for odd KH x KW, stride 1, groups 1
    (prelu None: no activation). weight_t is weight permuted to (KH, KW, CI, CO) and flattened to
    (KH * KW * CI, CO); prelu the per-channel slopes (CO). Output in x's memory format."""
    b, ci, h, w = x.shape
    co, _, kh, kw = weight.shape
    if (tuple(weight.shape) != (co, ci, kh, kw) or kh % 2 == 0 or kw % 2 == 0
            or tuple(weight_t.shape) != (kh * kw * ci, co) or bias.shape != (co,)
            or (prelu is not None and prelu.shape != (co,))):
        raise ValueError(f"conv_prelu: weight {tuple(weight.shape)} / {tuple(weight_t.shape)}, bias "
                         f"{tuple(bias.shape)}, PReLU {None if prelu is None else tuple(prelu.shape)} do not fit "
                         f"input {tuple(x.shape)} (expected odd kernel sizes and weight_t (KH*KW*CI, CO))")
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    bci, bco = max(16, triton.next_power_of_2(ci)), max(16, triton.next_power_of_2(co))
    weight_t = weight_t.contiguous()

    def launch(cfg):
        if cfg[0] == "cudnn":
            y = F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2))
            return (F.prelu(y, prelu) if prelu is not None else y).contiguous(memory_format=fmt)
        bp, chunk, warps = cfg
        bk = min(chunk * bci, triton.next_power_of_2(kh * kw * bci))
        if x.dtype == torch.float32:      # exact fp32 dots run on the FMA units: small chunks fit in registers
            bk = min(bk, FP32_CHUNK)
        if bp * bk > MAX_CHUNK:
            raise ValueError(f"conv_prelu: {bp} pixels x {bk} K values exceed {MAX_CHUNK} per program")
        out = torch.empty((b, co, h, w), device=x.device, dtype=x.dtype, memory_format=fmt)
        _conv_prelu_kernel[(triton.cdiv(w, bp), h, b)](
            x, weight_t, bias, prelu if prelu is not None else bias, out, ci, co, h, w, *x.stride(), *out.stride(),
            KH=kh, KW=kw, HAS_PRELU=prelu is not None, DOT_IEEE=x.dtype == torch.float32, EVEN_I=ci == bci,
            EVEN_O=co == bco, BP=bp, BCI=bci, BK=bk, BCO=bco, num_warps=warps)
        return out

    return launch(config or tuning.pick_for("conv_prelu", x, (co, kh, kw, prelu is not None),
                                                   CONV_PRELU_CANDIDATES, launch, CONV_PRELU_DEFAULT))


# resize launch candidates, timed per shape on first use (ops/tuning.py): row segments x padded
# channels (the 14:21 UTC H100 run: 154 us for ECMNet's logits, Inductor 148 us), or flat output rows
# in blocks of BLOCK values (not yet timed on a GPU)
RESIZE_CANDIDATES = (("rows", 2048, 4), ("flat", 1024, 4), ("flat", 2048, 4), ("flat", 4096, 8))
RESIZE_DEFAULT = ("rows", 2048, 4)


def resize_bilinear_triton(x, size, config=None):
    """F.interpolate(x, size, mode='bilinear', align_corners=False); the output keeps x's memory format."""
    b, c, h, w = x.shape
    oh, ow = size
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((b, c, oh, ow), device=x.device, dtype=x.dtype, memory_format=fmt)

    def launch(cfg):
        kind, elements, warps = cfg
        if kind == "flat":
            _bilinear_flat_kernel[(triton.cdiv(ow * c, elements), oh, b)](
                x, out, h, w, ow, ow * c, h / oh, w / ow, *x.stride(), out.stride(0), out.stride(2),
                C=c, BLOCK=elements, num_warps=warps)
        else:
            bp, bc = row_segment_blocks(c, elements)
            _bilinear_kernel[(triton.cdiv(ow, bp), oh, b)](
                x, out, c, h, w, ow, h / oh, w / ow, *x.stride(), *out.stride(), BP=bp, BC=bc, num_warps=warps)

    if config is None:
        candidates = RESIZE_CANDIDATES if channels_last else (RESIZE_DEFAULT,)   # flat rows need channels_last
        config = tuning.pick_for("resize_bilinear", x, tuple(size), candidates, launch, RESIZE_DEFAULT)
    if config[0] == "flat" and not channels_last:
        raise ValueError("resize_bilinear: the flat-row kernel writes channels_last outputs only")
    launch(config)
    return out


# Opaque operators for torch.compile: Inductor calls the launchers as they are and CUDA-graph
# capture records the launches like any other kernel.
@torch.library.custom_op("ecmnet::depthwise_conv2d", mutates_args=())
def depthwise_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                        dilation: List[int]) -> torch.Tensor:
    return depthwise_conv2d_triton(x, weight, bias, dilation)


@depthwise_conv2d_op.register_fake
def _(x, weight, bias, dilation):
    return torch.empty_like(x)


@torch.library.custom_op("ecmnet::resize_bilinear", mutates_args=())
def resize_bilinear_op(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    return resize_bilinear_triton(x, size)


@resize_bilinear_op.register_fake
def _(x, size):
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty((x.shape[0], x.shape[1], *size), device=x.device, dtype=x.dtype, memory_format=fmt)


@torch.library.custom_op("ecmnet::conv_prelu", mutates_args=())
def conv_prelu_op(x: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor,
                  prelu: Optional[torch.Tensor]) -> torch.Tensor:
    return conv_prelu_triton(x, weight, weight_t, bias, prelu)


@conv_prelu_op.register_fake
def _(x, weight, weight_t, bias, prelu):
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty((x.shape[0], weight.shape[0], *x.shape[2:]), device=x.device, dtype=x.dtype,
                       memory_format=fmt)
