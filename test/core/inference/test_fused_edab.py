"""Fused EDAB stages (edab_fused): the kernels compute the stage's own modules (on CUDA; and on CPU
through Triton's interpreter where Triton is installed); elsewhere the stage runs its modules."""
import copy
import importlib

import pytest
import torch

from ecmnet_core.inference import optimize_for_inference
from ecmnet_core.inference.fused_edab import FusedEDABStage, is_pairs, pack_edab, pack_stage
from ecmnet_core.inference.modules import _KernelConvPReLU
from ecmnet_core.model.edab import EDAB, edab_stage
from ecmnet_core.model.layers import DualDirectionAttention
from ecmnet_core.ops import tuning
from ecmnet_core.ops.edab import PACKED_ROWS

# (block width, dilations of the stage's blocks, H, W, shifts): ECMNet's widths and rates (its
# decoder's 32-wide blocks too), odd sizes smaller than the largest rate's reach
CASES = [(64, (2, 2), 13, 37, False), (128, (1, 8), 11, 20, True), (32, (4,), 9, 17, False),
         (40, (1, 2, 1), 6, 7, True)]


def _perturb(module, seed):
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.5)
        elif isinstance(m, DualDirectionAttention):
            # peaked attention, so that the gates differ from row to row and column to column (at the
            # initial weights they are nearly uniform and a wrong row or column index would pass)
            m.qk.weight.data.normal_(0.0, 3.0)


def stage_input(batch, width, h, w, device="cpu"):
    """Noise plus patterns along rows and columns that differ per channel: the pooled descriptors,
    and so the attention gates, then differ from row to row and column to column."""
    torch.manual_seed(h * w)
    phase = torch.rand(width, 1, 1, device=device) * 6.3
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    pattern = 2 * torch.sin(0.9 * rows + phase) + 2 * torch.cos(0.7 * cols + 2 * phase)
    x = torch.randn(batch, width, h, w, device=device) + pattern
    return x.contiguous(memory_format=torch.channels_last)


def fused_stage(width, dilations, shifts, seed=0, conv_kernels=False):
    """A BN-folded, rewritten EDAB stage with random BN statistics and PReLU slopes, and its fused form
    (it shares the stage's modules); conv_kernels: its 3x1 and 1x3 convs through conv_prelu."""
    torch.manual_seed(seed)
    stage = edab_stage(width, dilations).eval()
    _perturb(stage, seed)
    wrapper = torch.nn.Sequential(stage).eval()
    optimize_for_inference(wrapper, depthwise_as_shifts=shifts, channels_last_kernels=conv_kernels, fused_edab=True)
    assert type(wrapper[0]) is FusedEDABStage
    return stage, wrapper[0]


@pytest.mark.parametrize("conv_kernels", [False, True])
def test_every_ecmnet_stage_is_fused_and_cpu_runs_the_modules(tiny_checkpoint, conv_kernels):
    from ecmnet_core.runtime.checkpoint import load_model

    model, _ = load_model(tiny_checkpoint)
    _perturb(model, 1)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        opt = optimize_for_inference(copy.deepcopy(model), channels_last_kernels=conv_kernels, fused_edab=True)
        got = opt(x)
    stages = [m for m in opt.modules() if type(m) is FusedEDABStage]
    assert len(stages) == 6 and sum(len(s.stage) for s in stages) == 21
    assert all((type(b.conv1x3) is _KernelConvPReLU) == conv_kernels for s in stages for b in s.stage)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_packing():
    stage, fused = fused_stage(16, (2, 4), False)
    block, params = stage[1], fused.kernels[1]
    assert params.packed.shape == (len(PACKED_ROWS), 8) and params.dilation == 4
    post = block.post[0]
    torch.testing.assert_close(params.packed[PACKED_ROWS.index("post_scale")],
                               (post.weight / torch.sqrt(post.running_var + post.eps)).detach())
    torch.testing.assert_close(params.packed[PACKED_ROWS.index("atrous_1x3_right")],
                               block.atrous[1][0].weight.detach()[:, 0, 0, 2])
    # the shuffle as a gather: shuffle(v)[:, o] == v[:, src[o]]; the expand weight's rows in that order
    v = torch.randn(2, 16, 3, 5)
    torch.testing.assert_close(block.shuffle(v), v[:, params.shuffle_src.long()])
    torch.testing.assert_close(params.expand_t.t(), block.expand.weight[params.shuffle_src.long(), :, 0, 0])
    assert params.pairs and is_pairs(torch.tensor([0, 2, 1, 3])) and not is_pairs(params.shuffle_src.flip(0))
    assert pack_edab(EDAB(16, 2).eval()) is None          # BN not folded, DDA not rewritten: modules stay
    assert pack_stage(torch.nn.Sequential(torch.nn.Identity())) is None


