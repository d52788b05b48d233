"""Per-shape launch configurations for our Triton kernels, timed once on the GPU they run on.

Why: the best program size and warp count of these instruction- and memory-bound kernels
changes with the tensor's width and size (ECMNet runs the same EDAB kernels at 16-64 channels
on maps from 64x128 to 256x512 at 1024x2048 input). This is triton.autotune's idea with two
differences our kernels need: the timing launches write scratch outputs (the pooling kernel
accumulates with atomics, so re-running it on the real outputs would corrupt them), and nothing
is timed while a CUDA graph is being captured (a cached choice, else the default configuration,
is used then).

Timing: the GPU first runs a short spin kernel (torch.cuda._sleep), so that all the timed launches
are queued before any of them starts and the events measure GPU time. Without it the measurement
is the Python launch overhead (tens of us per launch, longer than these kernels): the H100 run of
2026-11-23 14:45 UTC (benchmarks/edab_fused.py) timed 35-340 us per launch for kernels that take
5-28 us in a profile, so its choices were noise.

Choices persist in a JSON file (CACHE_PATH: $ECMNET_KERNEL_CACHE, default
kernel_tuning.json in the cache root, ~/.cache/ecmnet or $ECMNET_CACHE; "" turns it off), keyed by GPU
name, torch and Triton versions and the kernel's key, as Triton's autotuning cache does: a restarted node compiles only the chosen
configuration of each kernel instead of timing every candidate again. A file that cannot be read
is ignored (with a warning) and rewritten; writes are atomic.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Hashable, Optional, Sequence

import torch

from ..utils.paths import cache_root

ENABLED = True          # False: always the default configuration (reproducible launches)
REPEATS = 10
SPIN_CYCLES = 5_000_000   # ~3 ms on an H100: longer than queueing REPEATS launches from Python
_env = os.environ.get("ECMNET_KERNEL_CACHE")
CACHE_PATH: Optional[Path] = (cache_root() / "kernel_tuning.json" if _env is None
                              else Path(_env) if _env else None)
FROM_CACHE = "read from the tuning cache"     # the timings entry of a configuration taken from the file

# key -> (chosen configuration, {configuration: ms per launch or the reason it could not run})
chosen: Dict[Hashable, tuple] = {}


def pick(key: Hashable, candidates: Sequence, launch: Callable, default, on_gpu: bool = True):
    """The fastest of `candidates` for `key` (timed on first use); launch(config) runs the kernel
    once on scratch outputs. `default` where tuning is off or not on a GPU, and while a graph is
    capturing unless the cache file has a choice."""
    if key in chosen:
        return chosen[key][0]
    if not (ENABLED and on_gpu):
        return default
    cached = _cached(key, candidates)     # no GPU work: usable while a graph is being captured too
    if cached is not None:
        chosen[key] = (cached, {cached: FROM_CACHE})
        return cached
    if torch.cuda.is_current_stream_capturing():
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
    if best_ms < float("inf"):
        _store(key, best)
    return best


def pick_for(name: str, x: torch.Tensor, extra, candidates: Sequence, launch: Callable, default):
    """pick() keyed by the kernel's name, its input's dtype, shape and strides, and `extra` (whatever
    else its launch depends on); timed only for CUDA inputs."""
    return pick((name, x.dtype, tuple(x.shape), tuple(x.stride()), extra), candidates, launch, default,
                on_gpu=x.is_cuda)


def _file_key(key) -> str:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton_version} | {key!r}"


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def _read() -> dict:
    if CACHE_PATH is None or not CACHE_PATH.is_file():
        return {}
    try:
        data = json.loads(CACHE_PATH.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        warnings.warn(f"kernel tuning cache {CACHE_PATH} unreadable ({exc}); timing again and rewriting it")
        return {}


def _cached(key, candidates):
    """The stored choice for key if it is still one of the candidates, else None."""
    if CACHE_PATH is None:
        return None
    value = _read().get(_file_key(key))
    cfg = _tuple(value) if value is not None else None
    return cfg if cfg is not None and cfg in tuple(candidates) else None


def _store(key, cfg):
    if CACHE_PATH is None:
        return
    data = _read()
    data[_file_key(key)] = cfg          # tuples are written as JSON lists; _tuple reads them back
    tmp = None
    try:
        CACHE_PATH.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=CACHE_PATH.parent, prefix=CACHE_PATH.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, CACHE_PATH)
    except OSError as exc:       # a read-only home must not stop inference
        warnings.warn(f"kernel tuning cache {CACHE_PATH} not written ({exc})")
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
