"""Does the engine run slower on a worker thread (as in the node) than on the main thread?

The node decodes on its executor thread and infers on a worker thread. On a CPU, OpenMP teams are
per calling thread, so this checks that moving inference off the main thread costs nothing:
calls alternate main / worker, one at a time, so host drift hits both alike.

    python benchmarks/thread_penalty.py [--size 360x480] [--calls 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="360x480")
    ap.add_argument("--calls", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args(argv)
    import torch

    from ecmnet_core.runtime.engine import SegmentationEngine

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    engine = SegmentationEngine(args.weights, device="cpu", input_size=(h, w))
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    jobs, done = queue.Queue(), queue.Queue()

    def timed():
        t0 = time.perf_counter()
        engine.infer(img, color=True)
        return time.perf_counter() - t0

    def worker():
        while jobs.get() is not None:
            done.put(timed())

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()

    def on_worker():
        jobs.put(1)
        return done.get()

    for _ in range(2):
        timed(), on_worker()
    main_t, worker_t = [], []
    for _ in range(args.calls):
        main_t.append(timed())
        worker_t.append(on_worker())
    jobs.put(None)
    m, k = 1000 * np.median(main_t), 1000 * np.median(worker_t)
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {args.size}, {args.threads} threads, "
          f"{args.calls} calls each: main thread p50 {m:.1f} ms, worker thread p50 {k:.1f} ms ({k / m:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
