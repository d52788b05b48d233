"""`auto` backend choice: fastest available on the current device.

Order on a GPU from benchmarks/ss2d.py (docs/benchmarks/ss2d.md, H100): our fused Triton
kernel `cuda` (2.5-3.1x faster than mamba-ssm with the PyTorch cross-scan/merge it needs), then
mamba-ssm when installed, then the PyTorch reference. On CPU only `reference` is worth
running (`sequential` is a test oracle; the ONNX-friendly `export` scan is for exporting).
"""
from __future__ import annotations

import torch

_GPU_ORDER = ("cuda", "mamba", "reference")
_CPU_ORDER = ("reference",)


def pick_auto(device: str | torch.device | None = None) -> str:
    """Name of the first backend in the preference order for `device` that loads here."""
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
