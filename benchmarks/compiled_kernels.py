"""Every GPU kernel of a compiled forward: where ECMNet's and ERFNet's time goes.

    PYTHONPATH=. python benchmarks/compiled_kernels.py --out DIR [--models ECMNet,ERFNet]
        [--inductor max_autotune=True ...] [--channels-last-kernels] [--fused-edab]
    python benchmarks/compiled_kernels.py --summarize DIR/kernels_ECMNet.txt

Each model is prepared exactly as in `benchmarks/inference.py --compiled` (BN folded,
channels_last, fp16, ECMNet with its inference rewrites and depthwise shifts), compiled
with torch.compile(dynamic=False), timed as a CUDA graph at 1024x2048 (p50/p99 of 100
forwards after 10 warm-up), then profiled for 10 forwards. DIR/kernels_<model>.txt gets
one line per kernel name, whole (benchmarks/inference.py --profile truncates names):
us per forward, calls per forward, us per call. --summarize groups such a table into
cuDNN / cuBLAS / Inductor pointwise, reductions and templates / our own kernels.
"""
from __future__ import annotations

import argparse
import ast
import collections
import copy
import datetime as dt
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inference import NUM_CLASSES, prepare, time_network  # noqa: E402
from benchmarks.peers import PEERS  # noqa: E402
from benchmarks.provenance import git_commit  # noqa: E402
from ecmnet_core.model import ECMNet  # noqa: E402

SIZE = (1024, 2048)
PRECISION = "fp16"


def kernel_table(model, path: Path, forwards: int = 10):
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(1, 3, *SIZE, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(forwards):
                model(x)
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name = {}
    for e in kernels:
        n, t = by_name.get(e.name, (0, 0.0))
        by_name[e.name] = (n + 1, t + e.device_time)
    with open(path, "w") as f:
        for name, (n, t) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
            f.write(f"{t / forwards:9.1f} {n / forwards:5.1f} {t / n:8.1f}  {name}\n")
    print(f"  {len(kernels) / forwards:.0f} kernels, {sum(e.device_time for e in kernels) / 1e3 / forwards:.3f} ms "
          f"GPU per forward -> {path}", flush=True)


def category(name: str) -> str:
    if any(k in name for k in ("xmma", "cutlass", "conv2d_c1", "cudnn", "nhwcAddPadding", "convolve_common")):
        return "cuDNN convolutions"
    if "nvjet" in name or "gemm" in name.lower():
        return "cuBLAS matmuls"
    if name.startswith("triton_tem"):
        return "Inductor matmul/conv templates (max_autotune)"
    if name.startswith("triton_poi"):
        return "Inductor pointwise"
    if name.startswith(("triton_red", "triton_per")):
        return "Inductor reductions"
    return name.split("(")[0].split("<")[0].strip()[:60]


def summarize(path: Path):
    groups = collections.defaultdict(lambda: [0.0, 0.0])
    for line in path.read_text().splitlines():
        us, calls, _per, name = line.split(None, 3)
        groups[category(name)][0] += float(us)
        groups[category(name)][1] += float(calls)
    total = sum(us for us, _ in groups.values())
    print(f"{path}: {total:.0f} us of GPU time per forward")
    print(f"{'us/forward':>10} {'calls':>6} {'share':>6}  group")
    for name, (us, calls) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f"{us:>10.1f} {calls:>6.0f} {us / total:>6.1%}  {name}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--models", default="ECMNet,ERFNet", help=f"comma list of ECMNet, {', '.join(PEERS)}")
    ap.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--channels-last-kernels", action="store_true", help="ECMNet: engine option of that name")
    ap.add_argument("--fused-edab", action="store_true", help="ECMNet: engine option fused_edab")
    ap.add_argument("--summarize", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.summarize:
        for path in args.summarize:
            summarize(path)
        return 0
    unknown = set(args.models.split(",")) - {"ECMNet", *PEERS}
    if unknown:
        print(f"error: unknown models {sorted(unknown)}; choose from ECMNet, {', '.join(PEERS)}", file=sys.stderr)
        return 2
    if args.out is None or not torch.cuda.is_available():
        print("error: needs --out DIR and a CUDA GPU (or --summarize TABLE)", file=sys.stderr)
        return 2
    import torch._inductor.config as inductor_config

    for item in args.inductor:
        key, _, value = item.partition("=")
        setattr(inductor_config, key, ast.literal_eval(value))
        print(f"torch._inductor.config.{key} = {getattr(inductor_config, key)!r}")
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"commit {git_commit()} | "
          f"torch {torch.__version__} | {SIZE[0]}x{SIZE[1]} {PRECISION}, batch 1, compiled + CUDA graph")
    for name in args.models.split(","):
        torch.manual_seed(0)
        ecm = name == "ECMNet"
        src = (ECMNet(num_classes=NUM_CLASSES, ss2d_backend="cuda") if ecm else PEERS[name].cls(NUM_CLASSES)).eval()
        t0 = time.perf_counter()
        options = dict(channels_last_kernels=args.channels_last_kernels, fused_edab=args.fused_edab) if ecm else {}
        model = torch.compile(prepare(copy.deepcopy(src), PRECISION, ecmnet=ecm, shifts=ecm, options=options),
                              dynamic=False)
        r = time_network(model, SIZE, PRECISION, 100, 10)
        print(f"{name}: p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms ({r['mode']}; compile + timing "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        kernel_table(model, args.out / f"kernels_{name}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
