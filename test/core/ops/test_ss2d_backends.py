"""Every SS2D backend computes reference.py's scan: outputs and gradients, all dtypes.

Tolerances. fp32: 1e-4 (abs and rel) - both sides accumulate in fp32 and only the summation
order differs. fp16 / bf16: both sides read the *same* half-precision inputs and keep an fp32
state, so they differ by the rounding of the outputs / gradients to the half dtype (1 ulp) plus,
for mamba-ssm, its half-precision step sizes and per-direction outputs before the merge. We allow
8 ulp of the largest magnitude of each compared tensor: 8 * 2**-10 (fp16), 8 * 2**-7 (bf16).
"""
from __future__ import annotations

import pytest
import torch

from ecmnet_core.ops.ss2d import (
    BackendUnavailable,
    available_backends,
    get_scan,
    register_backend,
    ss2d_scan_sequential,
)
from ecmnet_core.ops.ss2d.auto import pick_auto
from ecmnet_core.ops.ss2d.mamba_backend import ss2d_scan_mamba

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

HALF_ULP = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


def make_inputs(b, d, h, w, r, n, dtype=torch.float32, device="cpu", seed=0, channels_last=False):
    """Scan arguments laid out as SS2D produces them: dt_low / Bs / Cs are split views of one tensor."""
    g = torch.Generator().manual_seed(seed)
    if channels_last:
        x = torch.randn(b, h, w, d, generator=g).permute(0, 3, 1, 2)
    else:
        x = torch.randn(b, d, h, w, generator=g)
    proj = torch.randn(b, 4, r + 2 * n, h, w, generator=g) * 0.5
    params = dict(
        dt_weight=torch.randn(4, d, r, generator=g) * r ** -0.5,
        dt_bias=torch.randn(4, d, generator=g) * 0.5 - 2.0,
        A=-torch.exp(torch.randn(4, d, n, generator=g) * 0.5),
        Ds=torch.randn(4, d, generator=g),
    )
    leaves = {"x": x.to(device, dtype), "proj": proj.to(device, dtype)}
    leaves.update({k: v.to(device) for k, v in params.items()})
    return leaves, (r, n)


def run_scan(fn, leaves, rn, grad_out):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()}
    r, n = rn
    dt_low, bs, cs = leaves["proj"].split([r, n, n], dim=2)
    y = fn(leaves["x"], dt_low, bs, cs, leaves["dt_weight"], leaves["dt_bias"], leaves["A"], leaves["Ds"])
    grads = torch.autograd.grad((y.float() * grad_out).sum(), list(leaves.values()))
    return y, dict(zip(leaves, grads))


def assert_matches(got, want, dtype, what):
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}")
    else:
        tol = 8 * HALF_ULP[dtype] * want.float().abs().max().item()
        err = (got.float() - want.float()).abs().max().item()
        assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g} (8 ulp of max |ref|)"


def gpu_backends():
    names = [n for n, s in available_backends().items() if s == "ok" and n not in ("sequential", "reference")]
    return names


# ---------------------------------------------------------------- selector (CPU)

def test_unknown_backend_lists_choices():
    with pytest.raises(ValueError) as exc:
        get_scan("no-such-scan")
    msg = str(exc.value)
    for name in ("auto", "reference", "sequential", "cuda", "mamba"):
        assert name in msg


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only messages")
@pytest.mark.parametrize("name", ["cuda", "mamba"])
def test_gpu_backends_unavailable_on_cpu_with_reason(name):
    with pytest.raises(BackendUnavailable, match="CUDA"):
        get_scan(name)
    status = available_backends()[name]
    assert status.startswith("unavailable:") and "CUDA" in status


def test_unavailable_backend_reports_its_reason_everywhere():
    from ecmnet_core.ops import ss2d
    from ecmnet_core.model.ss2d_block import SS2D

    def loader():
        raise BackendUnavailable("needs the frobnicator 3.1 runtime")

    register_backend("test-missing", loader, "test only")
    try:
        with pytest.raises(BackendUnavailable, match="frobnicator"):
            get_scan("test-missing")
        assert "frobnicator" in available_backends()["test-missing"]
        with pytest.raises(BackendUnavailable, match="frobnicator"):
            SS2D(8, d_state=4, backend="test-missing")
    finally:
        ss2d._LOADERS.pop("test-missing")


def test_auto_picks_first_loadable_backend_in_device_order(monkeypatch):
    from ecmnet_core.ops import ss2d
    from ecmnet_core.ops.ss2d import auto

    def missing():
        raise BackendUnavailable("not built")

    loaders = dict(ss2d._LOADERS)
    loaders["gpu-a"] = (missing, "test")
    loaders["gpu-b"] = (lambda: ss2d.ss2d_scan_vectorized, "test")
    monkeypatch.setattr(ss2d, "_LOADERS", loaders)
    monkeypatch.setattr(auto, "_GPU_ORDER", ("gpu-a", "gpu-b", "reference"))
    assert pick_auto("cuda") == "gpu-b"          # skips the unavailable one
    assert pick_auto("cpu") == "reference"
    monkeypatch.setattr(auto, "_GPU_ORDER", ("gpu-a",))
    assert pick_auto("cuda:0") == "reference"    # nothing in the order loads
    if not HAS_CUDA:
        assert pick_auto() == "reference" and get_scan("auto") is get_scan("reference")


