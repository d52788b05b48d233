"""CPU inference when other processes compete for the cores, as on a robot's computer.

PyTorch's CPU kernels run on an OpenMP team (libgomp in the PyPI wheels). By default its threads
spin at every barrier before they sleep; when another process holds one of the cores, the team
waits at each of ECMNet's hundreds of small parallel regions for the descheduled thread's next time
slice. This measures `SegmentationEngine.infer` (360x480 CamVid val frames, colour mask as the node
publishes it) per OpenMP setting, on a quiet host and with --busy processes beside it: plain Python
spin loops (`--busy-kind spin`), or other PyTorch processes running convolutions with their default
threads (`--busy-kind torch`: another CPU perception node, the worst case for spinning teams):

  default   what torch does unless told otherwise (OMP_WAIT_POLICY unset)
  passive   OMP_WAIT_POLICY=PASSIVE: threads sleep at once at a barrier
  spin10k   GOMP_SPINCOUNT=10000: spin briefly, then sleep
  1thread   torch.set_num_threads(1): no team to wait for

Each (load, setting) runs in a fresh process (libgomp reads its environment once, at load).

    python -m benchmarks.cpu_contention                 # threads = cores, 1 busy process
    python -m benchmarks.cpu_contention --busy 1 --frames 12 --threads 2
    python -m benchmarks.cpu_contention --busy 1 --busy-kind torch
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import cpu_name, git_commit  # noqa: E402

SETTINGS = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "1thread": {},
}
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
BUSY = {
    "spin": "while True: pass",
    "torch": ("import torch\nx = torch.randn(1, 32, 180, 240)\nc = torch.nn.Conv2d(32, 32, 3, padding=1)\n"
              "with torch.no_grad():\n    while True: c(x)"),
}


def child(args) -> None:
    """Time one setting in this process; print one JSON line of per-frame milliseconds."""
    import torch

    from benchmarks.cpu_latency import CAMVID_VAL, load_frames
    from ecmnet_core.runtime.engine import SegmentationEngine

    torch.set_num_threads(args.threads)
    frames, _ = load_frames(CAMVID_VAL, args.frames, (360, 480))
    engine = SegmentationEngine(weights=args.weights, device="cpu")
    engine.infer(frames[0], color=True)                 # warm-up
    times = []
    for frame in frames:
        t0 = time.perf_counter()
        engine.infer(frame, color=True)
        times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"ms": times}))


def run_setting(name: str, args) -> list:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(SETTINGS[name])
    threads = 1 if name == "1thread" else args.threads
    cmd = [sys.executable, "-m", "benchmarks.cpu_contention", "--child", "--threads", str(threads),
           "--frames", str(args.frames)] + (["--weights", args.weights] if args.weights else [])
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"error: setting {name} failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["ms"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--busy", type=int, default=1, help="competing processes beside it in the loaded rows")
    ap.add_argument("--busy-kind", choices=sorted(BUSY), default="spin")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--weights", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown or args.threads < 1 or args.busy < 0 or args.frames < 1:
        print(f"error: settings must be among {', '.join(SETTINGS)}; threads, frames >= 1, busy >= 0", file=sys.stderr)
        return 2
    print(f"# CPU inference under contention, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"commit {git_commit()}")
    print(f"# {cpu_name()} x{os.cpu_count()}; torch threads {args.threads}; 360x480 CamVid val, colour mask; "
          f"{args.frames} frames per row; loaded rows: {args.busy} competing process(es) ({args.busy_kind}); "
          f"load average before {os.getloadavg()[0]:.2f}")
    print("| load | setting | median ms | p90 ms | max ms |")
    print("|---|---|---|---|---|")
    results = {}
    for load in (0, args.busy):
        busy = [subprocess.Popen([sys.executable, "-c", BUSY[args.busy_kind]]) for _ in range(load)]
        time.sleep(3.0 if load and args.busy_kind == "torch" else 0.0)      # its torch import
        try:
            for name in names:
                ms = np.asarray(run_setting(name, args))
                results[(load, name)] = ms
                print(f"| {load} busy | {name} | {np.median(ms):.0f} | {np.percentile(ms, 90):.0f} | "
                      f"{ms.max():.0f} |", flush=True)
        finally:
            for p in busy:
                p.kill()
                p.wait()
        if args.busy == 0:
            break
    if "default" in names and args.busy:
        quiet = np.median(results[(0, "default")])
        print(f"# median vs quiet default ({quiet:.0f} ms): " + ", ".join(
            f"{load} busy {name} {np.median(ms) / quiet:.2f}x" for (load, name), ms in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
