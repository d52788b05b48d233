"""The fused dual-direction-attention kernel matches its PyTorch reference (CUDA + Triton, and
Triton's CPU interpreter)."""
import pytest
import torch

from ecmnet_core.ops.dda.reference import dda_gates_reference


def _has_triton():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_triton(), reason="needs CUDA and Triton")
# fp32: exact fp32 dots (sums in another order); fp16: fp16 tensor cores; bf16: TF32, output rounded to bf16
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 1e-2), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("c,inner,h,w", [(16, 4, 64, 128), (32, 8, 90, 120), (64, 16, 128, 256),
                                         (20, 5, 7, 300), (64, 16, 1, 65)])
def test_triton_dda_gates_match_the_reference(dtype, tol, c, inner, h, w):
    from ecmnet_core.ops.dda.triton import dda_gates_triton

    torch.manual_seed(c + h)
    pooled = torch.randn(2, c, h + w, device="cuda")
    w_qk, w_v = torch.randn(2 * inner, c, device="cuda") * 0.3, torch.randn(c, c, device="cuda") * 0.3
    scale = inner ** -0.5
    flags = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref = dda_gates_reference(pooled.to(dtype).double(), w_qk.to(dtype).double(), w_v.to(dtype).double(),
                                  inner, h, scale)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flags
    got = dda_gates_triton(pooled.to(dtype), w_qk.to(dtype), w_v.to(dtype), inner, h, scale)
    assert got.dtype == dtype and got.shape == pooled.shape
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


@pytest.mark.skipif(not _has_triton(), reason="needs CUDA and Triton")
def test_triton_dda_gates_take_fp32_means_with_fp16_weights():
    """The fused EDAB path: fp32 means (atomic sums), fp16 weights -> fp16 dots, fp32 gates, no cast kernel."""
    from ecmnet_core.ops.dda.triton import dda_gates_triton

    torch.manual_seed(3)
    c, inner, h, w = 64, 16, 128, 256
    pooled = torch.randn(1, c, h + w, device="cuda")
    w_qk, w_v = (torch.randn(2 * inner, c, device="cuda") * 0.3).half(), (torch.randn(c, c, device="cuda") * 0.3).half()
    got = dda_gates_triton(pooled, w_qk, w_v, inner, h, inner ** -0.5)
    ref = dda_gates_reference(pooled.half().double(), w_qk.double(), w_v.double(), inner, h, inner ** -0.5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-2, atol=1e-2)


_DDA_INTERPRETER_CHECK = r"""
import torch
from ecmnet_core.ops.dda import triton as T
from ecmnet_core.ops.dda import dda_gates_reference
for c, inner, h, w in ((16, 4, 9, 21), (20, 5, 7, 140)):       # a non-power-of-two width; two key blocks
    torch.manual_seed(c)
    pooled = torch.randn(2, c, h + w)
    w_qk, w_v = torch.randn(2 * inner, c) * 0.3, torch.randn(c, c) * 0.3
    scale = inner ** -0.5
    ref = dda_gates_reference(pooled.double(), w_qk.double(), w_v.double(), inner, h, scale)
    torch.testing.assert_close(T.dda_gates_triton(pooled, w_qk, w_v, inner, h, scale).double(), ref,
                               rtol=1e-4, atol=1e-4)
    got = T.dda_gates_triton(pooled, w_qk.half(), w_v.half(), inner, h, scale)      # fp32 means, fp16 weights
    ref = dda_gates_reference(pooled.half().double(), w_qk.half().double(), w_v.half().double(), inner, h, scale)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-2, atol=1e-2)
print("ok")
"""


def test_dda_kernel_under_the_triton_interpreter(triton_interpreter):
    triton_interpreter(_DDA_INTERPRETER_CHECK)
