"""The engine's inference rewrites compute the trained model's function (CPU); the DDA kernel's own
tests are in test/core/ops/test_dda.py."""
import copy

import pytest
import torch

from ecmnet_core.inference.modules import (
    _ChannelAttentionTaps, _FusedDualDirectionAttention, _KernelConvPReLU, _KernelDepthwiseConv, _KernelResize,
    _ShiftedDepthwiseConv, folded_conv_prelu)
from ecmnet_core.inference.rewrites import (_is_same_depthwise, fold_batchnorm, merge_pointwise_into_conv,
                                            optimize_for_inference)
from ecmnet_core.model.layers import ChannelAttention, DualDirectionAttention
from ecmnet_core.runtime.checkpoint import load_model


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
    from ecmnet_core.inference.rewrites import middle_row_conv

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
