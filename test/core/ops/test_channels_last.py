"""ops.channels_last: the Triton depthwise-conv, bilinear-resize and conv + PReLU kernels compute
PyTorch's operators (on CUDA; and on CPU through Triton's interpreter where Triton is installed), and the
dispatchers fall back to those operators elsewhere."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from ecmnet_core.ops.channels_last import conv_prelu, depthwise_conv2d, resize_bilinear

# (channels, height, width, kernel, dilation): ECMNet's MSAU 7x7, EDAB 3x1 / dilated 1x3, FFN 3x3,
# plus odd sizes and channel counts that are not powers of two
DEPTHWISE_CASES = [(32, 37, 70, (7, 7), 1), (24, 19, 33, (3, 1), 4), (16, 21, 40, (1, 3), 8),
                   (128, 9, 17, (3, 3), 1), (5, 6, 7, (5, 5), 2), (64, 1, 45, (1, 7), 1)]
# (channels, in h, in w, out h, out w): 2x up (the logits), non-integer ratios, down, identity
RESIZE_CASES = [(19, 23, 31, 46, 62), (3, 7, 5, 15, 11), (19, 10, 12, 5, 7), (150, 9, 9, 9, 9)]


# (in channels, out channels, H, W, kernel): ECMNet's stem (32 -> 32, 3x3) and EDAB's merged 3x1
# (2C -> C) and 1x3 (C -> C), channel counts that are not powers of two
CONV_CASES = [(32, 32, 9, 40, (3, 3)), (3, 20, 7, 5, (3, 3)), (24, 64, 1, 33, (3, 3)), (64, 32, 6, 19, (3, 1)),
              (32, 32, 5, 23, (1, 3)), (40, 20, 4, 9, (3, 1)), (20, 20, 3, 18, (1, 3))]


def _conv_inputs(ci, co, h, w, kernel, dtype, device):
    g = torch.Generator().manual_seed(ci + co + h)
    kh, kw = kernel
    x = torch.randn(2, ci, h, w, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(co, ci, kh, kw, generator=g) / ((kh * kw * ci) ** 0.5)).to(device, dtype)
    bias = torch.randn(co, generator=g).to(device, dtype)
    prelu = (torch.rand(co, generator=g) - 0.5).to(device, dtype)
    weight_t = weight.permute(2, 3, 1, 0).reshape(kh * kw * ci, co).contiguous()
    return x, weight, weight_t, bias, prelu


def _conv_prelu_reference(x, weight, bias, prelu):
    kh, kw = weight.shape[-2:]
    y = F.conv2d(x.double(), weight.double(), bias.double(), 1, (kh // 2, kw // 2))
    return F.prelu(y, prelu.double()) if prelu is not None else y


def _depthwise_inputs(c, h, w, kernel, d, dtype, device, bias=True):
    g = torch.Generator().manual_seed(c + h)
    x = torch.randn(2, c, h, w, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, 1, *kernel, generator=g).to(device, dtype)
    b = torch.randn(c, generator=g).to(device, dtype) if bias else None
    dilation = (d if kernel[0] > 1 else 1, d if kernel[1] > 1 else 1)
    return x, weight, b, dilation


def _conv_reference(x, weight, b, dilation):
    kh, kw = weight.shape[-2:]
    return F.conv2d(x.double(), weight.double(), None if b is None else b.double(), 1,
                    (dilation[0] * (kh // 2), dilation[1] * (kw // 2)), dilation, x.shape[1])


def _resize_reference(x, size):
    return F.interpolate(x.double(), size=size, mode="bilinear", align_corners=False)


def test_dispatchers_are_the_pytorch_operators_on_cpu():
    x, weight, b, dilation = _depthwise_inputs(6, 13, 17, (3, 1), 4, torch.float32, "cpu")
    torch.testing.assert_close(depthwise_conv2d(x, weight, b, dilation),
                               _conv_reference(x, weight, b, dilation).float())
    torch.testing.assert_close(resize_bilinear(x, (20, 9)), _resize_reference(x, (20, 9)).float())
    for kernel in ((3, 3), (1, 3)):
        x, weight, weight_t, bias, prelu = _conv_inputs(5, 7, 6, 9, kernel, torch.float32, "cpu")
        torch.testing.assert_close(conv_prelu(x, weight, weight_t, bias, prelu),
                                   _conv_prelu_reference(x, weight, bias, prelu).float())
        torch.testing.assert_close(conv_prelu(x, weight, weight_t, bias),
                                   _conv_prelu_reference(x, weight, bias, None).float())


def _has_cuda_triton():
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


@pytest.mark.skipif(not _has_cuda_triton(), reason="needs CUDA and Triton")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_triton_depthwise_matches_conv2d(dtype, tol, case):
    from ecmnet_core.ops.channels_last.triton import depthwise_conv2d_triton

    x, weight, b, dilation = _depthwise_inputs(*case, dtype, "cuda", bias=case[0] % 2 == 0)
    got = depthwise_conv2d_triton(x, weight, b, dilation)
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), _conv_reference(x, weight, b, dilation), rtol=tol, atol=tol)


@pytest.mark.skipif(not _has_cuda_triton(), reason="needs CUDA and Triton")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("case", RESIZE_CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_triton_resize_matches_interpolate(dtype, tol, case, channels_last):
    from ecmnet_core.ops.channels_last.triton import RESIZE_CANDIDATES, RESIZE_DEFAULT, resize_bilinear_triton

    c, h, w, oh, ow = case
    x = torch.randn(1, c, h, w, device="cuda", dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for config in (None,) + (RESIZE_CANDIDATES if channels_last else (RESIZE_DEFAULT,)):   # None: tuned
        got = resize_bilinear_triton(x, (oh, ow), config)
        assert got.shape == (1, c, oh, ow) and got.is_contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(got.double(), _resize_reference(x, (oh, ow)), rtol=tol, atol=tol)


@pytest.mark.skipif(not _has_cuda_triton(), reason="needs CUDA and Triton")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
@pytest.mark.parametrize("case", CONV_CASES)
def test_triton_conv_prelu_matches_conv2d(dtype, tol, case, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)     # the cuDNN candidate: fp32 in fp32
    from ecmnet_core.ops.channels_last.triton import CONV_PRELU_DEFAULT, conv_prelu_triton

    x, weight, weight_t, bias, prelu = _conv_inputs(*case, dtype, "cuda")
    for config in (CONV_PRELU_DEFAULT, ("cudnn",)):
        got = conv_prelu_triton(x, weight, weight_t, bias, prelu, config)
        assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.double(), _conv_prelu_reference(x, weight, bias, prelu), rtol=tol, atol=tol)


@pytest.mark.skipif(not _has_cuda_triton(), reason="needs CUDA and Triton")
@pytest.mark.parametrize("case", [(32, 32, 64, 512, (3, 3)), (128, 64, 32, 256, (3, 1)), (64, 64, 16, 128, (1, 3))])
def test_every_conv_prelu_launch_configuration(case):
    """ECMNet's conv shapes in fp16: each candidate the tuner may pick, with and without the PReLU."""
    from ecmnet_core.ops.channels_last.triton import CONV_PRELU_CANDIDATES, conv_prelu_triton

    x, weight, weight_t, bias, prelu = _conv_inputs(*case, torch.float16, "cuda")
    for config in (None,) + CONV_PRELU_CANDIDATES:           # None: the tuned choice
        for slopes in (prelu, None):
            try:
                got = conv_prelu_triton(x, weight, weight_t, bias, slopes, config)
            except ValueError as exc:                         # a program too large for this shape
                assert "exceed" in str(exc) and config is not None
                continue
            torch.testing.assert_close(got.double(), _conv_prelu_reference(x, weight, bias, slopes), rtol=2e-2,
                                       atol=2e-2)


