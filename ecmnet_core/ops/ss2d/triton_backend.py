"""`cuda` SS2D backend: the project's own fused Triton kernel (forward and backward; kernels in triton.py).

Registered under the name `cuda` (a historical name, kept: checkpoints and configs store the backend
name as `ss2d_backend`, and `auto` picks it first on a GPU); loading it raises BackendUnavailable with the reason
when there is no CUDA device or Triton is missing. TRITON_INTERPRET=1 lets the same
kernels run (slowly) on CPU tensors; that is how forward and backward were checked against
the reference during development, and the test suite runs both forward kernels that way at
small shapes where Triton is installed (with Triton 3.9 the interpreter works with numpy 2.4).
On an H100 (docs/benchmarks/ss2d.md) outputs and all eight gradients match the sequential
reference in fp32/fp16/bf16 (test/core/ops/test_ss2d_backends.py), and `auto` picks it first on a GPU.
"""
from __future__ import annotations

import os

import torch

from . import BackendUnavailable, register_backend
from .reference import _check


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class _SS2DScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
        from . import triton as ts

        w = dt_weight.detach().float().contiguous()
        bias = dt_bias.detach().float().contiguous()
        a = A.detach().float().contiguous()
        ds = Ds.detach().float().contiguous()
        save = any(ctx.needs_input_grad)
        out, states = ts.scan_forward(x, dt_low, Bs, Cs, w, bias, a, ds, save_states=save)
        if save:
            ctx.save_for_backward(x, dt_low, Bs, Cs, w, bias, a, ds, states)
            ctx.dtypes = (dt_low.dtype, Bs.dtype, Cs.dtype, dt_weight.dtype, dt_bias.dtype, A.dtype, Ds.dtype)
        return out

    @staticmethod
    def backward(ctx, dy):
        from . import triton as ts

        x, dt_low, Bs, Cs, w, bias, a, ds, states = ctx.saved_tensors
        grads = ts.scan_backward(dy, x, dt_low, Bs, Cs, w, bias, a, ds, states)
        dx, rest = grads[0], grads[1:]
        return (dx,) + tuple(g.to(dt) for g, dt in zip(rest, ctx.dtypes))


def ss2d_scan_cuda(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds):
    """Same function as reference.ss2d_scan_sequential, computed by the fused Triton kernel."""
    _check(x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds)
    tensors = (x, dt_low, Bs, Cs, dt_weight, dt_bias, A, Ds)
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"SS2D backend 'cuda' needs all inputs on one device, got {sorted(map(str, devices))}")
    if x.device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"SS2D backend 'cuda' needs CUDA tensors, got {x.device}; use backend 'reference' on CPU"
        )
    bad = [t.dtype for t in (x, dt_low, Bs, Cs) if t.dtype not in (torch.float32, torch.float16, torch.bfloat16)]
    if bad:
        raise ValueError(f"SS2D backend 'cuda' supports float32/float16/bfloat16 inputs, got {bad[0]}")
    return _SS2DScanFn.apply(*tensors)


def _load():
    if not torch.cuda.is_available() and not _interpreting():
        raise BackendUnavailable(
            f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)"
        )
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"Triton is not installed ({exc}); pip install triton") from exc
    try:
        from . import triton as _kernels  # noqa: F401 (compiles nothing yet; fails on a too-old Triton)
    except Exception as exc:  # a Triton too old for the kernels' language features
        raise BackendUnavailable(f"Triton kernels failed to load: {exc}") from exc
    return ss2d_scan_cuda


register_backend("cuda", _load, "fused Triton kernel (cross-scan + selective scan + merge), fwd+bwd")
