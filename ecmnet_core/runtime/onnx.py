"""onnxruntime runtime for SegmentationEngine: the CPU deployment path we can test everywhere.

The ONNX file written by `ecmnet-export` carries its own metadata (classes,
colours, mean/std, ...) in metadata_props, so it needs no checkpoint next to it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

METADATA_KEY = "ecmnet.metadata"       # full metadata dict as JSON
INPUT_NAME, OUTPUT_NAME = "image", "logits"
_ORT_DTYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}


def read_onnx_metadata(path) -> dict:
    """Metadata dict stored by ecmnet-export; CheckpointError (one line) for foreign or broken files."""
    import onnx

    from .checkpoint import CheckpointError, check_metadata

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends: not an ONNX file
        raise CheckpointError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise CheckpointError(f"{path} has no {METADATA_KEY!r} metadata; export it with ecmnet-export")
    try:
        meta = json.loads(props[METADATA_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {METADATA_KEY!r} is not valid JSON ({exc})") from None
    classes = None
    try:
        dims = model.graph.output[0].type.tensor_type.shape.dim
        classes = dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None
    except (IndexError, AttributeError):
        pass
    if classes is None:
        classes = len(meta.get("classes") or []) if isinstance(meta, dict) else 0
    try:
        return check_metadata(meta, classes)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("runtime onnxruntime needs the onnxruntime package "
                          "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from None
    return ort


class OnnxRuntimeNetwork:
    """Callable: normalised (B, 3, H, W) tensor -> logits tensor on the input's device."""

    def __init__(self, path, device: torch.device, threads: int = 0):
        ort = _import_ort()
        self.metadata = read_onnx_metadata(path)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3          # constant-folding notices about fp16 Exp are noise
        if threads:
            opts.intra_op_num_threads = threads
        from .checkpoint import CheckpointError

        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error classes: an unusable graph
            text = " ".join(str(exc).split())
            raise CheckpointError(f"onnxruntime cannot load {path}: {text[:200]}") from None
        self.path, self.num_classes = path, len(self.metadata["classes"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs) or "none"
            raise CheckpointError(f"{path}: the graph must take one (batch, 3, H, W) image input, got {got}")
        inp = inputs[0]
        self.input_name = inp.name
        if inp.type not in _ORT_DTYPES:
            raise ValueError(f"{path}: unsupported input type {inp.type}")
        self.input_dtype = _ORT_DTYPES[inp.type]
        h, w = inp.shape[2], inp.shape[3]
        if not (isinstance(h, int) and isinstance(w, int)):
            raise ValueError(f"{path}: input height/width must be static, got {inp.shape}")
        if h < 1 or w < 1:
            raise CheckpointError(f"{path}: input height/width must be positive, got {inp.shape}")
        self.input_size = (h, w)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from .checkpoint import CheckpointError

        arr = np.ascontiguousarray(x.detach().to("cpu", self.input_dtype).numpy())
        try:
            out = self.session.run(None, {self.input_name: arr})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error classes: the graph cannot run
            text = " ".join(str(exc).split())
            raise CheckpointError(f"onnxruntime cannot run {self.path}: {text[:200]}") from None
        # the palette and the class names are indexed by these logits: a graph whose output does not
        # match its metadata (declared shapes are not checked by onnxruntime) must not get further
        if out.ndim != 4 or out.shape[0] != arr.shape[0] or out.shape[1] != self.num_classes:
            raise CheckpointError(f"{self.path}: the graph returned {getattr(out, 'dtype', '?')} of shape "
                                  f"{tuple(out.shape)}, expected ({arr.shape[0]}, {self.num_classes}, H, W) logits")
        return torch.from_numpy(out).to(x.device)
