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

from ecmnet_core.dda_gate import dda_gates_reference  # noqa: E402
from ecmnet_core.engine import PRECISIONS  # noqa: E402

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


def inputs(c, h, w, dtype):
    """Random pooled descriptors and projection weights for one EDAB shape (timing ignores values)."""
    torch.manual_seed(c + h)
    inner = max(c // 4, 4)
    pooled = torch.randn(1, c, h + w, device="cuda", dtype=dtype)
    w_qk = (torch.randn(2 * inner, c, device="cuda") * c ** -0.5).to(dtype)
    w_v = (torch.randn(c, c, device="cuda") * c ** -0.5).to(dtype)
    return pooled, w_qk, w_v, inner, h, inner ** -0.5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="fp16", choices=sorted(PRECISIONS))
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--sweep", action="store_true", help="also time the kernel's block sizes")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: benchmarks/dda_gate.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from ecmnet_core.dda_gate_triton import dda_gates_triton

    dtype = PRECISIONS[args.precision]
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"torch {torch.__version__} | {args.precision}, batch 1, us per call (CUDA graph of {REPEAT} calls)")
    print(f"{'EDABs':>5} {'C':>4} {'H':>4} {'W':>4} | {'torch ops':>9} {'kernel':>8} {'ratio':>6} | max abs diff")
    total_ref = total_k = 0.0
    for n, c, h, w in SHAPES:
        args_ = inputs(c, h, w, dtype)
        t_ref = time_graph(lambda: dda_gates_reference(*args_), args.iters)
        t_k = time_graph(lambda: dda_gates_triton(*args_), args.iters)
        diff = (dda_gates_triton(*args_).float() - dda_gates_reference(*args_).float()).abs().max().item()
        total_ref, total_k = total_ref + n * t_ref, total_k + n * t_k
        print(f"{n:>5} {c:>4} {h:>4} {w:>4} | {t_ref:>9.1f} {t_k:>8.1f} {t_ref / t_k:>6.1f} | {diff:.2e}")
    print(f"per 1024x2048 forward (21 EDABs): torch ops {total_ref:.0f} us, kernel {total_k:.0f} us "
          f"({total_ref / total_k:.1f}x)")
    if args.sweep:
        print("block sizes: us per 1024x2048 forward (21 EDABs)")
        for bq, bk in [(16, 64), (16, 128), (32, 64), (32, 128), (64, 64), (16, 256), (32, 256)]:
            total = 0.0
            for n, c, h, w in SHAPES:
                args_ = inputs(c, h, w, dtype)
                total += n * time_graph(lambda: dda_gates_triton(*args_, block_q=bq, block_k=bk), args.iters)
            print(f"  BLOCK_Q {bq:>3} BLOCK_K {bk:>3}: {total:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
