"""CPU latency of ECMNet at CamVid size: what `ecmnet-predict` and the node pay per frame on a CPU.

Times `SegmentationEngine.infer` (uint8 frame in, uint8 mask out: pre-processing, network,
argmax) on real CamVid val frames, one frame at a time, per way of running the network:
  plain        the checkpoint's model called eagerly (no engine rewrites): the floor to beat
  engine       SegmentationEngine defaults (what predict / the node run on a CPU)
  engine-nchw  the same with channels_last=False
  onnxruntime  the ONNX file from `ecmnet-export` (exported here to a temporary file)
  aoti         an AOTInductor package (--package, from `ecmnet-export --aoti --device cpu`)
All rows are measured in one run, interleaved round by round so that load from other processes
hits every row alike. The ratios against `plain` are the portable numbers (the absolute ones
depend on the host). `--check` exits 1 when the engine default is slower than plain by more
than --tolerance: the regression guard for the CPU path.

    python -m benchmarks.cpu_latency --threads 2                       # 360x480, 2 threads
    python -m benchmarks.cpu_latency --threads 2 --package camvid_cpu.pt2 --check
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import cpu_name, git_commit  # noqa: E402

CAMVID_VAL = REPO.parent / "shared" / "datasets" / "camvid" / "val"


def load_frames(folder: Path, n: int, size):
    """n real frames (RGB uint8) resized to size; random smooth images when the folder is absent."""
    import cv2

    files = sorted(folder.glob("*.png"))[:n] if folder.is_dir() else []
    frames = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is not None:
            frames.append(np.ascontiguousarray(cv2.resize(bgr, (size[1], size[0]))[:, :, ::-1]))
    rng = np.random.default_rng(0)
    while len(frames) < n:
        small = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
        frames.append(np.ascontiguousarray(cv2.resize(small, (size[1], size[0]))))
    return frames, ("CamVid val" if files else "random")


class PlainRunner:
    """The checkpoint's eager model with the engine's normalisation: no rewrites."""

    def __init__(self, weights):
        import torch

        from ecmnet_core.runtime.checkpoint import load_model

        self.model, meta = load_model(weights)
        self.model.eval()
        self.mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(meta["std"]).view(1, 3, 1, 1) * 255

    def __call__(self, frame):
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
            return self.model((x - self.mean) / self.std).argmax(1)[0].to(torch.uint8).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(REPO / "ecmnet_core" / "weights" / "ecmnet_camvid.pt"))
    ap.add_argument("--size", default="360x480")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8, help="distinct frames (cycled)")
    ap.add_argument("--rounds", type=int, default=12, help="timed calls per row")
    ap.add_argument("--rows", default="plain,engine,engine-nchw,onnxruntime,aoti")
    ap.add_argument("--package", default=None, help=".pt2 for the aoti row (ecmnet-export --aoti --device cpu)")
    ap.add_argument("--check", action="store_true", help="exit 1 if engine p50 > plain p50 x (1 + --tolerance)")
    ap.add_argument("--tolerance", type=float, default=0.10)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from ecmnet_core.runtime.engine import SegmentationEngine

    h, w = (int(v) for v in args.size.lower().split("x"))
    frames, source = load_frames(CAMVID_VAL, args.frames, (h, w))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    runners, masks = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            if row == "plain":
                runners[row] = PlainRunner(args.weights)
            elif row == "engine":
                eng = SegmentationEngine(args.weights, device="cpu", input_size=(h, w))
                runners[row] = lambda f, e=eng: e.infer(f).mask
            elif row == "engine-nchw":
                eng = SegmentationEngine(args.weights, device="cpu", input_size=(h, w), channels_last=False)
                runners[row] = lambda f, e=eng: e.infer(f).mask
            elif row == "onnxruntime":
                from ecmnet_core.cli.export import main as export_main

                onnx_path = Path(tmp) / "model.onnx"
                with open(os.devnull, "w") as devnull:
                    stdout, sys.stdout = sys.stdout, devnull
                    try:
                        status = export_main(["--weights", args.weights, "--onnx", str(onnx_path), "--size", args.size])
                    finally:
                        sys.stdout = stdout
                if status != 0:
                    print("onnxruntime row skipped: export failed")
                    continue
                from ecmnet_core.runtime.onnx import OnnxRuntimeNetwork
                eng = SegmentationEngine(str(onnx_path), device="cpu")
                eng._network = OnnxRuntimeNetwork(onnx_path, eng.device, threads=args.threads)
                runners[row] = lambda f, e=eng: e.infer(f).mask
            elif row == "aoti":
                if not args.package:
                    print("aoti row skipped: no --package")
                    continue
                eng = SegmentationEngine(args.package, device="cpu")
                runners[row] = lambda f, e=eng: e.infer(f).mask
        times = {r: [] for r in runners}
        for name, run in runners.items():          # warm-up, and the masks each row gives
            masks[name] = [run(f) for f in frames[:2]]
        for i in range(args.rounds):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(frames[i % len(frames)])
                times[name].append(time.perf_counter() - t0)

    print(f"# CPU latency, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {git_commit()}")
    print(f"# {cpu_name()} x{os.cpu_count()}, torch {torch.__version__}, {args.threads} threads, "
          f"{h}x{w} {source} frames, {args.rounds} timed calls per row (interleaved), load average "
          f"{os.getloadavg()[0]:.2f}")
    base = np.median(times["plain"]) if "plain" in times else None
    print(f"{'row':<12} {'p50 ms':>8} {'p90 ms':>8} {'vs plain':>9} {'mask = plain':>12}")
    for name, t in times.items():
        a = np.asarray(t) * 1000
        ratio = f"{np.median(t) / base:.2f}x" if base else ""
        agree = ""
        if "plain" in masks and name != "plain":
            agree = f"{100 * np.mean([(m == p).mean() for m, p in zip(masks[name], masks['plain'])]):.2f}%"
        print(f"{name:<12} {np.percentile(a, 50):>8.1f} {np.percentile(a, 90):>8.1f} {ratio:>9} {agree:>12}")
    if args.check and base and "engine" in times:
        ratio = np.median(times["engine"]) / base
        if ratio > 1 + args.tolerance:
            print(f"REGRESSION: engine default is {ratio:.2f}x the plain model (limit {1 + args.tolerance:.2f}x)")
            return 1
        print(f"check: engine default {ratio:.2f}x the plain model (limit {1 + args.tolerance:.2f}x): ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
