"""`python -m training.ship_weights BEST.pt --out ecmnet_core/weights/ecmnet_camvid.pt`

Turns a training checkpoint into the shipped model file: fp16 weights (< 5 MB), no optimizer
state, and the provenance block a user needs to trust it (training config, val mIoU per class,
epochs, commit) — all already in the checkpoint's metadata, plus what you add with --note.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from ecmnet_core.runtime.checkpoint import load_model, save_checkpoint
from ecmnet_core.cli.common import ArgumentParser, UserError, float_range, friendly_main


def history_summary(metrics_csv: Path) -> dict:
    """Epoch count, summed train seconds and mean img/s from a run's metrics.csv."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{metrics_csv} has no epochs")
    secs = sum(float(r["epoch_s"]) for r in rows)
    ips = [float(r["img_per_s"]) for r in rows[1:] or rows]   # epoch 1 includes cuDNN autotuning
    return {"epochs": len(rows), "train_seconds": round(secs, 1),
            "median_img_per_s": round(sorted(ips)[len(ips) // 2], 1)}


@friendly_main
def main(argv=None):
    p = ArgumentParser(prog="ship_weights", description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, help="metrics.csv of the run (adds epochs / time / img/s)")
    p.add_argument("--note", default="", help="free text stored as metadata['note']")
    p.add_argument("--max-mb", type=float_range(0, lo_open=True), default=5.0)
    args = p.parse_args(argv)
    model, meta = load_model(args.checkpoint)
    meta = dict(meta)
    if args.metrics:
        meta["training_history"] = history_summary(args.metrics)
    if args.note:
        meta["note"] = args.note
    model.config.ss2d_backend = "reference"     # the loader picks the backend for the machine
    save_checkpoint(args.out, model, meta, half=True)
    size_mb = args.out.stat().st_size / 1e6
    if size_mb > args.max_mb:
        args.out.unlink()
        raise UserError(f"shipped weights would be {size_mb:.2f} MB > {args.max_mb} MB")
    print(f"wrote {args.out} ({size_mb:.2f} MB, val mIoU {meta.get('val_miou')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
