"""Build the SegmentationEngine the same way for the node, the bag tools and the benchmark.

`resolution` follows the node parameter: 'model' = the checkpoint's training input_size,
'native' = each image's own size, or an (H, W) tuple.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

Resolution = Union[str, Tuple[int, int]]


def model_input_size(weights) -> Optional[Tuple[int, int]]:
    """input_size stored in a .pt checkpoint's metadata; None when it cannot be read here
    (ONNX files and .pt2 packages fix their own size; a missing or broken file is reported by the engine)."""
    from ecmnet_core.runtime.checkpoint import DEFAULT_WEIGHTS, CheckpointError, read_checkpoint
    from ecmnet_core.runtime.engine import FILE_RUNTIMES

    path = Path(weights) if weights else DEFAULT_WEIGHTS
    if path.suffix.lower() in FILE_RUNTIMES or not path.is_file():
        return None
    try:
        size = read_checkpoint(path)["metadata"].get("input_size")
        return (int(size[0]), int(size[1])) if size else None
    except (CheckpointError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def build_engine(weights, device: str, backend: str, precision: str, resolution: Resolution,
                 compile: bool = False, max_pixels: Optional[int] = None,
                 limit_name: str = "max_input_pixels"):
    """The engine for `resolution`; ConfigError when its fixed network input is over max_pixels
    (checked before the model is built: a lying checkpoint input_size must not allocate)."""
    from ecmnet_core.runtime.engine import SegmentationEngine

    from .params import ConfigError

    if resolution == "native":
        size = None
    elif resolution == "model":
        size = model_input_size(weights)
    else:
        size = tuple(resolution)

    def check(hw, what):
        if max_pixels and hw and int(hw[0]) * int(hw[1]) > max_pixels:
            raise ConfigError(f"{what} {int(hw[0])}x{int(hw[1])} = {int(hw[0]) * int(hw[1]):,} pixels is more "
                              f"than the limit of {int(max_pixels):,} ({limit_name})")

    check(size, "network input size")
    engine = SegmentationEngine(weights or None, device=device, ss2d_backend=backend, precision=precision,
                                input_size=size, compile=compile)
    check(engine.input_size, "network input size")          # an ONNX file fixes its own
    return engine


def backend_name(engine) -> str:
    name = getattr(engine, "ss2d_backend", None)
    if callable(name):
        name = name()
    if not name:
        name = getattr(getattr(getattr(engine, "model", None), "config", None), "ss2d_backend", "n/a")
    return str(name)


def resolution_text(engine) -> str:
    size = getattr(engine, "input_size", None)
    return "native" if not size else "x".join(str(int(v)) for v in size)


def release_cached_memory() -> None:
    """Give the memory of engines no longer referenced back: collect them, then return PyTorch's
    cached CUDA blocks to the driver (a no-op without CUDA). The lifecycle node's cleanup."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
