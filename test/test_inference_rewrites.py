"""The engine's inference rewrites compute the trained model's function (CPU), and the
fused dual-direction-attention kernel matches its PyTorch reference (CUDA + Triton)."""
import copy

import pytest
import torch

from ecmnet_core.checkpoint import load_model
from ecmnet_core.dda_gate import dda_gates_reference
from ecmnet_core.inference_rewrites import (
    _ChannelAttentionTaps, _FusedDualDirectionAttention, _is_same_depthwise, _KernelConvPReLU,
    _KernelDepthwiseConv, _KernelResize,
    _ShiftedDepthwiseConv,
    fold_batchnorm, folded_conv_prelu, merge_pointwise_into_conv, optimize_for_inference)
from ecmnet_core.layers import ChannelAttention, DualDirectionAttention


def _perturbed_model(tiny_checkpoint):
    model, _ = load_model(tiny_checkpoint)
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("shifts,kernels", [(False, False), (True, False), (False, True), (True, True)])
def test_optimized_model_is_equivalent(tiny_checkpoint, shifts, kernels):
    model = _perturbed_model(tiny_checkpoint)
    x = torch.randn(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        opt = optimize_for_inference(copy.deepcopy(model), depthwise_as_shifts=shifts, channels_last_kernels=kernels)
        got = opt(x)
    assert fold_batchnorm(copy.deepcopy(model)) >= 40
    assert all(len(m.dw) == 1 for m in opt.msau)                    # 3x3 + 5x5 + 7x7 merged
    assert type(opt.enc1[0].atrous[2]) is _FusedDualDirectionAttention
    assert type(opt.enc1[0].reduce) is torch.nn.Identity              # merged into conv3x1
    assert all(m.att_dw.weight.shape[-2:] == (1, 7) for m in opt.msau)
    # depthwise convs: shifts (<= 9 taps) when compiling; the others through the channels_last kernels if asked
    plain = _KernelDepthwiseConv if kernels else torch.nn.Conv2d
    assert type(opt.enc1[0].local[0][0]) is (_ShiftedDepthwiseConv if shifts else plain)
    assert all(type(m.dw[0]) is plain for m in opt.msau)
    assert (type(opt.resize) is _KernelResize) == kernels
    assert [type(m) is _KernelConvPReLU for m in opt.stem] == [False, kernels, kernels]   # 3x3, stride 1
    blk = opt.enc1[0]                   # EDAB's 3x1 (the reduction merged in) and 1x3 conv + PReLU pairs too
    assert [type(blk.conv3x1) is _KernelConvPReLU, type(blk.conv1x3) is _KernelConvPReLU] == [kernels, kernels]
    assert folded_conv_prelu(blk.conv3x1)[0].in_channels == model.enc1[0].reduce.in_channels
    assert (type(opt.enc2[3].local[2]) is _ChannelAttentionTaps) == shifts
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and type(p).__name__ == "ConvBNAct"
                   for p in opt.modules() for m in p.children())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)     # rounding only (~5e-8 here)


def _same_function(rewritten, original, x):
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), original(x), rtol=1e-5, atol=1e-5)


def test_middle_row_conv_on_one_row_inputs():
    from ecmnet_core.inference_rewrites import middle_row_conv

    torch.manual_seed(2)
    conv = torch.nn.Conv2d(8, 8, 7, padding=3, groups=8, bias=True)
    _same_function(middle_row_conv(conv), conv, torch.randn(2, 8, 1, 23))


def test_merge_pointwise_into_conv_is_the_composition():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 11, 13)
    for kernel, padding, dilation, stride in [((3, 1), (1, 0), 1, 1), ((1, 3), (0, 2), (1, 2), 1),
                                              ((3, 3), (1, 1), 1, 2)]:
        pw = torch.nn.Conv2d(6, 4, 1, bias=False)
        conv = torch.nn.Conv2d(4, 5, kernel, stride, padding, dilation, bias=True)
        _same_function(merge_pointwise_into_conv(pw, conv), lambda t: conv(pw(t)), x)
    assert merge_pointwise_into_conv(torch.nn.Conv2d(6, 4, 1, bias=True), torch.nn.Conv2d(4, 4, 3)) is None
    assert merge_pointwise_into_conv(torch.nn.Conv2d(6, 4, 1), torch.nn.Conv2d(4, 4, 3, groups=4)) is None
    assert merge_pointwise_into_conv(torch.nn.Conv2d(6, 4, 3, bias=False), torch.nn.Conv2d(4, 4, 3)) is None


@pytest.mark.parametrize("channels", [16, 32, 64])
def test_fused_dual_direction_attention_is_the_module(channels):
    torch.manual_seed(channels)
    dda = DualDirectionAttention(channels).eval()
    _same_function(_FusedDualDirectionAttention(dda), dda, torch.randn(2, channels, 19, 37))


def test_channel_attention_taps_is_the_module():
    torch.manual_seed(1)
    ca = ChannelAttention(24)
    ca.conv.weight.data.normal_()
    _same_function(_ChannelAttentionTaps(ca), ca, torch.randn(2, 24, 9, 7))


def test_depthwise_as_shifts_is_the_same_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 13, 17)
    for kernel, dilation in [((3, 1), (4, 1)), ((1, 3), (1, 8)), ((7, 7), (1, 1)), ((3, 3), (2, 2))]:
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        conv = torch.nn.Conv2d(6, 6, kernel, padding=padding, dilation=dilation, groups=6, bias=True)
        assert _is_same_depthwise(conv, max_taps=49)
        _same_function(_ShiftedDepthwiseConv(conv), conv, x)
    assert _is_same_depthwise(torch.nn.Conv2d(6, 6, 3, padding=1, groups=6))
    assert not _is_same_depthwise(torch.nn.Conv2d(6, 6, 7, padding=3, groups=6))    # 49 taps: cuDNN
    assert not _is_same_depthwise(torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6))
    assert not _is_same_depthwise(torch.nn.Conv2d(6, 12, 3, padding=1, groups=6))


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
    from ecmnet_core.dda_gate_triton import dda_gates_triton

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
    from ecmnet_core.dda_gate_triton import dda_gates_triton

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
from ecmnet_core import dda_gate_triton as T
from ecmnet_core.dda_gate import dda_gates_reference
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
