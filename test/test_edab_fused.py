"""Fused EDAB middle (edab_fused): the kernels compute the block's own modules (on CUDA; and on
CPU through Triton's interpreter where Triton is installed); elsewhere the block runs its modules."""
import copy
import importlib

import pytest
import torch

from ecmnet_core.edab import EDAB
from ecmnet_core.edab_fused import PACKED_ROWS, FusedEDAB, pack_edab
from ecmnet_core.inference_rewrites import optimize_for_inference

# (channels, dilation, H, W, shifts): ECMNet's widths and rates, odd sizes smaller than the rate's reach
CASES = [(32, 2, 13, 37, False), (64, 8, 11, 20, True), (128, 4, 9, 17, False), (20, 1, 6, 7, True)]


def fused_block(channels, dilation, shifts, seed=0):
    """A BN-folded, rewritten EDAB with random BN statistics and PReLU slopes, and its fused form."""
    torch.manual_seed(seed)
    block = EDAB(channels, dilation).eval()
    for m in block.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.5)
    wrapper = torch.nn.Sequential(block).eval()
    optimize_for_inference(wrapper, depthwise_as_shifts=shifts, fused_edab=True)
    assert type(wrapper[0]) is FusedEDAB
    return block, wrapper[0]


def test_every_ecmnet_block_is_fused_and_cpu_runs_the_modules(tiny_checkpoint):
    from ecmnet_core.checkpoint import load_model

    model, _ = load_model(tiny_checkpoint)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        opt = optimize_for_inference(copy.deepcopy(model), fused_edab=True)
        got = opt(x)
    assert sum(type(m) is FusedEDAB for m in opt.modules()) == 21
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_pack_edab_rows_and_rejects_unfolded_blocks():
    block, fused = fused_block(16, 2, False)
    assert fused.packed.shape == (len(PACKED_ROWS), 8) and fused.dilation == 2
    post = block.post[0]
    scale = post.weight / torch.sqrt(post.running_var + post.eps)
    torch.testing.assert_close(fused.packed[PACKED_ROWS.index("post_scale")], scale.detach())
    torch.testing.assert_close(fused.packed[PACKED_ROWS.index("atrous_1x3_right")],
                               block.atrous[1][0].weight.detach()[:, 0, 0, 2])
    assert pack_edab(EDAB(16, 2).eval()) is None          # BN not folded, DDA not rewritten: modules stay


def _run_fused(fused, x, pool, combine):
    with torch.no_grad():
        return fused.fused_forward(x, pool, combine)


@pytest.mark.skipif(not (torch.cuda.is_available() and importlib.util.find_spec("triton")),
                    reason="needs CUDA and Triton")
# fp16: the convolutions around the fused part run in fp16 too (cuDNN); compared with fp32 modules
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 5e-2)])
@pytest.mark.parametrize("case", CASES + [(64, 2, 128, 256, True)])
def test_fused_kernels_match_the_block_on_cuda(case, dtype, tol):
    from ecmnet_core.edab_fused_triton import edab_combine_op, edab_pool_op

    c, d, h, w, shifts = case
    block, fused = fused_block(c, d, shifts)
    reference = copy.deepcopy(block).cuda()                  # fp32 modules
    fused = fused.cuda().to(dtype)
    x = torch.randn(2, c, h, w, device="cuda").to(dtype).contiguous(memory_format=torch.channels_last)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False                  # fp32 convs in fp32 on both sides
    try:
        with torch.no_grad():
            ref = reference(x.float())
            dispatched = fused(x)                            # the forward the engine calls
            got = _run_fused(fused, x, edab_pool_op, edab_combine_op)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), ref, rtol=tol, atol=tol)
    # fp32 atomics: the means' summation order varies between runs, so not bit-equal
    torch.testing.assert_close(dispatched, got, rtol=tol, atol=tol)


@pytest.mark.skipif(not (torch.cuda.is_available() and importlib.util.find_spec("triton")),
                    reason="needs CUDA and Triton")
def test_fused_block_compiles_and_replays_in_a_cuda_graph():
    block, fused = fused_block(32, 4, True)
    fused = fused.cuda().half()
    x = torch.randn(1, 32, 64, 128, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        eager = fused(x)
        compiled = torch.compile(fused, dynamic=False)
        compiled(x)
        static = x.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = compiled(static)
        graph.replay()
    torch.testing.assert_close(out, eager, rtol=5e-2, atol=5e-2)     # fp16, Inductor fuses and rounds once


_INTERPRETER_CHECK = r"""
import torch
from ecmnet_core import edab_fused_triton as T
from test_edab_fused import CASES, fused_block, _run_fused
for c, d, h, w, shifts in CASES:
    block, fused = fused_block(c, d, shifts)
    x = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = block(x)
    for rows in (None, 3):      # one row per band, and bands of 3 (a partial last band)
        pool = lambda t, p, dil: T.edab_pool_triton(t, p, dil, rows_per_band=rows)
        torch.testing.assert_close(_run_fused(fused, x, pool, T.edab_combine_triton), ref, rtol=1e-4, atol=1e-4)
t = torch.randn(1, 8, 5, 9).contiguous(memory_format=torch.channels_last)    # EDAB(16) works on 8 channels
_, fused = fused_block(16, 2, False)
torch.library.opcheck(T.edab_pool_op, (t, fused.packed, 2))
pooled, ca = T.edab_pool_op(t, fused.packed, 2)
torch.library.opcheck(T.edab_combine_op, (t, fused.packed, pooled.to(t.dtype), ca, fused.ca_weight, 2),
                      test_utils=("test_schema", "test_faketensor"))
print("ok")
"""


def test_fused_kernels_under_the_triton_interpreter(triton_interpreter):
    triton_interpreter(_INTERPRETER_CHECK, timeout=900)
