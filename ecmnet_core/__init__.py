"""ECMNet: lightweight CNN + Mamba (SS2D) semantic segmentation.

The public API, imported on first use so that `import ecmnet_core` stays light (no torch):

    ECMNet, ECMNetConfig, count_parameters   the network (ecmnet_core.model)
    load_model, save_checkpoint, read_checkpoint, DEFAULT_WEIGHTS   checkpoints (ecmnet_core.runtime.checkpoint)
    SegmentationEngine                       image in, mask out (ecmnet_core.runtime.engine)
    optimize_for_inference                   same-output rewrites for speed (ecmnet_core.inference)

The package map (which subpackage owns what, and the import direction) is in docs/architecture.md.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "ECMNet": "model",
    "ECMNetConfig": "model",
    "count_parameters": "model",
    "load_model": "runtime.checkpoint",
    "save_checkpoint": "runtime.checkpoint",
    "read_checkpoint": "runtime.checkpoint",
    "DEFAULT_WEIGHTS": "runtime.checkpoint",
    "SegmentationEngine": "runtime.engine",
    "optimize_for_inference": "inference",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value            # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
