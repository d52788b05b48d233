"""Peak memory of one segmentation at native resolution, per input size: what the default pixel cap
(`--max-pixels` / `max_input_pixels`, ecmnet_core/runtime/images.py) is chosen against.

Each size runs in a fresh process (peak RSS on CPU, peak allocated CUDA memory on a GPU), as
ecmnet-predict does it: SegmentationEngine at the image's own size, mask + colour.

    python benchmarks/input_memory.py                          # CPU, shipped weights
    python benchmarks/input_memory.py --device cuda --sizes 1080x1920,2160x3840
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from ecmnet_core.runtime.engine import SegmentationEngine
h, w, device, weights = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
engine = SegmentationEngine(weights, device=device)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
engine.infer(np.zeros((h, w, 3), np.uint8), color=True)
seconds = time.perf_counter() - t
out = {"rss_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
       "rss_before_gb": base / 1e6, "seconds": seconds}
if engine.device.type == "cuda":
    out["cuda_peak_gb"] = torch.cuda.max_memory_allocated(engine.device) / 1e9
print(json.dumps(out))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1080x1920,2048x4096,2160x3840",
                   help="comma-separated HxW (default: 1080p, the default cap 4096x2048, 4K UHD)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default="")
    args = p.parse_args(argv)
    print(f"{'input':>11} | {'megapixels':>10} | {'peak RSS GB':>11} | {'GB / MP':>7} | {'CUDA peak GB':>12} | seconds")
    for text in args.sizes.split(","):
        h, w = (int(v) for v in text.lower().split("x"))
        done = subprocess.run([sys.executable, "-c", CHILD, str(h), str(w), args.device, args.weights],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(f"{h:>5}x{w:<5} | failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        mp = h * w / 1e6
        cuda = f"{r['cuda_peak_gb']:.2f}" if "cuda_peak_gb" in r else "-"
        print(f"{h:>5}x{w:<5} | {mp:>10.2f} | {r['rss_peak_gb']:>11.2f} | "
              f"{(r['rss_peak_gb'] - r['rss_before_gb']) / mp:>7.2f} | {cuda:>12} | {r['seconds']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
