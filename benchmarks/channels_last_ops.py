"""channels_last Triton kernels vs the PyTorch operators they replace, at ECMNet's shapes.

    PYTHONPATH=. python benchmarks/channels_last_ops.py [--size 1024x2048] [--precision fp16]

Depthwise convolutions: every 'same' depthwise conv of an ECMNet forward at --size, found with
forward hooks on the rewritten model (optimize_for_inference(channels_last_kernels=True)),
grouped by shape; cuDNN (F.conv2d, cudnn.benchmark on) vs the Triton kernel. The 'shift'
column marks the convs that the compiled engine writes as shifted multiply-adds instead
(<= MAX_SHIFT_TAPS taps), so only the others matter there. Conv + PReLU pairs (the stem's 3x3
convs, EDAB's 3x1 and 1x3 convs; found the same way): cuDNN + PReLU eager, each Triton launch
configuration, and ops/tuning.py's choice (cuDNN + PReLU is one of its candidates). Resize: the
final logits resize (19 classes, 1/2 resolution to --size): eager F.interpolate, F.interpolate
compiled by Inductor, each Triton launch configuration and the one ops/tuning.py picks. Timing: CUDA graphs of 20 back-to-back calls (as
benchmarks/dda_gate.py), microseconds per call; max abs difference from the PyTorch operator.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dda_gate import REPEAT, time_graph  # noqa: E402
from benchmarks.inference import NUM_CLASSES, parse_sizes  # noqa: E402
from benchmarks.provenance import git_commit  # noqa: E402
from ecmnet_core.runtime.engine import PRECISIONS  # noqa: E402
from ecmnet_core.inference.modules import _KernelConvPReLU, _KernelDepthwiseConv  # noqa: E402
from ecmnet_core.inference.rewrites import MAX_SHIFT_TAPS, optimize_for_inference  # noqa: E402
from ecmnet_core.model import ECMNet  # noqa: E402


def _call_shapes(size, dtype, device, module_type, key):
    """{key(module, its input): calls per forward} over the modules of module_type in ECMNet rewritten
    with channels_last_kernels, at `size`, batch 1 (forward hooks)."""
    model = optimize_for_inference(ECMNet(num_classes=NUM_CLASSES).eval(), channels_last_kernels=True)
    model = model.to(device, dtype).to(memory_format=torch.channels_last)
    seen = collections.Counter()
    for m in model.modules():
        if isinstance(m, module_type):
            m.register_forward_hook(lambda module, args, _out: seen.update([key(module, args[0])]))
    with torch.inference_mode():
        model(torch.randn(1, 3, *size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last))
    return seen


def depthwise_shapes(size, dtype, device="cuda"):
    """{(C, H, W, kh, kw, dilation): calls per forward} of ECMNet's depthwise convs at `size`, batch 1."""
    return _call_shapes(size, dtype, device, _KernelDepthwiseConv,
                        lambda m, x: (*x.shape[1:], *m.weight.shape[-2:], tuple(m.dilation)))


def conv_shapes(size, dtype, device="cuda"):
    """{(CI, H, W, CO, kh, kw): calls per forward} of ECMNet's conv + PReLU pairs at `size`, batch 1."""
    return _call_shapes(size, dtype, device, _KernelConvPReLU,
                        lambda m, x: (*x.shape[1:], m.conv.weight.shape[0], *m.conv.weight.shape[-2:]))


