"""`ecmnet-export`: ECMNet checkpoint -> ONNX (verified with onnxruntime) -> optional TensorRT engine,
and/or -> an AOTInductor package (.pt2, `--aoti`) that the engine and the node load in milliseconds.

The ONNX graph uses the `export` SS2D backend (standard ops only), has a
dynamic batch axis and a static H x W, and carries the class names, colours
and normalisation in its metadata_props, so `SegmentationEngine(weights=
"model.onnx")` (onnxruntime) or `runtime="tensorrt"` can run it without the
checkpoint. Export fails loudly when onnxruntime disagrees with PyTorch.

The .pt2 package (`--aoti`) is compiled for this machine's torch build and the device given by
`--device` (and its GPU architecture); it refuses to load anywhere else, naming the mismatch.
Compiling takes minutes (once); every later start of the node loads it in milliseconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..runtime.checkpoint import load_model
from ..runtime.engine import resolve_device
from ..runtime.export import MIN_OPSET, export_onnx, max_opset, verify_onnx
from ..runtime.images import DEFAULT_MAX_PIXELS, check_pixels
from ..runtime.onnx import INPUT_NAME
from ..utils.atomic import atomic_path
from .common import (ArgumentParser, UserError, check_output_dir, check_output_file, float_range, friendly_main,
                     int_range, parse_device, parse_max_pixels, parse_size, path_arg)


def build_parser():
    p = ArgumentParser(prog="ecmnet-export", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=path_arg, default=None,
                   help="output .onnx path (replaced only once the new file passed verification)")
    p.add_argument("--aoti", type=path_arg, default=None,
                   help="output .pt2 path: an AOTInductor package for --device (replaced only once it passed "
                        "verification); at least one of --onnx / --aoti")
    p.add_argument("--device", type=parse_device, default="auto",
                   help="device the .pt2 package is compiled for: auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--max-batch", type=int_range(1, 64), default=8,
                   help="largest batch one call of the .pt2 package takes (dynamic 1..N; default 8)")
    p.add_argument("--weights", required=True, help="ECMNet checkpoint (.pt)")
    p.add_argument("--size", type=parse_size, required=True, help="network input HxW, e.g. 1024x2048")
    p.add_argument("--opset", type=int_range(MIN_OPSET, max_opset()), default=MIN_OPSET,
                   help=f"ONNX opset ({MIN_OPSET}..{max_opset()} with this torch; default {MIN_OPSET})")
    p.add_argument("--fp16", action="store_true", help="store weights and I/O as float16 (state stays fp32); "
                                                        "for --aoti: a CUDA device only")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build and cache an fp16 TensorRT engine (needs TensorRT and a CUDA GPU)")
    p.add_argument("--batch", type=int_range(1, 1024), default=1, help="batch size of the TensorRT engine (default 1)")
    p.add_argument("--cache-dir", type=path_arg, default=None, help="TensorRT engine cache directory")
    p.add_argument("--max-diff", type=float_range(0, lo_open=True), default=None,
                   help="fail above this max |logit diff| / max(1, max |logit|) "
                        "(default 1e-4 fp32 (1e-3 for a CUDA .pt2: TF32 convolutions), 2e-2 fp16)")
    p.add_argument("--min-agreement", type=float_range(0, 1), default=None,
                   help="fail below this fraction of equal argmax pixels (default 0.999 fp32, 0.98 fp16)")
    p.add_argument("--max-pixels", type=parse_max_pixels, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse a --size with more pixels (export and verification run at that size); "
                        f"0 = no limit (default {DEFAULT_MAX_PIXELS} = 4096x2048)")
    return p


@friendly_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.onnx is None and args.aoti is None:
        raise UserError("nothing to write: give --onnx PATH.onnx and/or --aoti PATH.pt2")
    if args.onnx is not None:
        if args.onnx.suffix != ".onnx":
            raise UserError(f"--onnx must end with .onnx, got {args.onnx}")
        check_output_file(args.onnx, "--onnx")
    elif args.tensorrt:
        raise UserError("--tensorrt builds from the ONNX file: give --onnx too")
    if args.aoti is not None:
        if args.aoti.suffix != ".pt2":
            raise UserError(f"--aoti must end with .pt2, got {args.aoti}")
        check_output_file(args.aoti, "--aoti")
    if args.cache_dir is not None:
        check_output_dir(args.cache_dir, "--cache-dir")
    if not Path(args.weights).is_file():
        raise UserError(f"weights not found: {args.weights}")
    check_pixels(*args.size, args.max_pixels, f"--size {args.size[0]}x{args.size[1]}", show_dims=False)
    if args.tensorrt:
        from ..runtime.tensorrt import import_tensorrt
        try:
            import_tensorrt()          # fail before the slow export, naming what is missing
        except ImportError as exc:
            raise UserError(str(exc)) from None
    device = None
    if args.aoti is not None:
        try:
            device = resolve_device(args.device)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if args.fp16 and device.type != "cuda":
            raise UserError("--fp16 with --aoti needs a CUDA --device (float16 convolutions are a GPU format)")
    if args.onnx is not None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise UserError(f"--onnx needs onnx and onnxruntime (pip install onnx onnxruntime): {exc}") from None

    model, meta = load_model(args.weights, ss2d_backend="export")
    reference, _ = load_model(args.weights, ss2d_backend="reference")
    if args.onnx is not None:
        export_onnx_verified(args, model, meta, reference)
    if args.aoti is not None:
        export_aoti_verified(args, meta, reference, device)
    return 0


def _check_report(report: dict, what: str, runner: str, path, max_diff: float, min_agree: float) -> None:
    print(f"{runner} vs PyTorch (batch {report['batch']}, random input): max |logit diff| "
          f"{report['max_abs_diff']:.3g} (relative to logit scale {report['relative_diff']:.3g}), "
          f"mask agreement {100 * report['mask_agreement']:.3f}%")
    if report["relative_diff"] > max_diff or report["mask_agreement"] < min_agree or not np.isfinite(
            report["max_abs_diff"]):
        raise UserError(f"{what} verification failed: relative logit diff {report['relative_diff']:.3g} "
                        f"(limit {max_diff:g}), mask agreement {report['mask_agreement']:.4f} "
                        f"(limit {min_agree:g}); {path} not written")


def export_aoti_verified(args, meta, reference, device) -> None:
    """Prepare the inference copy as the compiled engine does (BN folded, depthwise as shifts on
    CUDA), compile it ahead of time, and keep the package only when it matches eager PyTorch."""
    import time

    import torch

    from ..inference import optimize_for_inference
    from ..runtime.aoti import export_aoti, verify_aoti

    model, _ = load_model(args.weights, ss2d_backend="export")
    model = optimize_for_inference(model.eval(), fold_bn=True, depthwise_as_shifts=device.type == "cuda")
    dtype = torch.float16 if args.fp16 else torch.float32
    fp32_limit = 1e-3 if device.type == "cuda" else 1e-4
    max_diff = args.max_diff if args.max_diff is not None else (2e-2 if args.fp16 else fp32_limit)
    min_agree = args.min_agreement if args.min_agreement is not None else (0.98 if args.fp16 else 0.999)
    started = time.monotonic()
    # compiled next to --aoti and renamed over it only after verification
    with atomic_path(args.aoti) as tmp:
        export_aoti(model, meta, tmp, args.size, device, dtype=dtype, max_batch=args.max_batch)
        seconds = time.monotonic() - started
        report = verify_aoti(reference, tmp, device)
        _check_report(report, "AOTInductor package", "AOTInductor package", args.aoti, max_diff, min_agree)
        size_mb = tmp.stat().st_size / 1e6
    print(f"wrote {args.aoti} ({size_mb:.2f} MB, {'fp16' if args.fp16 else 'fp32'}, {device}, input "
          f"[1..{args.max_batch}, 3, {args.size[0]}, {args.size[1]}], compiled in {seconds:.0f} s)")


def export_onnx_verified(args, model, meta, reference) -> None:
    """ONNX (export SS2D backend) written only once onnxruntime agrees with PyTorch; then TensorRT."""
    max_diff = args.max_diff if args.max_diff is not None else (2e-2 if args.fp16 else 1e-4)
    min_agree = args.min_agreement if args.min_agreement is not None else (0.98 if args.fp16 else 0.999)
    # written next to --onnx and renamed over it only after verification: a failed export (or one
    # onnxruntime disagrees with) leaves no file, and never clobbers a good older one
    with atomic_path(args.onnx) as tmp:
        export_onnx(model, meta, tmp, args.size, args.opset, args.fp16)
        report = verify_onnx(reference, tmp, args.size)
        size_mb = tmp.stat().st_size / 1e6
        _check_report(report, "ONNX", "onnxruntime", args.onnx, max_diff, min_agree)
    print(f"wrote {args.onnx} ({size_mb:.2f} MB, opset {args.opset}, {'fp16' if args.fp16 else 'fp32'}, "
          f"input {INPUT_NAME} [batch, 3, {args.size[0]}, {args.size[1]}])")
    if args.tensorrt:
        from ..runtime.tensorrt import build_engine
        engine = build_engine(args.onnx, (args.batch, 3, *args.size), args.cache_dir, fp16=True)
        print(f"TensorRT fp16 engine: {engine}")


if __name__ == "__main__":
    sys.exit(main())