@pytest.mark.skipif(not _has_cuda_triton(), reason="needs CUDA and Triton")
def test_ops_inside_torch_compile_and_cuda_graph():
    """Opaque custom ops: compiled, then replayed from a CUDA graph, same values as eager."""
    x, weight, b, dilation = _depthwise_inputs(32, 40, 64, (7, 7), 1, torch.float16, "cuda")

    def f(t):
        return resize_bilinear(depthwise_conv2d(t, weight, b, dilation) * 2 + 1, (80, 128))

    eager = f(x)
    compiled = torch.compile(f, dynamic=False)
    compiled(x)
    graph = torch.cuda.CUDAGraph()
    static = x.clone()
    with torch.cuda.graph(graph):
        out = compiled(static)
    static.copy_(x * 0.5)
    graph.replay()
    # Inductor computes `* 2 + 1` in fp32 and rounds once; eager rounds each op to fp16
    torch.testing.assert_close(out, f(x * 0.5), rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(compiled(x), eager, rtol=2e-2, atol=5e-2)


_INTERPRETER_CHECK = r"""
import torch, torch.nn.functional as F
from ecmnet_core.ops.channels_last import triton as T
from test_channels_last import (CONV_CASES, DEPTHWISE_CASES, RESIZE_CASES, _conv_inputs, _conv_prelu_reference,
                                    _conv_reference, _depthwise_inputs, _resize_reference)
for case in DEPTHWISE_CASES[:3] + DEPTHWISE_CASES[4:]:
    x, w, b, d = _depthwise_inputs(*case, torch.float32, "cpu")
    for config in (None, T.DEPTHWISE_CANDIDATES[-1]):        # the default; the largest programs
        torch.testing.assert_close(T.depthwise_conv2d_triton(x, w, b, d, config).double(),
                                   _conv_reference(x, w, b, d), rtol=1e-4, atol=1e-4)
for c, h, w, oh, ow in RESIZE_CASES:
    x = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
    for config in T.RESIZE_CANDIDATES[:2] + (("flat", 64, 4),):    # row segments; flat rows, several blocks per row
        torch.testing.assert_close(T.resize_bilinear_triton(x, (oh, ow), config).double(),
                                   _resize_reference(x, (oh, ow)), rtol=1e-5, atol=1e-5)
for case in CONV_CASES:
    x, weight, weight_t, bias, prelu = _conv_inputs(*case, torch.float32, "cpu")
    for config in (None, (16, 4, 1), (32, 2, 4)):   # the default (one tap per dot); 4 taps per dot; 2 taps
        for slopes in (prelu, None):
            torch.testing.assert_close(T.conv_prelu_triton(x, weight, weight_t, bias, slopes, config).double(),
                                       _conv_prelu_reference(x, weight, bias, slopes), rtol=1e-4, atol=1e-4)
torch.library.opcheck(T.conv_prelu_op, (x, weight, weight_t, bias, prelu))
torch.library.opcheck(T.conv_prelu_op, (x, weight, weight_t, bias, None))
# the registered operators: schema, fake (meta) implementation and real one agree (shapes, strides)
x, w, b, d = _depthwise_inputs(32, 9, 20, (7, 7), 1, torch.float32, "cpu")
torch.library.opcheck(T.depthwise_conv2d_op, (x, w, b, list(d)))
torch.library.opcheck(T.depthwise_conv2d_op, (x, w, None, [1, 1]))
for fmt in (torch.channels_last, torch.contiguous_format):
    torch.library.opcheck(T.resize_bilinear_op, (torch.randn(1, 19, 6, 9).contiguous(memory_format=fmt), [12, 18]))
print("ok")
"""


def test_kernels_under_the_triton_interpreter(triton_interpreter):
    """The same kernels run by Triton's interpreter on CPU tensors."""
    triton_interpreter(_INTERPRETER_CHECK)
