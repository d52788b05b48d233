"""Time one SS2D scan call per backend at the shapes ECMNet's FFM sees for given input sizes.

Why: the `cuda` backend (our fused Triton kernel) must beat mamba-ssm's selective_scan_fn
plus the PyTorch cross-scan/merge it needs (issue goal: >= 2x at 1024x2048). Shapes are read
from a real ECMNet forward (ECMNetConfig defaults, batch 1): the scan arguments are captured
at the SS2D block, so the layout (dt_low / Bs / Cs as split views) is the model's own.

    PYTHONPATH=. python benchmarks/ss2d.py [--sizes 360x480,1024x1024,1024x2048] [--iters 200]
    PYTHONPATH=. python benchmarks/ss2d.py --sweep      # tile-size sweep of the Triton kernel
    PYTHONPATH=. python benchmarks/ss2d.py --sweep-inference --sizes 1024x2048   # inference kernel only
    PYTHONPATH=. python benchmarks/ss2d.py --check-chunks --sizes 360x480   # kernel vs oracle per T

Timing: CUDA events around each call, warmup first, median over --iters calls; forward is
under torch.no_grad (inference), forward+backward computes all eight input gradients.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.provenance import git_commit  # noqa: E402
from ecmnet_core.model import ECMNet, ECMNetConfig  # noqa: E402
from ecmnet_core.ops.ss2d import available_backends, get_scan  # noqa: E402


def parse_sizes(text: str):
    sizes = []
    for item in text.split(","):
        h, w = item.lower().split("x")
        sizes.append((int(h), int(w)))
    return sizes


def ffm_scan_shapes(cfg: ECMNetConfig, h: int, w: int, batch: int = 1, device: str = "cuda"):
    """Run ECMNet once (no_grad) and capture the shapes the SS2D block passes to its scan."""
    model = ECMNet(cfg).eval().to(device)
    ss2d = model.ffm.ss2d
    seen = {}
    real_scan = ss2d._scan

    def spy(x, dt_low, bs, cs, dt_weight, dt_bias, A, Ds):
        seen.update(x=tuple(x.shape), dt_low=tuple(dt_low.shape), d_state=bs.shape[2])
        return real_scan(x, dt_low, bs, cs, dt_weight, dt_bias, A, Ds)

    ss2d._scan = spy
    with torch.no_grad():
        model(torch.zeros(batch, 3, h, w, device=device))
    return seen, ss2d


def make_args(shapes, ss2d, device, requires_grad):
    """Random inputs with the model's layout and the module's real dt/A/D parameters."""
    b, d, h, w = shapes["x"]
    _, k, r, _, _ = shapes["dt_low"]
    n = shapes["d_state"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(b, d, h, w, generator=gen).to(device)
    proj = (torch.randn(b, k, r + 2 * n, h, w, generator=gen) * 0.5).to(device)
    params = [p.detach().clone().to(device) for p in (ss2d.dt_weight, ss2d.dt_bias)]
    A = -torch.exp(ss2d.A_log.detach()).to(device)
    Ds = ss2d.Ds.detach().clone().to(device)
    leaves = [x, proj, params[0], params[1], A, Ds]
    if requires_grad:
        for t in leaves:
            t.requires_grad_(True)

    def call(fn):
        dt_low, bs, cs = proj.split([r, n, n], dim=2)
        return fn(x, dt_low, bs, cs, params[0], params[1], A, Ds)

    return call, leaves


def time_ms(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def bench_backend(name, shapes, ss2d, warmup, iters):
    scan = get_scan(name)
    call_f, _ = make_args(shapes, ss2d, "cuda", requires_grad=False)

    def fwd():
        with torch.no_grad():
            call_f(scan)

    call_b, leaves = make_args(shapes, ss2d, "cuda", requires_grad=True)
    grad = torch.randn(shapes["x"], device="cuda")

    def fwd_bwd():
        y = call_b(scan)
        torch.autograd.grad(y, leaves, grad)

    with torch.no_grad():
        out = call_f(scan)
    return time_ms(fwd, warmup, iters), time_ms(fwd_bwd, warmup, iters), out


def _kernel_args(shapes, ss2d):
    """Scan arguments as the Triton launchers take them, and the reference output."""
    from ecmnet_core.ops.ss2d import ss2d_scan_vectorized

    _, (x, proj, w, bias, A, Ds) = make_args(shapes, ss2d, "cuda", requires_grad=False)
    r, n = shapes["dt_low"][2], shapes["d_state"]
    dt_low, bs, cs = proj.split([r, n, n], dim=2)
    w, bias, A, Ds = (t.float().contiguous() for t in (w, bias, A, Ds))
    with torch.no_grad():
        ref = ss2d_scan_vectorized(x, dt_low, bs, cs, w, bias, A, Ds)
    return (x, dt_low, bs, cs, w, bias, A, Ds), ref


def sweep(shapes, ss2d, warmup, iters):
    """Time tile configurations of the Triton kernel directly (forward with saved states, backward).

    Each line also prints the forward's max error against the PyTorch reference, so a fast but
    wrong configuration (T > 1 on Triton 3.6 / H100, see ecmnet_core/ops/ss2d/triton.py) cannot pass unnoticed."""
    from ecmnet_core.ops.ss2d import triton as ts

    (x, dt_low, bs, cs, w, bias, A, Ds), ref = _kernel_args(shapes, ss2d)
    dy = torch.randn_like(x)
    configs = [(1, 8, 2), (1, 16, 1), (1, 16, 2), (1, 16, 4), (1, 32, 2), (1, 32, 4),
               (2, 16, 2), (4, 16, 2), (4, 16, 4), (16, 16, 4)]
    for T, blk, nw in configs:
        cfg = dict(BLOCK_D=blk, num_warps=nw)
        try:
            f = time_ms(lambda: ts.scan_forward(x, dt_low, bs, cs, w, bias, A, Ds, True, T, cfg), warmup, iters)
            out, st = ts.scan_forward(x, dt_low, bs, cs, w, bias, A, Ds, True, T, cfg)
            bwd = time_ms(lambda: ts.scan_backward(dy, x, dt_low, bs, cs, w, bias, A, Ds, st, T, cfg),
                          warmup, iters)
            err = (out - ref).abs().max().item()
            print(f"sweep T={T:3d} BLOCK_D={blk:3d} warps={nw}: fwd(save) {f:.4f} ms  bwd {bwd:.4f} ms  "
                  f"max |out - reference| {err:.1e}{'  WRONG' if not err <= 1e-3 else ''}")
        except Exception as exc:  # e.g. out of registers for a tile
            print(f"sweep T={T:3d} BLOCK_D={blk:3d} warps={nw}: failed ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:100]})")
        sys.stdout.flush()
    sweep_inference(shapes, ss2d, warmup, iters)


def sweep_inference(shapes, ss2d, warmup, iters):
    """Inference (no saved states): the default forward kernel vs the state-major inference kernel
    (ops/ss2d/triton.py INFER_KERNEL) at a few tile sizes, each with its max error against the reference."""
    from ecmnet_core.ops.ss2d import triton as ts

    (x, dt_low, bs, cs, w, bias, A, Ds), ref = _kernel_args(shapes, ss2d)
    base = time_ms(lambda: ts.scan_forward(x, dt_low, bs, cs, w, bias, A, Ds, False, infer_kernel=False),
                   warmup, iters)
    print(f"sweep inference: forward kernel ({ts.FWD_CONFIG}): {base:.4f} ms")
    for blk, nw in [(16, 1), (32, 1), (64, 2), (128, 4)]:
        cfg = dict(BLOCK_D=blk, num_warps=nw)
        try:
            f = time_ms(lambda: ts.scan_forward(x, dt_low, bs, cs, w, bias, A, Ds, False, config=cfg,
                                                infer_kernel=True), warmup, iters)
            out, _ = ts.scan_forward(x, dt_low, bs, cs, w, bias, A, Ds, False, config=cfg, infer_kernel=True)
            err = (out - ref).abs().max().item()
            print(f"sweep inference: infer kernel BLOCK_D={blk:3d} warps={nw}: {f:.4f} ms ({base / f:.2f}x)  "
                  f"max |out - reference| {err:.1e}{'  WRONG' if not err <= 1e-3 else ''}")
        except Exception as exc:
            print(f"sweep inference: infer kernel BLOCK_D={blk:3d} warps={nw}: failed ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:100]})")
        sys.stdout.flush()


def check_chunks(shapes, ss2d):
    """Forward error of the Triton kernel vs the sequential oracle per direction and chunk T.

    T = 16 gave wrong outputs on Triton 3.6 / H100 while T = 1 was exact; this is the check
    to run before raising ops/ss2d/triton.py's CHUNK_T."""
    from ecmnet_core.ops.ss2d import ss2d_scan_sequential
    from ecmnet_core.ops.ss2d import triton as ts

    _, (x, proj, w, bias, A, Ds) = make_args(shapes, ss2d, "cuda", requires_grad=False)
    r, n = shapes["dt_low"][2], shapes["d_state"]
    dt_low, bs, cs = proj.split([r, n, n], dim=2)
    for k in range(4):
        keep = torch.zeros(4, 1, 1, device="cuda")
        keep[k] = 1
        cs_k = cs * keep[None, :, :, :, None]           # only direction k contributes
        ds_k = Ds * keep[:, :, 0]
        ref = ss2d_scan_sequential(x, dt_low, bs, cs_k, w, bias, A, ds_k)
        for T in (1, 2, 4, 16):
            out, _ = ts.scan_forward(x, dt_low, bs, cs_k, w.float().contiguous(), bias.float().contiguous(),
                                     A.float().contiguous(), ds_k.float().contiguous(), False, T)
            print(f"check direction {k} T={T:2d}: max |out - sequential| = {(out - ref).abs().max().item():.2e} "
                  f"(max |ref| {ref.abs().max().item():.2e})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="360x480,1024x1024,1024x2048", help="input HxW list")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--backends", default="", help="comma list (default: every available one)")
    ap.add_argument("--sweep", action="store_true", help="tile-size sweep of the Triton kernel")
    ap.add_argument("--sweep-inference", action="store_true",
                    help="only the inference part of --sweep: forward kernel vs inference kernel")
    ap.add_argument("--check-chunks", action="store_true",
                    help="per-direction forward error of the Triton kernel for chunk T=1, 2, 4 and 16")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: benchmarks/ss2d.py needs a CUDA device")

    status = available_backends()
    names = [n for n in (args.backends.split(",") if args.backends else status) if n != "sequential"]
    versions = [f"torch {torch.__version__}"]
    for mod in ("triton", "mamba_ssm"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            pass
    print(f"device: {torch.cuda.get_device_name()} | date: "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} | commit {git_commit()} | "
          f"{' | '.join(versions)}")
    for n, s in status.items():
        print(f"backend {n}: {s}")
    names = [n for n in names if status.get(n) == "ok"]
    cfg = ECMNetConfig()
    print(f"ECMNetConfig: ffm_dim {cfg.ffm_dim} x ssm_expand {cfg.ssm_expand}, d_state {cfg.d_state}; "
          f"median of {args.iters} calls after {args.warmup} warmup, CUDA events")

    results = {}
    for h, w in parse_sizes(args.sizes):
        shapes, ss2d = ffm_scan_shapes(cfg, h, w)
        b, d, sh, sw = shapes["x"]
        print(f"\ninput {h}x{w}: scan x {shapes['x']}, dt_low {shapes['dt_low']}, d_state {shapes['d_state']} "
              f"(B={b}, D={d}, H={sh}, W={sw}, R={shapes['dt_low'][2]})")
        if args.check_chunks:
            check_chunks(shapes, ss2d)
            continue
        if args.sweep or args.sweep_inference:
            (sweep if args.sweep else sweep_inference)(shapes, ss2d, args.warmup, args.iters)
            continue
        outs = {}
        for name in names:
            f, fb, outs[name] = bench_backend(name, shapes, ss2d, args.warmup, args.iters)
            results[(h, w, name)] = (f, fb)
            print(f"  {name:10s} fwd {f:8.4f} ms   fwd+bwd {fb:8.4f} ms")
        ref = outs.get("reference")
        invalid = set()
        if ref is not None:
            for name, o in outs.items():
                if name != "reference":
                    err = (o.float() - ref.float()).abs().max().item()
                    bad = not err <= 1e-3 * max(1.0, ref.float().abs().max().item())
                    print(f"  {name:10s} max |out - reference| = {err:.2e}"
                          + ("  INVALID: output differs from reference, no ratios" if bad else ""))
                    if bad:
                        invalid.add(name)
        for other in ("reference", "mamba", "export"):
            if "cuda" in names and other in names and not invalid & {"cuda", other}:
                cf, cfb = results[(h, w, "cuda")]
                of, ofb = results[(h, w, other)]
                print(f"  ratio cuda/{other}: fwd {cf / of:.3f} (speedup {of / cf:.2f}x), "
                      f"fwd+bwd {cfb / ofb:.3f} (speedup {ofb / cfb:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
