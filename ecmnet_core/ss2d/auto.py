"""`auto` backend choice: fastest available on the current device."""
from __future__ import annotations

import torch

# Preference order measured by benchmarks/ss2d.py (see docs/benchmarks.md).
_GPU_ORDER = ("cuda", "mamba", "reference")
_CPU_ORDER = ("reference",)


def pick_auto(device: str | None = None) -> str:
    from . import BackendUnavailable, _LOADERS

    on_gpu = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    for name in _GPU_ORDER if on_gpu else _CPU_ORDER:
        if name not in _LOADERS:
            continue
        try:
            _LOADERS[name][0]()
            return name
        except BackendUnavailable:
            continue
    return "reference"
