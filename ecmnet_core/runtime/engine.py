"""Inference engine: uint8 image in, class-id mask (and optional confidence / colour) out.

Why it looks like this: at driving resolutions the network is a few
milliseconds, so everything around it matters. On CUDA the uint8 image goes
through a reused pinned buffer to the GPU on a dedicated stream; normalise,
resize, network, logit upsampling, argmax, softmax confidence and palette
lookup all run on the GPU, optionally replayed as one CUDA graph per input
shape; only the uint8 mask (and the optional confidence / colour image) come
back. The same pre/post-processing wraps three runtimes:

    torch        the PyTorch model (CPU or CUDA; fp32 / fp16 / bf16)
    onnxruntime  an ONNX file from `ecmnet-export` (CPU, or CUDA EP if installed)
    tensorrt     an engine built from that ONNX file (see tensorrt.py;
                 untested on our machines, TensorRT is not installable there)
    aoti         an AOTInductor package (.pt2) from `ecmnet-export --aoti` (aoti.py): compiled
                 ahead of time for one torch build and device, so it starts in milliseconds
"""
from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import load_model
from ..inference import fold_batchnorm, optimize_for_inference  # noqa: F401 (public API)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt", "aoti")
FILE_RUNTIMES = {".onnx": "onnxruntime", ".pt2": "aoti"}      # runtime='auto' picks by the weights' suffix
log = logging.getLogger(__name__)


@dataclass
class SegmentationResult:
    mask: np.ndarray                      # H x W uint8 class ids, input resolution
    confidence: Optional[np.ndarray] = None   # H x W float32 softmax max
    color: Optional[np.ndarray] = None        # H x W x 3 uint8 RGB


DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


