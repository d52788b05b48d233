"""`auto` backend choice: fastest available on the current device.

Order on a GPU from benchmarks/ss2d.py (docs/benchmarks/ss2d.md): mamba-ssm (when
installed), then the PyTorch reference. Our `cuda` kernel is left out of `auto` until
test/test_ss2d_backends.py and the benchmark have passed with it on the device (its backward
and half-precision paths are verified only under the Triton interpreter so far); it is then
meant to go first. On CPU only `reference` is worth running (`sequential` is a test oracle;
the ONNX-friendly `export` scan is for exporting).
"""
from __future__ import annotations

import torch

_GPU_ORDER = ("mamba", "reference")
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
