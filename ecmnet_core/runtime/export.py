"""ECMNet -> ONNX with the class names, colours and normalisation in its metadata, and the check
that onnxruntime computes what PyTorch does (the library half of `ecmnet-export`, cli/export.py).

The ONNX graph uses the `export` SS2D backend (standard ops only), has a dynamic batch axis and
a static H x W, so `SegmentationEngine(weights="model.onnx")` (onnxruntime) or
`runtime="tensorrt"` can run it without the checkpoint.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..utils.atomic import atomic_path
from .onnx import INPUT_NAME, METADATA_KEY, OUTPUT_NAME

MIN_OPSET = 17          # LayerNormalization


def max_opset() -> int:
    """The newest opset this torch's exporter writes (torch.onnx keeps it in a private constant;
    20 where that moved, the newest every supported torch writes)."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET
        return int(ONNX_MAX_OPSET)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 20


def export_onnx(model: torch.nn.Module, metadata: dict, out: Path, size, opset: int = MIN_OPSET,
                fp16: bool = False) -> Path:
    """Trace `model` (switched to the export SS2D backend) to `out` with metadata; atomic write."""
    import onnx

    if not MIN_OPSET <= opset <= max_opset():
        raise ValueError(f"opset must be in {MIN_OPSET}..{max_opset()} (LayerNormalization .. this torch's "
                         f"exporter), got {opset}")
    model = model.eval().float()
    if hasattr(model, "set_ss2d_backend"):
        model.set_ss2d_backend("export")
    dtype = torch.float16 if fp16 else torch.float32
    model = model.to(dtype)
    dummy = torch.zeros(1, 3, *size, dtype=dtype)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")      # TracerWarnings about shape-derived Python ints are expected
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
        proto = onnx.load(str(tmp))
        meta = dict(metadata, export_size=[int(size[0]), int(size[1])],
                    export_dtype="float16" if fp16 else "float32", opset=opset, ss2d_backend="export",
                    num_classes=len(metadata["classes"]), input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                    input_layout="NCHW RGB, (x/255 - mean)/std")
        props = {METADATA_KEY: json.dumps(meta)}
        for key in ("classes", "colors", "mean", "std"):     # also flat, for non-ecmnet consumers
            props[key] = json.dumps(meta[key])
        del proto.metadata_props[:]
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "ecmnet-export"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return Path(out)


def verify_onnx(model: torch.nn.Module, onnx_path: Path, size, batch: int = 2, seed: int = 0) -> dict:
    """Run PyTorch (fp32, reference SS2D) and onnxruntime on the same random images."""
    from .onnx import OnnxRuntimeNetwork

    net = OnnxRuntimeNetwork(onnx_path, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=gen)
    model = model.float().eval()
    with torch.inference_mode():
        ref = model(x)
        got = net(x).float()
    return compare_logits(ref, got)


def compare_logits(ref: torch.Tensor, got: torch.Tensor) -> dict:
    """How far an exported network's logits are from PyTorch's: max |diff|, the same relative to the
    logit scale, and the share of pixels whose argmax class agrees (the report ecmnet-export checks)."""
    ref, got = ref.float(), got.float()
    diff = (ref - got).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    agree = (ref.argmax(1) == got.argmax(1)).float().mean().item()
    return {"max_abs_diff": diff, "logit_scale": scale, "relative_diff": diff / scale, "mask_agreement": agree,
            "batch": int(ref.shape[0])}
