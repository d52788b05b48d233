"""Dual-direction attention on pooled descriptors: PyTorch ops vs the fused Triton kernel.

    PYTHONPATH=. python benchmarks/dda_gate.py [--precision fp16] [--iters 200]

The shapes are those of ECMNet's 21 EDABs at a 1024x2048 input (channels after the
EDAB's 1x1 reduction, H and W of the feature map). Both are timed as CUDA graphs of 20
back-to-back calls (launch costs as in the engine's graphed forward); the table prints
microseconds per call and the kernel's max abs difference from the PyTorch ops.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.provenance import git_commit  # noqa: E402

from ecmnet_core.ops.dda import dda_gates_reference  # noqa: E402
from ecmnet_core.runtime.engine import PRECISIONS  # noqa: E402

# (EDABs at this shape per forward, channels, H, W) for a 1024x2048 input
SHAPES = [(3, 32, 256, 512), (8, 64, 128, 256), (4, 32, 64, 128), (2, 32, 64, 128), (2, 16, 128, 256),
          (2, 16, 256, 512)]
REPEAT = 20


def time_graph(fn, iters):
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    stream.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        for _ in range(REPEAT):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(stream):
        g.replay()
        start.record(stream)
        for _ in range(iters):
            g.replay()
        end.record(stream)
    stream.synchronize()
    return start.elapsed_time(end) * 1e3 / (iters * REPEAT)


def inputs(c, h, w, dtype, means_dtype=None):
    """Random pooled descriptors and projection weights for one EDAB shape (timing ignores values).
    means_dtype: the pooled descriptors' dtype if not dtype (fp32: as the fused EDAB's pool gives them)."""
    torch.manual_seed(c + h)
    inner = max(c // 4, 4)
    pooled = torch.randn(1, c, h + w, device="cuda", dtype=means_dtype or dtype)
    w_qk = (torch.randn(2 * inner, c, device="cuda") * c ** -0.5).to(dtype)
    w_v = (torch.randn(c, c, device="cuda") * c ** -0.5).to(dtype)
    return pooled, w_qk, w_v, inner, h, inner ** -0.5


def same_dtype(args_):
    """The reference's inputs: the weights in the pooled descriptors' dtype (the torch ops need one dtype)."""
    pooled, w_qk, w_v, *rest = args_
    return (pooled, w_qk.to(pooled.dtype), w_v.to(pooled.dtype), *rest)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="fp16", choices=sorted(PRECISIONS))
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--sweep", action="store_true", help="also time the kernel's block sizes and warps")
    ap.add_argument("--fp32-means", action="store_true",
                    help="fp32 pooled descriptors with --precision weights (the fused EDAB's input)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: benchmarks/dda_gate.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from ecmnet_core.ops.dda.triton import dda_gates_triton

    dtype = PRECISIONS[args.precision]
    means = torch.float32 if args.fp32_means else None
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"commit {git_commit()} | "
          f"torch {torch.__version__} | {args.precision}{' (fp32 means)' if means else ''}, batch 1, us per call "
          f"(CUDA graph of {REPEAT} calls)")
    print(f"{'EDABs':>5} {'C':>4} {'H':>4} {'W':>4} | {'torch ops':>9} {'kernel':>8} {'ratio':>6} | max abs diff")
    total_ref = total_k = 0.0
    for n, c, h, w in SHAPES:
        args_ = inputs(c, h, w, dtype, means)
        ref_args = same_dtype(args_)
        t_ref = time_graph(lambda: dda_gates_reference(*ref_args), args.iters)
        t_k = time_graph(lambda: dda_gates_triton(*args_), args.iters)
        diff = (dda_gates_triton(*args_).float() - dda_gates_reference(*ref_args).float()).abs().max().item()
        total_ref, total_k = total_ref + n * t_ref, total_k + n * t_k
        print(f"{n:>5} {c:>4} {h:>4} {w:>4} | {t_ref:>9.1f} {t_k:>8.1f} {t_ref / t_k:>6.1f} | {diff:.2e}")
    print(f"per 1024x2048 forward (21 EDABs): torch ops {total_ref:.0f} us, kernel {total_k:.0f} us "
          f"({total_ref / total_k:.1f}x)")
    if args.sweep:
        print("block sizes and warps: us per 1024x2048 forward (21 EDABs), largest abs difference from the "
              "torch ops over the shapes")
        for bq, bk, warps in [(16, 64, 4), (16, 128, 4), (32, 64, 4), (32, 128, 4), (64, 64, 4), (16, 256, 4),
                              (32, 256, 4), (16, 64, 2), (16, 128, 2), (16, 256, 2), (16, 128, 1), (16, 128, 8)]:
            total, diff = 0.0, 0.0
            for n, c, h, w in SHAPES:
                args_ = inputs(c, h, w, dtype, means)
                run = lambda: dda_gates_triton(*args_, block_q=bq, block_k=bk, num_warps=warps)  # noqa: E731
                total += n * time_graph(run, args.iters)
                diff = max(diff, (run().float() - dda_gates_reference(*same_dtype(args_)).float()).abs().max().item())
            print(f"  BLOCK_Q {bq:>3} BLOCK_K {bk:>3} warps {warps}: {total:.0f} us | {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