def _run_fused(fused, x, vertical, pool, finish):
    with torch.no_grad():
        return fused.fused_forward(x, vertical, pool, finish)


def _cuda_triton():
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


@pytest.fixture(autouse=True)
def _default_launch_configurations(monkeypatch):
    """The value tests run the default launch configuration: timing every candidate at every test
    shape would only make them slow (test_tuned_launch_configurations_give_the_same_values)."""
    monkeypatch.setattr(tuning, "ENABLED", False)


@pytest.mark.skipif(not _cuda_triton(), reason="needs CUDA and Triton")
def test_tuned_launch_configurations_give_the_same_values(monkeypatch):
    monkeypatch.setattr(tuning, "ENABLED", True)
    monkeypatch.setattr(tuning, "chosen", {})
    _, fused = fused_stage(64, (2, 4), True)
    fused = fused.cuda().half()
    x = stage_input(1, 64, 40, 72, "cuda").half()
    with torch.no_grad():
        tuned = fused(x)
        assert {key[0] for key in tuning.chosen} == {"edab_vertical", "edab_pool", "edab_finish"}
        monkeypatch.setattr(tuning, "ENABLED", False)
        default = fused(x)
    torch.testing.assert_close(tuned, default, rtol=1e-2, atol=1e-2)     # fp16; atomics' order differs


@pytest.mark.skipif(not _cuda_triton(), reason="needs CUDA and Triton")
# fp16: the convolutions around the fused part run in fp16 too (cuDNN); compared with fp32 modules
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 5e-2)])
@pytest.mark.parametrize("case", CASES + [(128, (1, 2, 4, 8), 128, 256, True)])
@pytest.mark.parametrize("conv_kernels", [False, True])
def test_fused_kernels_match_the_stage_on_cuda(case, dtype, tol, conv_kernels):
    from ecmnet_core.ops.edab.triton import edab_finish_op, edab_pool_op, edab_vertical_op

    width, dilations, h, w, shifts = case
    stage, fused = fused_stage(width, dilations, shifts, conv_kernels=conv_kernels)
    reference = copy.deepcopy(stage).cuda()                  # fp32 modules
    fused = fused.cuda().to(dtype)
    x = stage_input(2, width, h, w, "cuda").to(dtype)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False                  # fp32 convs in fp32 on both sides
    try:
        with torch.no_grad():
            ref = reference(x.float())
            dispatched = fused(x)                            # the forward the engine calls
            got = _run_fused(fused, x, edab_vertical_op, edab_pool_op, edab_finish_op)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.float(), ref, rtol=tol, atol=tol)
    # fp32 atomics: the means' summation order varies between runs, so not bit-equal
    torch.testing.assert_close(dispatched, got, rtol=tol, atol=tol)


@pytest.mark.skipif(not _cuda_triton(), reason="needs CUDA and Triton")
def test_fused_stage_compiles_and_replays_in_a_cuda_graph():
    _, fused = fused_stage(64, (2, 4), True, conv_kernels=True)         # as the compiled engine runs it
    fused = fused.cuda().half()
    x = stage_input(1, 64, 64, 128, "cuda").half()
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
from ecmnet_core.ops.edab import triton as T
from ecmnet_core.ops.edab import split_means
from test_fused_edab import CASES, fused_stage, stage_input, _run_fused
for i, (width, dilations, h, w, shifts) in enumerate(CASES):
    stage, fused = fused_stage(width, dilations, shifts, conv_kernels=i % 2 == 1)   # 1x3 conv without its PReLU
    x = stage_input(2, width, h, w)
    with torch.no_grad():
        ref = stage(x)
    for config in (None, (1024, 4, 3), (512, 1, 4)):    # default; bands of 3 rows (a partial last band); 16-pixel tiles
        vertical = lambda t, p, dil: T.edab_vertical_triton(t, p, dil, config=config)
        pool = lambda v, p, dil: T.edab_pool_triton(v, p, dil, config=config)
        finish = lambda *a: T.edab_finish_triton(*a, config=config)
        torch.testing.assert_close(_run_fused(fused, x, vertical, pool, finish), ref, rtol=1e-4, atol=1e-4)
