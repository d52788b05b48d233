"""`ecmnet-eval`: mIoU / per-class IoU / pixel accuracy of a checkpoint on a dataset split.

  ecmnet-eval --weights runs/camvid/best.pt                         # dataset from the checkpoint's recipe
  ecmnet-eval --weights best.pt --layout cityscapes --data-root /data/cityscapes --scales 0.75 1 1.25 --flip
Prints the per-class table and writes a JSON report (default <weights dir>/eval_<split>.json).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ecmnet_core.utils.atomic import atomic_write_text
from ecmnet_core.runtime.checkpoint import load_model
from ecmnet_core.cli.common import (ArgumentParser, UserError, check_output_file, float_range, friendly_main,
                                    int_range, path_arg)

from .augment import to_model_input
from .config import DEFAULTS, deep_merge, load_config, validate_dataset
from .datasets import IGNORE, build_dataset
from .inference import predict_probs
from .metrics import ConfusionMatrix, format_table


def build_parser():
    p = ArgumentParser(prog="ecmnet-eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--weights", required=True, help="checkpoint (best.pt / last.pt / shipped weights)")
    p.add_argument("--config", help="recipe YAML whose dataset section to use (default: the checkpoint's)")
    p.add_argument("--layout", choices=["camvid", "cityscapes", "custom", "pack"])
    p.add_argument("--data-root")
    p.add_argument("--classes", help="classes YAML (custom layout)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the recipe's val split)")
    p.add_argument("--scales", type=float_range(0.1, 4.0), nargs="+", default=[1.0],
                   help="multi-scale inference, e.g. 0.75 1 1.25 (each 0.1..4)")
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--batch-size", type=int_range(1), default=1)
    p.add_argument("--limit", type=int_range(1), help="evaluate only the first N images")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--ss2d-backend", default=None, help="override the SS2D scan backend")
    p.add_argument("--workers", type=int_range(0, 256), default=2, help="DataLoader workers (0 = in process)")
    p.add_argument("--out", type=path_arg, help="JSON report path")
    return p


def dataset_section(args, metadata: dict) -> dict:
    if args.config:
        d = load_config(args.config)["dataset"]
    else:
        stored = metadata.get("train_config")
        try:
            d = deep_merge(DEFAULTS, stored)["dataset"] if stored else dict(DEFAULTS["dataset"])
        except UserError as exc:
            raise UserError(f"{args.weights}: stored train_config: {exc}") from None
        if not stored and not (args.layout and args.data_root):
            raise UserError("this checkpoint stores no training recipe; pass --layout and --data-root")
    d = dict(d)
    for key, val in (("layout", args.layout), ("root", args.data_root), ("classes", args.classes),
                     ("limit", args.limit)):
        if val is not None:
            d[key] = val
    validate_dataset(d)          # a checkpoint's stored recipe is as untrusted as any other input
    return d


def evaluate(model, dataset, device, scales=(1.0,), flip=False, batch_size=1, amp_dtype=None,
             mean=None, std=None, workers=0, progress=False) -> dict:
    cm = ConfusionMatrix(dataset.info.num_classes, IGNORE, device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    it = loader
    if progress:
        from tqdm import tqdm
        it = tqdm(loader, desc="eval", leave=False)
    t0 = time.time()
    n = 0
    for img, lab in it:
        img, lab = img.to(device), lab.to(device)
        x = to_model_input(img.float().div_(255), mean, std, False)
        probs = predict_probs(model, x, scales, flip, amp_dtype)
        cm.update(probs.argmax(1), lab)
        n += img.shape[0]
    result = cm.compute(dataset.info.classes)
    result.update(images=n, seconds=round(time.time() - t0, 2))
    return result


def _nan_to_none(obj):
    """Strict JSON: a class absent from ground truth and prediction has IoU null, not NaN."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


@friendly_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.out:
        check_output_file(Path(args.out))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but CUDA is not available")
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model, meta = load_model(args.weights, ss2d_backend=args.ss2d_backend)
    model.to(device)
    d = dataset_section(args, meta)
    split = args.split or d.get("val_split") or "val"
    ds = build_dataset(d, split)
    if ds.info.num_classes != model.num_classes:
        raise UserError(f"{args.weights} predicts {model.num_classes} classes but the {ds.info.name} "
                        f"dataset has {ds.info.num_classes}")
    amp = None if device.type != "cuda" or args.amp == "none" else \
        (torch.bfloat16 if args.amp == "bf16" else torch.float16)
    result = evaluate(model, ds, device, args.scales, args.flip, args.batch_size, amp, meta.get("mean"),
                      meta.get("std"), args.workers, sys.stderr.isatty())
    print(f"{args.weights} on {ds.info.name}/{split} ({result['images']} images, scales {args.scales}, "
          f"flip {args.flip}, {device}):")
    print(format_table(result))
    report = {"weights": str(args.weights), "dataset": ds.info.name, "split": split,
              "data_root": str(d["root"]), "scales": args.scales, "flip": args.flip, "device": str(device),
              "amp": args.amp, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "checkpoint_epoch": meta.get("epoch"), "checkpoint_val_miou": meta.get("val_miou"), **result}
    out = Path(args.out) if args.out else Path(args.weights).with_name(f"eval_{split}.json")
    atomic_write_text(out, json.dumps(_nan_to_none(report), indent=2, allow_nan=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
