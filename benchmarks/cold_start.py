"""Cold start: process start -> first mask, and the steady latency right after, per way of loading.

Each case runs in a fresh Python process (imports included), as a restarted node would:
  checkpoint   SegmentationEngine(model.pt)                     eager PyTorch
  compiled     SegmentationEngine(model.pt, compile=True)       torch.compile at start (CUDA only)
  aoti         SegmentationEngine(model.pt2)                    the `ecmnet-export --aoti` package
"first mask" is the first `engine.infer` on a real-size frame returning; "steady p50" is the
median of the next --frames calls (so a path that is slow until warm shows it). Masks of every
case are compared with the checkpoint's.

    python -m benchmarks.cold_start --weights ecmnet_core/weights/ecmnet_camvid.pt \\
        --package camvid_cpu.pt2 --device cpu --size 360x480 --threads 2
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import git_commit  # noqa: E402

CHILD = r"""
import json, sys, time
t0 = float(sys.argv[1]); args = json.loads(sys.argv[2])
import numpy as np, torch
if args["threads"]:
    torch.set_num_threads(args["threads"])
from ecmnet_core.runtime.engine import SegmentationEngine
from benchmarks.node_latency import test_image
frame = test_image(*args["image"])
imported = time.time() - t0
engine = SegmentationEngine(args["weights"], device=args["device"], precision=args["precision"],
                            input_size=args["size"], compile=args["compile"])
loaded = time.time() - t0
mask = engine.infer(frame).mask
if engine.device.type == "cuda":
    torch.cuda.synchronize()
first = time.time() - t0
times = []
for _ in range(args["frames"]):
    s = time.perf_counter(); engine.infer(frame); times.append(time.perf_counter() - s)
np.save(args["mask_out"], mask)
print("RESULT " + json.dumps({"imported_s": imported, "loaded_s": loaded, "first_mask_s": first,
                              "steady_p50_ms": 1000 * float(np.median(times)), "runtime": engine.runtime}))
"""


def device_text(device: str) -> str:
    import torch
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU {platform.machine()} x{os.cpu_count()} (torch {torch.__version__})"


def run_case(name, weights, compile_, args, workdir):
    import time

    import numpy as np

    mask_out = str(Path(workdir) / f"{name}.npy")
    payload = dict(weights=str(weights), device=args.device, precision=args.precision,
                   size=list(args.size) if args.size else None, compile=compile_, frames=args.frames,
                   threads=args.threads, image=list(args.image or args.size or (360, 480)), mask_out=mask_out)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, repr(t0), json.dumps(payload)], cwd=REPO,
                          capture_output=True, text=True, timeout=args.timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        return {"case": name, "error": f"exit {proc.returncode}: {tail}"}
    result = dict(json.loads(lines[-1][7:]), case=name)
    result["mask"] = np.load(mask_out)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(REPO / "ecmnet_core" / "weights" / "ecmnet_camvid.pt"))
    ap.add_argument("--package", default=None, help=".pt2 from ecmnet-export --aoti (case aoti)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", help="for the checkpoint cases (the package fixes its own)")
    ap.add_argument("--size", type=lambda s: tuple(int(v) for v in s.lower().split("x")), default=None,
                    help="network HxW for the checkpoint cases (the package fixes its own)")
    ap.add_argument("--image", type=lambda s: tuple(int(v) for v in s.lower().split("x")), default=None,
                    help="frame HxW (default: --size, else 360x480)")
    ap.add_argument("--cases", default="checkpoint,compiled,aoti")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import numpy as np

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    is_cuda = args.device.startswith("cuda") or (args.device == "auto" and __import__("torch").cuda.is_available())
    print(f"# cold start, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {git_commit()}")
    print(f"# device: {device_text(args.device)}; threads {args.threads or 'default'}; frame "
          f"{'x'.join(map(str, args.image or args.size or (360, 480)))}")
    results = []
    with tempfile.TemporaryDirectory() as work:
        for case in cases:
            if case == "compiled" and not is_cuda:
                print("compiled    skipped (torch.compile at start is the CUDA path)")
                continue
            if case == "aoti" and not args.package:
                print("aoti        skipped (no --package)")
                continue
            weights = args.package if case == "aoti" else args.weights
            results.append(run_case(case, weights, case == "compiled", args, work))
    base = next((r for r in results if r["case"] == "checkpoint" and "mask" in r), None)
    print(f"{'case':<11} {'imports s':>9} {'engine ready s':>14} {'first mask s':>12} {'steady p50 ms':>13} "
          f"{'mask = checkpoint':>17}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:<11} failed: {r['error']}")
            continue
        agree = "" if base is None or r["mask"].shape != base["mask"].shape else \
            f"{100 * float((r['mask'] == base['mask']).mean()):.3f}%"
        print(f"{r['case']:<11} {r['imported_s']:>9.2f} {r['loaded_s']:>14.2f} {r['first_mask_s']:>12.2f} "
              f"{r['steady_p50_ms']:>13.2f} {agree:>17}")
    if args.json:
        clean = [{k: v for k, v in r.items() if k != "mask"} for r in results]
        args.json.write_text(json.dumps(clean, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