def resolve_device(device: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' -> torch.device; ValueError (one line) for anything else,
    and for a CUDA device this machine does not have."""
    import re

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if isinstance(device, str) and not re.fullmatch(DEVICE_PATTERN, device.strip()):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    dev = torch.device(device.strip() if isinstance(device, str) else device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {str(dev)!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} requested but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


# --------------------------------------------------------------------------- per-shape CUDA graphs
class _GraphRunner:
    """One captured (or eager-fallback) pipeline for a fixed (batch, H, W, outputs) key."""

    def __init__(self, engine: "SegmentationEngine", key, use_graph: bool):
        b, h, w, want_conf, want_color = key
        dev = engine.device
        self.static_in = torch.empty((b, h, w, 3), dtype=torch.uint8, device=dev)
        self.host_in = torch.empty((b, h, w, 3), dtype=torch.uint8, pin_memory=True)
        self.host_mask = torch.empty((b, h, w), dtype=torch.uint8, pin_memory=True)
        self.host_conf = torch.empty((b, h, w), dtype=torch.float32, pin_memory=True) if want_conf else None
        self.host_color = torch.empty((b, h, w, 3), dtype=torch.uint8, pin_memory=True) if want_color else None
        self.engine, self.want = engine, (want_conf, want_color)
        self.graph, self.outputs = None, None
        if use_graph:
            self._capture()

    def _run(self):
        return self.engine._pipeline(self.static_in, *self.want)

    def _capture(self):
        stream = self.engine._stream
        try:
            with torch.cuda.stream(stream):
                self.static_in.zero_()
                for _ in range(3):       # warm-up: cuDNN autotune, lazy inits, compile
                    self._run()
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                outputs = self._run()
            self.graph, self.outputs = graph, outputs
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            torch.cuda.synchronize(self.engine.device)
            self.graph, self.outputs = None, None
            warnings.warn(f"CUDA graph capture failed for input {tuple(self.static_in.shape)} "
                          f"({type(exc).__name__}: {exc}); running this shape eagerly", RuntimeWarning)

    def __call__(self, images):
        host = self.host_in.numpy()
        for i, img in enumerate(images):
            host[i] = img                # one copy into pinned memory
        stream = self.engine._stream
        with torch.cuda.stream(stream):
            self.static_in.copy_(self.host_in, non_blocking=True)
            if self.graph is not None:
                self.graph.replay()
                outputs = self.outputs
            else:
                outputs = self._run()
            ids, conf, col = outputs
            self.host_mask.copy_(ids, non_blocking=True)
            if conf is not None:
                self.host_conf.copy_(conf, non_blocking=True)
            if col is not None:
                self.host_color.copy_(col, non_blocking=True)
        stream.synchronize()
        masks = self.host_mask.numpy().copy()
        confs = self.host_conf.numpy().copy() if conf is not None else None
        cols = self.host_color.numpy().copy() if col is not None else None
        return masks, confs, cols


# --------------------------------------------------------------------------- engine
KERNELS_MIN_CAPABILITY = (8, 0)     # Ampere and newer (Jetson Orin included); GPU-tested on sm_90 only


def default_kernel_options(compile_: bool, device, fold_bn: bool = True) -> dict:
    """The engine's channels_last_kernels / fused_edab where the caller leaves them None: on exactly
    for torch.compile on a CUDA GPU of compute capability 8.0+, the setting they are measured and
    GPU-tested in (their fp16 tensor-core dots are not tried on older GPUs)."""
    device = torch.device(device)
    on = bool(compile_) and device.type == "cuda"
    if on:
        try:
            on = tuple(torch.cuda.get_device_capability(device)) >= KERNELS_MIN_CAPABILITY
        except (AssertionError, RuntimeError):     # torch without CUDA, or no such device
            on = False
    return dict(channels_last_kernels=on, fused_edab=on and bool(fold_bn))


class SegmentationEngine:
    """Segment uint8 RGB images with ECMNet.

    weights: ECMNet checkpoint (.pt) for the torch runtime, ONNX file from
        `ecmnet-export` for onnxruntime / tensorrt (runtime='auto' picks by suffix).
    device: auto, cpu, cuda, cuda:N. precision: fp32, fp16, bf16 (CUDA only for 16-bit).
    input_size: network (H, W); images of other sizes are resized on the device and
        the mask is returned at the image size. ONNX / TensorRT fix it to the export size.
    cuda_graphs: capture the whole GPU pipeline once per input shape and replay it
        (falls back to eager, with a warning, for shapes where capture fails).
    compile: torch.compile the network (torch runtime; pays off only for long runs).
    fold_bn: fold BatchNorm into convolutions and keep channels_last through the
        channel shuffles (equivalent math, inference copy only).
    channels_last: run the network in NHWC memory layout (default; the 1x1 convolutions that
        dominate prefer it) or plain NCHW (faster cuDNN/native depthwise kernels on some GPUs).
    cudnn_benchmark: let cuDNN autotune convolutions per shape (process-wide flag; CUDA only).
    depthwise_as_shifts: write depthwise convolutions as shifted multiply-adds that
        torch.compile fuses with their neighbours; None (default) = on exactly when compile=True
        on CUDA, where it is what makes compile pay (docs/benchmarks/inference.md).
    channels_last_kernels: run the depthwise convolutions that are not shifts, the final logits
        resize and the conv + PReLU pairs of the stem (3x3) and of EDAB (3x1, 1x3) as Triton
        kernels on CUDA (ops/channels_last; cuDNN for a conv shape where it is faster).
    fused_edab: run each EDAB after its 1x3 convolution (attentions, expand, residual, shuffle,
        next block's BN + PReLU) as three Triton kernels around the DDA kernel on CUDA
        (ecmnet_core/inference/fused_edab.py; needs fold_bn).
        Both None (default) = on exactly when compile=True on a CUDA GPU of compute capability
        8.0+ (fused_edab: and fold_bn; default_kernel_options), where they are measured and
        GPU-tested: compiled at 1024x2048 fp16 on an H100 the network took 2.921 ms without
        them, 2.108 ms with them (different runs; docs/benchmarks/inference.md). Elsewhere they
        are off unless asked for.
    """

    def __init__(self, weights=None, device: str = "auto", ss2d_backend: str = "auto",
                 precision: str = "fp32", input_size: Optional[Sequence[int]] = None, *,
                 runtime: str = "auto", cuda_graphs: bool = True, compile: bool = False,
                 fold_bn: bool = True, channels_last: bool = True, cudnn_benchmark: bool = True,
                 depthwise_as_shifts: Optional[bool] = None, channels_last_kernels: Optional[bool] = None,
                 fused_edab: Optional[bool] = None, cache_dir=None):
        if runtime == "auto" and ss2d_backend in ("onnxruntime", "tensorrt"):
            runtime, ss2d_backend = ss2d_backend, "export"     # ROS param `backend: tensorrt`
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "auto":
            suffix = "" if weights is None else "." + str(weights).rsplit(".", 1)[-1].lower()
            runtime = FILE_RUNTIMES.get(suffix, "torch")
        if runtime in ("onnxruntime", "tensorrt", "aoti"):
            wanted = ".pt2" if runtime == "aoti" else ".onnx"
            if weights is None or not str(weights).lower().endswith(wanted):
                what = "an AOTInductor package (.pt2) from ecmnet-export --aoti" if runtime == "aoti" else \
                    "an ONNX file from ecmnet-export"
                raise ValueError(f"runtime {runtime} needs {what} as weights, got {weights!r}")
            self._init_common(device, precision, input_size, runtime)
            if runtime == "onnxruntime":
                from .onnx import OnnxRuntimeNetwork
                net = OnnxRuntimeNetwork(weights, self.device)
            elif runtime == "aoti":
                from .aoti import AotiNetwork
                net = AotiNetwork(weights, self.device)
                self.memory_format = net.memory_format
            else:
                from .tensorrt import TensorRTNetwork
                net = TensorRTNetwork(weights, self.device, cache_dir=cache_dir)
            self.metadata = net.metadata
            self.input_size = self._fixed_size = tuple(net.input_size)
            self.dtype = net.input_dtype
            self._network = net
            self.model = None
            # graphs stay off here: ORT runs on the host; capturing TensorRT's enqueue or an
            # AOTInductor run inside a torch graph is untested on our machines
            self._finish_init(False, runtime == "aoti")
            return
        self._init_common(device, precision, input_size, runtime)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if cudnn_benchmark and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True     # shapes are fixed per camera: autotune once
        backend = ss2d_backend
        if backend == "auto":
            from ..ops.ss2d.auto import pick_auto
            backend = pick_auto(str(self.device))
        model, meta = load_model(weights, ss2d_backend=backend)
        self._setup_torch(model, meta, fold_bn, compile, cuda_graphs, depthwise_as_shifts,
                          dict(channels_last_kernels=channels_last_kernels, fused_edab=fused_edab))

    @classmethod
    def from_model(cls, model: nn.Module, metadata: dict, device: str = "auto", precision: str = "fp32",
                   input_size: Optional[Sequence[int]] = None, *, cuda_graphs: bool = True,
                   compile: bool = False, fold_bn: bool = True, channels_last: bool = True,
                   cudnn_benchmark: bool = True, depthwise_as_shifts: Optional[bool] = None,
                   channels_last_kernels: Optional[bool] = None,
                   fused_edab: Optional[bool] = None) -> "SegmentationEngine":
        """Wrap an in-memory model (a copy is optimised; the caller's model is untouched).

        metadata needs classes, colors, mean, std (see checkpoint.make_metadata).
        """
        self = cls.__new__(cls)
        self._init_common(device, precision, input_size, "torch")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if cudnn_benchmark and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._setup_torch(copy.deepcopy(model).eval(), metadata, fold_bn, compile, cuda_graphs,
                          depthwise_as_shifts, dict(channels_last_kernels=channels_last_kernels,
                                                    fused_edab=fused_edab))
        return self

    # -- construction helpers
    def _init_common(self, device, precision, input_size, runtime):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu" and precision != "fp32":
            raise ValueError(f"precision {precision} needs a CUDA device; use fp32 on CPU")
        if runtime == "tensorrt" and self.device.type != "cuda":
            raise ValueError("runtime tensorrt needs a CUDA device")
        self.runtime = runtime
        self.memory_format = torch.contiguous_format    # ONNX / TensorRT take plain NCHW
        self._fixed_size = None          # ONNX / TensorRT networks have a static H x W
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        if input_size is not None:
            input_size = tuple(int(v) for v in input_size)
            if len(input_size) != 2 or min(input_size) < 16:
                raise ValueError(f"input_size must be (H, W) with both >= 16, got {input_size}")
        self.input_size = input_size

    def _setup_torch(self, model, meta, fold_bn, compile_, cuda_graphs, depthwise_as_shifts=None,
                     kernel_options=None):
        self.metadata = meta
        model = model.eval()
        if depthwise_as_shifts is None:
            depthwise_as_shifts = bool(compile_) and self.device.type == "cuda"
        kernel_options = dict(kernel_options or {})
        for name, default in default_kernel_options(compile_, self.device, fold_bn).items():
            if kernel_options.get(name) is None:
                kernel_options[name] = default
        if fold_bn or depthwise_as_shifts or any(kernel_options.values()) or self.device.type == "cuda":
            model = optimize_for_inference(model, fold_bn=fold_bn, depthwise_as_shifts=depthwise_as_shifts,
                                           **kernel_options)
        model = model.to(self.device, memory_format=self.memory_format)
        if self.dtype != torch.float32:
            model = model.to(self.dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self._network = torch.compile(model, dynamic=False) if compile_ else model
        self._finish_init(cuda_graphs, compile_)

    def _finish_init(self, cuda_graphs, compiled):
        meta = self.metadata
        mean = torch.tensor(meta["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(meta["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std
        self._mean, self._std = mean * 255.0, std * 255.0
        self._palette = torch.tensor(meta["colors"], dtype=torch.uint8, device=self.device)
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.compiled = compiled
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._runners: Dict[Tuple, _GraphRunner] = {}

    # -- public properties (stable API)
    @property
    def classes(self):
        return list(self.metadata["classes"])

    @property
    def colors(self):
        return [list(c) for c in self.metadata["colors"]]

    @property
    def num_classes(self) -> int:
        return len(self.metadata["classes"])

    @property
    def ss2d_backend(self) -> str:
        """SS2D backend in use ('export' inside ONNX / TensorRT files)."""
        if self.model is None:
            return "export"
        return getattr(getattr(self.model, "config", None), "ss2d_backend", "n/a")

    # -- input validation
    @staticmethod
    def _check_images(images):
        arrays = []
        for img in images:
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
                raise TypeError("images must be uint8 numpy arrays (H x W x 3 RGB or H x W gray)")
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
                raise ValueError(f"expected an H x W x 3 RGB image, got shape {img.shape}")
            arrays.append(img)
        if not arrays:
            raise ValueError("no images given")
        if len({a.shape for a in arrays}) != 1:
            raise ValueError("all images in a batch must have the same size")
        return arrays

    def _to_batch(self, images) -> torch.Tensor:
        """uint8 images -> (B, 3, H, W) uint8 on the device (a channels_last view)."""
        host = torch.from_numpy(np.stack(self._check_images(images)))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)

    # -- the device pipeline
    def _preprocess(self, nchw_uint8: torch.Tensor) -> torch.Tensor:
        x = nchw_uint8.float() * self._scale + self._shift       # keeps channels_last
        size = self._fixed_size or self.input_size
        if size and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    def _net_logits(self, nchw_uint8: torch.Tensor) -> torch.Tensor:
        """Network logits at the image size, in the network's dtype."""
        h, w = nchw_uint8.shape[-2:]
        out = self._network(self._preprocess(nchw_uint8))
        if tuple(out.shape[-2:]) != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def _pipeline(self, nhwc_uint8: torch.Tensor, want_conf: bool, want_color: bool):
        logits = self._net_logits(nhwc_uint8.permute(0, 3, 1, 2))
        if want_conf:
            lf = logits.float()
            top, ids = lf.max(dim=1)
            # max softmax probability = 1 / sum(exp(l - max)); no full softmax tensor
            conf = torch.exp(lf - top.unsqueeze(1)).sum(dim=1).reciprocal()
        else:
            ids, conf = logits.argmax(dim=1), None
        ids = ids.to(torch.uint8)
        col = self._palette[ids.long()] if want_color else None
        return ids, conf, col

    @torch.inference_mode()
    def logits(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 on device -> (B, C, H, W) float32 logits at the input size."""
        return self._net_logits(batch_uint8).float()

    @torch.inference_mode()
    def infer_batch(self, images, confidence: bool = False, color: bool = False):
        arrays = self._check_images(images)
        if self.device.type == "cuda":
            b, (h, w) = len(arrays), arrays[0].shape[:2]
            key = (b, h, w, bool(confidence), bool(color))
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = _GraphRunner(self, key, self.cuda_graphs)
            masks, confs, cols = runner(arrays)
        else:
            batch = torch.from_numpy(np.stack(arrays))
            ids, conf, col = self._pipeline(batch, confidence, color)
            masks = ids.numpy()
            confs = conf.numpy() if conf is not None else None
            cols = col.numpy() if col is not None else None
        return [SegmentationResult(masks[i], None if confs is None else confs[i], None if cols is None else cols[i])
                for i in range(len(masks))]

    def infer(self, image: np.ndarray, confidence: bool = False, color: bool = False) -> SegmentationResult:
        return self.infer_batch([image], confidence=confidence, color=color)[0]

    def uses_cuda_graph(self, batch: int, height: int, width: int, confidence=False, color=False) -> bool:
        """True once a captured graph serves this shape (for tests / diagnostics)."""
        runner = self._runners.get((batch, height, width, bool(confidence), bool(color)))
        return runner is not None and runner.graph is not None