# ---------------------------------------------------------------- mamba adapter layout (CPU)

def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba-ssm's documented selective_scan semantics (u, delta: (b, d, l); B, C: (b, g, n, l))."""
    delta = delta.float() + delta_bias[None, :, None]
    delta = torch.nn.functional.softplus(delta) if delta_softplus else delta
    bsz, dim, length = u.shape
    groups = B.shape[1]
    Bx = B.float().repeat_interleave(dim // groups, dim=1)      # b, d, n, l
    Cx = C.float().repeat_interleave(dim // groups, dim=1)
    h = u.new_zeros(bsz, dim, A.shape[1], dtype=torch.float32)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t].float())[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1) + D * u[:, :, t].float())
    return torch.stack(ys, -1).to(u.dtype)


def test_mamba_adapter_cross_scan_and_merge_match_reference():
    leaves, rn = make_inputs(2, 6, 5, 7, 3, 4)
    g = torch.randn(2, 6, 5, 7)
    y_ref, g_ref = run_scan(ss2d_scan_sequential, leaves, rn, g)
    y, grads = run_scan(lambda *a: ss2d_scan_mamba(fake_selective_scan_fn, *a), leaves, rn, g)
    assert_matches(y, y_ref, torch.float32, "out")
    for k in g_ref:
        assert_matches(grads[k], g_ref[k], torch.float32, f"grad {k}")


# ---------------------------------------------------------------- GPU parity

SIZES = [
    # b, d, h, w, r, n     (BLOCK_D=16 / T=32 in the kernel: cover remainders, H != W, N not 2**k)
    (2, 20, 5, 37, 3, 16),
    (1, 128, 23, 30, 4, 16),     # the FFM at 360x480
    (1, 33, 70, 9, 4, 12),
    (3, 8, 1, 65, 2, 4),
]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_gpu_backends_match_sequential(size, dtype):
    backends = gpu_backends()
    assert "cuda" in backends, available_backends()["cuda"]
    leaves, rn = make_inputs(*size, dtype=dtype, device="cuda", seed=sum(size),
                             channels_last=size[1] == 33)
    g = torch.randn(size[0], size[1], size[2], size[3], device="cuda")
    y_ref, g_ref = run_scan(ss2d_scan_sequential, leaves, rn, g)
    for name in backends:
        y, grads = run_scan(get_scan(name), leaves, rn, g)
        assert_matches(y, y_ref, dtype, f"{name} out")
        for k in g_ref:
            assert_matches(grads[k], g_ref[k], dtype, f"{name} grad {k}")


@needs_cuda
def test_cuda_inference_without_grad_matches():
    leaves, (r, n) = make_inputs(1, 40, 17, 50, 4, 16, device="cuda")
    dt_low, bs, cs = leaves["proj"].split([r, n, n], dim=2)
    args = (leaves["x"], dt_low, bs, cs, leaves["dt_weight"], leaves["dt_bias"], leaves["A"], leaves["Ds"])
    with torch.no_grad():
        torch.testing.assert_close(get_scan("cuda")(*args), ss2d_scan_sequential(*args), atol=1e-4, rtol=1e-4)


@needs_cuda
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_inference_kernel_matches_sequential(size):
    """The state-major inference-only forward (ops/ss2d/triton.py INFER_KERNEL), fp32, against the oracle."""
    from ecmnet_core.ops.ss2d import triton as ts

    leaves, (r, n) = make_inputs(*size, device="cuda", seed=sum(size), channels_last=size[1] == 33)
    dt_low, bs, cs = leaves["proj"].split([r, n, n], dim=2)
    w, bias, a, ds = (leaves[k].float().contiguous() for k in ("dt_weight", "dt_bias", "A", "Ds"))
    with torch.no_grad():
        out, states = ts.scan_forward(leaves["x"], dt_low, bs, cs, w, bias, a, ds, False, infer_kernel=True)
        ref = ss2d_scan_sequential(leaves["x"], dt_low, bs, cs, w, bias, a, ds)
    assert states is None
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