def kernel_bench_args(doc: str, script: str, iters: int, argv=None, more_args=None):
    """--size, --precision and --iters of a kernel benchmark at ECMNet's shapes (cuDNN autotuning
    on, our kernels' tuning cache off: every candidate is timed), or None after saying so where
    there is no CUDA GPU."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=lambda s: parse_sizes(s)[0], default=(1024, 2048))
    ap.add_argument("--precision", default="fp16", choices=sorted(PRECISIONS))
    ap.add_argument("--iters", type=int, default=iters)
    if more_args is not None:
        more_args(ap)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"error: benchmarks/{script} needs a CUDA GPU", file=sys.stderr)
        return None
    torch.backends.cudnn.benchmark = True
    from ecmnet_core.ops import tuning

    tuning.CACHE_PATH = None
    return args


def main(argv=None):
    def sections(ap):
        ap.add_argument("--sections", default="depthwise,conv,resize",
                        help="comma-separated subset of depthwise,conv,resize (default: all)")

    args = kernel_bench_args(__doc__, "channels_last_ops.py", 100, argv, sections)
    if args is None:
        return 2
    from ecmnet_core.ops import tuning
    from ecmnet_core.ops.channels_last.triton import (CONV_PRELU_CANDIDATES, RESIZE_CANDIDATES, conv_prelu_triton,
                                                  depthwise_conv2d_triton, resize_bilinear_triton)

    dtype = PRECISIONS[args.precision]
    h, w = args.size
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"commit {git_commit()} | "
          f"torch {torch.__version__} | {args.precision}, batch 1, channels_last, {h}x{w} input, "
          f"us per call (CUDA graph of {REPEAT} calls)")
    print(f"{'calls':>5} {'C':>4} {'H':>5} {'W':>5} {'kernel':>6} {'dil':>6} {'shift':>5} | {'cuDNN':>8} "
          f"{'Triton':>8} {'ratio':>6} | max abs diff")
    wanted = set(args.sections.split(","))
    shapes = depthwise_shapes(args.size, dtype) if "depthwise" in wanted else {}
    totals = collections.defaultdict(float)
    for (c, fh, fw, kh, kw, dil), n in sorted(shapes.items(), key=lambda kv: -kv[1]):
        torch.manual_seed(c + fh)
        x = torch.randn(1, c, fh, fw, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c, 1, kh, kw, device="cuda", dtype=dtype) / (kh * kw) ** 0.5
        bias = torch.randn(c, device="cuda", dtype=dtype)
        pad = (dil[0] * (kh // 2), dil[1] * (kw // 2))
        ref = lambda: F.conv2d(x, weight, bias, 1, pad, dil, c)  # noqa: E731
        tri = lambda: depthwise_conv2d_triton(x, weight, bias, dil)  # noqa: E731
        diff = (ref().float() - tri().float()).abs().max().item()
        t_ref, t_tri = time_graph(ref, args.iters), time_graph(tri, args.iters)
        shift = kh * kw <= MAX_SHIFT_TAPS
        for key, t in (("cudnn", t_ref), ("triton", t_tri)):
            totals[key] += n * t
            if not shift:
                totals[key + "_noshift"] += n * t
        print(f"{n:>5} {c:>4} {fh:>5} {fw:>5} {f'{kh}x{kw}':>6} {f'{dil[0]},{dil[1]}':>6} "
              f"{'yes' if shift else 'no':>5} | {t_ref:>8.1f} {t_tri:>8.1f} {t_ref / t_tri:>6.2f} | {diff:.2e}",
              flush=True)
    if "depthwise" in wanted:
        print(f"per forward, all depthwise convs: cuDNN {totals['cudnn']:.0f} us, Triton {totals['triton']:.0f} us; "
              f"those not written as shifts when compiling: cuDNN {totals['cudnn_noshift']:.0f} us, "
              f"Triton {totals['triton_noshift']:.0f} us")

    # the conv + PReLU pairs: the stem's 3x3 at 1/2 resolution, EDAB's 3x1 (reduction merged in) and 1x3
    print(f"conv + PReLU (us per call): {'calls':>5} {'CI':>4} {'CO':>4} {'H':>5} {'W':>5} {'kernel':>6} | "
          f"{'cuDNN+PReLU':>11} | Triton (pixels/K chunk/warps) ... | tuned | max abs diff")
    totals = collections.defaultdict(float)
    shapes = conv_shapes(args.size, dtype) if "conv" in wanted else {}
    for (ci, fh, fw, co, kh, kw), n in sorted(shapes.items(), key=lambda kv: -kv[1]):
        torch.manual_seed(ci + fh)
        x = torch.randn(1, ci, fh, fw, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(co, ci, kh, kw, device="cuda", dtype=dtype) / (kh * kw * ci) ** 0.5
        bias, slopes = torch.randn(co, device="cuda", dtype=dtype), torch.rand(co, device="cuda", dtype=dtype) - 0.5
        weight_t = weight.permute(2, 3, 1, 0).reshape(kh * kw * ci, co).contiguous()
        pad = (kh // 2, kw // 2)
        eager = lambda: F.prelu(F.conv2d(x, weight, bias, 1, pad), slopes)  # noqa: E731
        t_eager = time_graph(eager, args.iters)
        cells = [f"{t_eager:>11.1f} |"]
        for config in CONV_PRELU_CANDIDATES:
            if config[0] == "cudnn":
                continue
            run = lambda: conv_prelu_triton(x, weight, weight_t, bias, slopes, config)  # noqa: E731
            try:
                cells.append(f"{'/'.join(map(str, config))} {time_graph(run, args.iters):.1f}")
            except ValueError:
                cells.append(f"{'/'.join(map(str, config))} -")
        tuned = lambda: conv_prelu_triton(x, weight, weight_t, bias, slopes)  # noqa: E731
        diff = (eager().float() - tuned().float()).abs().max().item()
        t_tuned = time_graph(tuned, args.iters)
        totals["cudnn"] += n * t_eager
        totals["tuned"] += n * t_tuned
        print(f"  {n:>5} {ci:>4} {co:>4} {fh:>5} {fw:>5} {f'{kh}x{kw}':>6} | {' '.join(cells)} | {t_tuned:.1f} | "
              f"{diff:.2e}", flush=True)
    if "conv" in wanted:
        print(f"per forward, conv + PReLU pairs: cuDNN + PReLU {totals['cudnn']:.0f} us, "
              f"tuned choice {totals['tuned']:.0f} us")

    if "resize" in wanted:
        logits = torch.randn(1, NUM_CLASSES, (h + 1) // 2, (w + 1) // 2, device="cuda", dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        eager = lambda: F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
        compiled_fn = torch.compile(lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False),
                                    dynamic=False)
        compiled = lambda: compiled_fn(logits)  # noqa: E731
        print(f"logits resize {NUM_CLASSES}x{logits.shape[2]}x{logits.shape[3]} -> {h}x{w}: eager "
              f"{time_graph(eager, args.iters):.1f} us, Inductor {time_graph(compiled, args.iters):.1f} us")
        for config in RESIZE_CANDIDATES:
            tri = lambda: resize_bilinear_triton(logits, (h, w), config)  # noqa: E731
            diff = (eager().float() - tri().float()).abs().max().item()
            print(f"  Triton {'/'.join(map(str, config)):<13} {time_graph(tri, args.iters):7.1f} us | max abs diff {diff:.2e}")
        resize_bilinear_triton(logits, (h, w))                  # what the engine runs: timed once, then kept
    print("launch configurations ops/tuning.py chose (the Triton columns above ran these):")
    for key, (best, timings) in tuning.chosen.items():
        cells = "  ".join(f"{'/'.join(map(str, cfg))}{'*' if cfg == best else ' '}"
                          f"{t * 1e3:.1f}" if isinstance(t, float) else f"{cfg}: {t[:40]}" for cfg, t in timings.items())
        print(f"  {key[0]:<17} {str(key[2]):<22} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