# each kernel against its formula on the block's modules, with random gates and channel means for
# edab_finish, so that every row, column and channel index of them matters
stage, fused = fused_stage(64, (2, 4), False)
blk, k = stage[0], fused.kernels[0]
h, w = 7, 11
x = stage_input(2, 64, h, w)
with torch.no_grad():
    t = blk.conv1x3[0](blk.conv3x1(blk.reduce(blk.pre(x))))
    y = blk.conv1x3[-1](t)                 # BN folded: (conv, Identity, PReLU)
    lo, at = blk.local[1](blk.local[0](y)), blk.atrous[1](blk.atrous[0](y))
    gates, ca = torch.randn(2, 32, h + w), torch.randn(2, 32, 3)[..., 1]    # ca strided, as split_means gives it
    kc = k.ca_weight.numel()
    gate_ca = torch.sigmoid(torch.nn.functional.conv1d(ca[:, None], k.ca_weight.view(1, 1, kc), padding=kc // 2))
    z = y + lo * gate_ca[:, 0, :, None, None] + at * torch.sigmoid(gates[:, :, :h, None] + gates[:, :, None, h:])
    ref = blk.shuffle(blk.expand(blk.post(z)) + x)
    for config in (None, (1024, 4, 3)):
        v = T.edab_vertical_triton(t, k.packed, k.dilation, config=config)
        torch.testing.assert_close(v, torch.cat([blk.local[0](y), blk.atrous[0](y)], 1), rtol=1e-5, atol=1e-5)
        pooled, means = split_means(T.edab_pool_triton(v, k.packed, k.dilation, config=config))
        torch.testing.assert_close(pooled, torch.cat([at.mean(3), at.mean(2)], 2), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(means, lo.mean((2, 3)), rtol=1e-5, atol=1e-5)
        assert k.pairs                      # EDAB's shuffle: the contiguous residual load, and the gathers
        for pairs in (True, False):
            got, got_p = T.edab_finish_triton(t, v, x, k.packed, gates, ca, k.ca_weight, k.expand_t,
                                              k.shuffle_src, fused.kernels[1].pre, k.dilation, pairs, config=config)
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got_p, stage[1].pre(ref), rtol=1e-4, atol=1e-4)
# the registered operators: schema, fake (meta) implementation and real one agree
_, fused = fused_stage(16, (2, 2), False)
k0, k1 = fused.kernels
t = torch.randn(1, 8, 5, 9).contiguous(memory_format=torch.channels_last)     # EDAB(16) works on 8 channels
x = torch.randn(1, 16, 5, 9).contiguous(memory_format=torch.channels_last)
torch.library.opcheck(T.edab_vertical_op, (t, k0.packed, 2))
v = T.edab_vertical_op(t, k0.packed, 2)
torch.library.opcheck(T.edab_pool_op, (v, k0.packed, 2))
pooled, ca = split_means(T.edab_pool_op(v, k0.packed, 2))
for nxt in (k1.pre, None):
    torch.library.opcheck(T.edab_finish_op, (t, v, x, k0.packed, pooled, ca, k0.ca_weight, k0.expand_t,
                                             k0.shuffle_src, nxt, 2, k0.pairs),
                          test_utils=("test_schema", "test_faketensor"))
print("ok")
"""


def test_fused_kernels_under_the_triton_interpreter(triton_interpreter):
    triton_interpreter(_INTERPRETER_CHECK, timeout=900)


def test_benchmark_extra_launch_configurations_are_parsed_or_refused():
    """benchmarks/edab_fused.py --extra-candidates: E/W/R triples, or a clear argparse error."""
    import argparse

    from benchmarks.edab_fused import launch_configs

    assert launch_configs("512/1/1, 1024/2/4") == ((512, 1, 1), (1024, 2, 4))
    for bad in ("", "512/1", "512/3/1", "8/1/1", "a/b/c", "512/1/-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="elements/warps/rows"):
            launch_configs(bad)