_INTERPRETER_CHECK = r"""
import torch
from ecmnet_core.ops.ss2d import triton as ts, ss2d_scan_sequential
from test_ss2d_backends import make_inputs
# small shapes (the interpreter is slow): remainders of BLOCK_D 16 / 32, H != W, N not 2**k, H = 1
for size in [(1, 20, 5, 17, 3, 16), (1, 33, 7, 9, 4, 12), (2, 8, 1, 23, 2, 4)]:
    leaves, (r, n) = make_inputs(*size, seed=sum(size), channels_last=size[1] == 33)
    dt_low, bs, cs = leaves["proj"].split([r, n, n], dim=2)
    w, bias, a, ds = (leaves[k].float().contiguous() for k in ("dt_weight", "dt_bias", "A", "Ds"))
    ref = ss2d_scan_sequential(leaves["x"], dt_low, bs, cs, w, bias, a, ds)
    for infer in (False, True):
        out, _ = ts.scan_forward(leaves["x"], dt_low, bs, cs, w, bias, a, ds, False, infer_kernel=infer)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
print("ok")
"""


def test_cuda_forward_kernels_under_the_triton_interpreter(triton_interpreter):
    """Both forward kernels of the `cuda` backend, run by Triton's interpreter on CPU tensors."""
    triton_interpreter(_INTERPRETER_CHECK, timeout=900)


@needs_cuda
def test_cuda_backend_rejects_cpu_tensors_clearly():
    leaves, (r, n) = make_inputs(1, 4, 3, 3, 2, 4)
    dt_low, bs, cs = leaves["proj"].split([r, n, n], dim=2)
    with pytest.raises(ValueError, match="CUDA tensors"):
        get_scan("cuda")(leaves["x"], dt_low, bs, cs, leaves["dt_weight"], leaves["dt_bias"],
                         leaves["A"], leaves["Ds"])


@needs_cuda
@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_cuda_kernel_chunk_sizes_match_sequential(chunk, monkeypatch):
    """The kernel's in-chunk scan (T > 1) against the oracle, forward and all gradients.

    T = 16 is known to be wrong on Triton 3.6 / H100 (docs/benchmarks/ss2d.md) and is not offered."""
    from ecmnet_core.ops.ss2d import triton as triton_scan

    monkeypatch.setattr(triton_scan, "CHUNK_T", chunk)
    size = (2, 20, 5, 37, 3, 16)
    leaves, rn = make_inputs(*size, device="cuda", seed=7)
    g = torch.randn(size[0], size[1], size[2], size[3], device="cuda")
    y_ref, g_ref = run_scan(ss2d_scan_sequential, leaves, rn, g)
    y, grads = run_scan(get_scan("cuda"), leaves, rn, g)
    assert_matches(y, y_ref, torch.float32, f"T={chunk} out")
    for k in g_ref:
        assert_matches(grads[k], g_ref[k], torch.float32, f"T={chunk} grad {k}")


@pytest.fixture(autouse=True)
def exact_fp32_cuda():
    """fp32 convolutions and matmuls without TF32 and with deterministic algorithms, so that the
    oracle is exact and two runs of a network differ only where the code under test differs
    (TF32 alone moves gradients ~1e-3; the training code switches it on for its own runs)."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = flags


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@needs_cuda
def test_ss2d_module_and_ecmnet_train_step_cuda_vs_reference():
    """Whole-network forward+backward: only the scan differs, so logits and every parameter
    gradient agree to fp32 noise amplified by BN/conv stacks (1e-3 relative to the largest)."""
    from ecmnet_core.model import ECMNet
    from ecmnet_core.model.ss2d_block import SS2D

    torch.manual_seed(0)
    block = SS2D(32, d_state=16, backend="reference").cuda()
    xb = torch.randn(2, 32, 19, 26, device="cuda")
    results = {}
    for name in ("reference", "cuda"):
        block.backend = name
        block.zero_grad(set_to_none=True)
        out = block(xb)
        out.square().mean().backward()
        results[name] = (out.detach(), _grads(block))
    for k, ref in results["reference"][1].items():
        torch.testing.assert_close(results["cuda"][1][k], ref, atol=1e-4, rtol=1e-4, msg=lambda m: f"{k}: {m}")
    torch.testing.assert_close(results["cuda"][0], results["reference"][0], atol=1e-4, rtol=1e-4)

    model = ECMNet(num_classes=11).cuda().train()
    img = torch.randn(2, 3, 200, 264, device="cuda")
    target = torch.randint(0, 11, (2, 200, 264), device="cuda")
    results = {}
    for name in ("reference", "cuda"):
        model.set_ss2d_backend(name)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        logits = model(img)
        torch.nn.functional.cross_entropy(logits, target).backward()
        results[name] = (logits.detach(), _grads(model))
        # the first pass updated BN running stats; do not let that differ between the two
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    ref_logits, ref_grads = results["reference"]
    logits, grads = results["cuda"]
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, ref_logits, atol=1e-3 * ref_logits.abs().max().item(), rtol=1e-3)
    assert grads.keys() == ref_grads.keys() and len(grads) > 50
    for k, ref in ref_grads.items():
        scale = ref.abs().max().item()
        torch.testing.assert_close(grads[k], ref, atol=1e-3 * scale + 1e-7, rtol=1e-3, msg=lambda m: f"{k}: {m}")
