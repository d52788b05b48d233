"""TensorRT runtime: build (once, cached) and run an fp16 engine from an ecmnet-export ONNX file.

UNTESTED ON OUR MACHINES: TensorRT cannot be installed on the dev or GPU boxes
this project is developed on, so this module is kept deliberately small and
follows the TensorRT 10 Python API (`tensorrt` package) as documented. The
ONNX graph it parses uses standard ops only (see ops/ss2d/export.py).

Cache key = GPU name + TensorRT version + input shape + sha256 of the ONNX file;
engines live in $ECMNET_TRT_CACHE, else tensorrt/ in the cache root (~/.cache/ecmnet or
$ECMNET_CACHE; utils/paths.py), or `cache_dir`.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from ..utils.atomic import atomic_write_bytes
from ..utils.paths import cache_dir
from .onnx import read_onnx_metadata

DEFAULT_CACHE = Path(os.environ.get("ECMNET_TRT_CACHE") or cache_dir("tensorrt"))


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ImportError("TensorRT runtime needs the `tensorrt` Python package (TensorRT >= 10, "
                          "e.g. pip install tensorrt, or JetPack on Jetson); it is not installed") from None
    if not torch.cuda.is_available():
        raise ImportError("TensorRT runtime needs a CUDA GPU; torch.cuda.is_available() is False")
    return trt


def engine_cache_path(onnx_path, input_shape, cache_dir=None, device=0) -> Path:
    trt = import_tensorrt()
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(device)).strip("-")
    shape = "x".join(str(int(s)) for s in input_shape)
    return Path(cache_dir or DEFAULT_CACHE) / f"{Path(onnx_path).stem}_{gpu}_trt{trt.__version__}_{shape}_{digest}.engine"


def build_engine(onnx_path, input_shape, cache_dir=None, fp16: bool = True, device=0, workspace_gb: float = 2.0):
    """Return the path of a serialized engine for `input_shape` (B, 3, H, W), building it if absent."""
    trt = import_tensorrt()
    path = engine_cache_path(onnx_path, input_shape, cache_dir, device)
    if path.is_file():
        return path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)          # explicit batch is the only mode in TRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, input_shape, input_shape, input_shape)   # static shape per engine
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write_bytes(path, bytes(blob))
    return path


class TensorRTNetwork:
    """Callable: normalised (B, 3, H, W) CUDA tensor -> logits, run on the current torch stream.

    One engine per batch size (built and cached on first use of that size).
    """

    def __init__(self, onnx_path, device: torch.device, cache_dir=None, fp16: bool = True):
        self.trt = import_tensorrt()
        self.onnx_path, self.device, self.cache_dir, self.fp16 = Path(onnx_path), device, cache_dir, fp16
        self.metadata = read_onnx_metadata(onnx_path)
        self.input_size = tuple(self.metadata["export_size"])
        self.input_dtype = torch.float16 if self.metadata.get("export_dtype") == "float16" else torch.float32
        self._runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        self._contexts = {}

    def _context(self, batch: int):
        if batch not in self._contexts:
            shape = (batch, 3, *self.input_size)
            path = build_engine(self.onnx_path, shape, self.cache_dir, self.fp16, self.device.index or 0)
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError(f"could not load TensorRT engine {path}; delete it to rebuild")
            ctx = engine.create_execution_context()
            in_name, out_name = engine.get_tensor_name(0), engine.get_tensor_name(1)
            ctx.set_input_shape(in_name, shape)
            self._contexts[batch] = (engine, ctx, in_name, out_name)
        return self._contexts[batch]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        engine, ctx, in_name, out_name = self._context(x.shape[0])
        x = x.to(self.input_dtype).contiguous()
        out_dtype = torch.float16 if engine.get_tensor_dtype(out_name) == self.trt.DataType.HALF else torch.float32
        out = torch.empty(tuple(ctx.get_tensor_shape(out_name)), dtype=out_dtype, device=x.device)
        ctx.set_tensor_address(in_name, x.data_ptr())
        ctx.set_tensor_address(out_name, out.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(x.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out
