"""Import of our Triton kernel modules where they can run: Triton installed and a CUDA device.

Why one place: the fused DDA, channels_last and fused-EDAB dispatchers all import their
kernels this way and fall back to PyTorch when the import is impossible or fails (a Triton
too old for the kernels' language features warns once, with the reason).
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings

import torch


def load_kernels(module: str, what: str):
    """ecmnet_core.ops.<module> (e.g. "dda.triton"), or None (with a warning naming `what` if the import itself failed)."""
    if importlib.util.find_spec("triton") is None or not torch.cuda.is_available():
        return None
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except Exception as exc:  # noqa: BLE001 - any failure means: PyTorch instead
        warnings.warn(f"{what} unavailable ({type(exc).__name__}: {exc}); using PyTorch ops")
        return None
