"""The fused EDAB kernels at ECMNet's shapes: per-shape launch configurations and per-stage time.

    PYTHONPATH=. python benchmarks/edab_fused.py [--size 1024x2048] [--precision fp16]
        [--extra-candidates 512/1/1,1024/2/4]

Builds ECMNet with optimize_for_inference(fused_edab=True) at --size, batch 1, channels_last,
runs one forward (which times every candidate launch configuration of edab_vertical, edab_pool
and edab_finish per shape, ecmnet_core/ops/tuning.py) and prints those timings, then each
fused stage's whole forward (its cuDNN convs, the three kernels and the DDA kernel per block)
in a CUDA graph of back-to-back calls, microseconds per call.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.channels_last_ops import kernel_bench_args  # noqa: E402
from benchmarks.dda_gate import REPEAT, time_graph  # noqa: E402
from benchmarks.inference import NUM_CLASSES  # noqa: E402
from benchmarks.provenance import git_commit  # noqa: E402
from ecmnet_core.ops import tuning  # noqa: E402
from ecmnet_core.inference.fused_edab import FusedEDABStage  # noqa: E402
from ecmnet_core.runtime.engine import PRECISIONS  # noqa: E402
from ecmnet_core.inference.rewrites import optimize_for_inference  # noqa: E402
from ecmnet_core.model import ECMNet  # noqa: E402


def _fmt(v):
    return f"{v * 1e3:8.1f}" if isinstance(v, float) else f"  failed ({v[:60]})"


def launch_configs(text: str):
    """'E/W/R,...' (elements per program / warps / rows per program) as configuration tuples."""
    try:
        configs = tuple(tuple(int(v) for v in item.split("/")) for item in text.split(",") if item.strip())
    except ValueError:
        configs = ()
    if not configs or any(len(c) != 3 or c[0] < 16 or c[1] not in (1, 2, 4, 8, 16) or c[2] < 0 for c in configs):
        raise argparse.ArgumentTypeError(f"expected elements/warps/rows[,...] such as 512/1/1,1024/2/4 (warps 1, 2, "
                                         f"4, 8 or 16; rows 0 = enough programs to fill the GPU), got {text!r}")
    return configs


def _more_args(ap):
    ap.add_argument("--extra-candidates", type=launch_configs, default=(),
                    help="also time these launch configurations, e.g. 512/1/1,1024/2/4 (elements per program / "
                         "warps / rows per program)")


def main(argv=None):
    args = kernel_bench_args(__doc__, "edab_fused.py", 50, argv, _more_args)
    if args is None:
        return 2
    if args.extra_candidates:
        from ecmnet_core.ops.edab import triton as edab_triton

        edab_triton.CANDIDATES += tuple(c for c in args.extra_candidates if c not in edab_triton.CANDIDATES)
    dtype = PRECISIONS[args.precision]
    h, w = args.size
    model = optimize_for_inference(ECMNet(num_classes=NUM_CLASSES).eval(), fused_edab=True)
    model = model.to("cuda", dtype).to(memory_format=torch.channels_last)
    inputs = {}

    def keep_input(module, a, _out):
        inputs[module] = a[0]

    stages = [m for m in model.modules() if type(m) is FusedEDABStage]
    for s in stages:
        s.register_forward_hook(keep_input)
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"commit {git_commit()} | "
          f"torch {torch.__version__} | {args.precision}, batch 1, channels_last, {h}x{w} input")
    with torch.inference_mode():
        model(torch.randn(1, 3, h, w, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last))
        print("launch configurations (elements per program / warps / rows per program, 0: enough programs to "
              "fill the GPU): us per launch, chosen marked *")
        for key, (best, timings) in tuning.chosen.items():
            name, _, shape, _, extra = key
            cells = "  ".join(f"{'/'.join(map(str, cfg))}{'*' if cfg == best else ' '}{_fmt(t)}"
                              for cfg, t in timings.items())
            print(f"  {name:<13} {str(tuple(shape)):<22} {str(extra):<12} {cells}")
        print(f"per stage (CUDA graph of {REPEAT} calls), us per call:")
        total = 0.0
        for i, s in enumerate(stages):
            x = inputs[s]
            t = time_graph(lambda: s(x), args.iters)
            total += t
            print(f"  stage {i}: {len(s.stage)} blocks, input {tuple(x.shape)}: {t:8.1f}")
        print(f"all {len(stages)} fused stages: {total:.1f} us per forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
