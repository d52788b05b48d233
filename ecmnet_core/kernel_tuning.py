"""Per-shape launch configurations for our Triton kernels, timed once on the GPU they run on.

Why: the best program size and warp count of these instruction- and memory-bound kernels
changes with the tensor's width and size (ECMNet runs the same EDAB kernels at 16-64 channels
on maps from 64x128 to 256x512 at 1024x2048 input). This is triton.autotune's idea with two
differences our kernels need: the timing launches write scratch outputs (the pooling kernel
accumulates with atomics, so re-running it on the real outputs would corrupt them), and nothing
is timed while a CUDA graph is being captured (the default configuration is used then).

Timing: the GPU first runs a short spin kernel (torch.cuda._sleep), so that all the timed launches
are queued before any of them starts and the events measure GPU time. Without it the measurement
is the Python launch overhead (tens of us per launch, longer than these kernels): the H100 run of
2026-11-23 14:45 UTC (benchmarks/edab_fused.py) timed 35-340 us per launch for kernels that take
5-28 us in a profile, so its choices were noise.
"""
from __future__ import annotations

from typing import Callable, Dict, Hashable, Sequence

import torch

ENABLED = True          # False: always the default configuration (reproducible launches)
REPEATS = 10
SPIN_CYCLES = 5_000_000   # ~3 ms on an H100: longer than queueing REPEATS launches from Python

# key -> (chosen configuration, {configuration: ms per launch or the reason it could not run})
chosen: Dict[Hashable, tuple] = {}


def pick(key: Hashable, candidates: Sequence, launch: Callable, default, on_gpu: bool = True):
    """The fastest of `candidates` for `key` (timed on first use); launch(config) runs the kernel
    once on scratch outputs. `default` where tuning is off, not on a GPU, or a graph is capturing."""
    if key in chosen:
        return chosen[key][0]
    if not (ENABLED and on_gpu) or torch.cuda.is_current_stream_capturing():
        return default
    timings, best, best_ms = {}, default, float("inf")
    for cfg in candidates:
        try:
            launch(cfg)                       # compiles and warms up
        except Exception as exc:  # noqa: BLE001 - e.g. too many registers/shared memory: not a candidate
            timings[cfg] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(SPIN_CYCLES)        # the launches below queue up behind it
        start.record()
        for _ in range(REPEATS):
            launch(cfg)
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end) / REPEATS
        timings[cfg] = ms
        if ms < best_ms:
            best, best_ms = cfg, ms
    chosen[key] = (best, timings)
    return best
