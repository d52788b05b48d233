"""`ecmnet-train`: train ECMNet from a YAML recipe; single process, or one process per GPU via torchrun.

Examples:
  ecmnet-train --config config/train_camvid.yaml --out runs/camvid --max-minutes 9
  ecmnet-train --out runs/camvid --resume auto --max-minutes 9        # continue the same run
  torchrun --nproc_per_node 2 -m training.train --config config/train_cityscapes.yaml --set train.sync_bn=true
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecmnet_core.runtime.checkpoint import read_checkpoint
from ecmnet_core.cli.common import (ArgumentParser, UserError, check_output_dir, float_range, friendly_main,
                                    int_range)

from .config import apply_overrides, deep_merge, DEFAULTS, dump, load_config, validate


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="ecmnet-train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--config", help="recipe YAML (config/train_camvid.yaml, ...); optional with --resume")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.01 --set train.amp=fp16")
    p.add_argument("--out", help="run directory (checkpoints, metrics.csv, tb/, config.yaml)")
    p.add_argument("--data-root", help="dataset root (or data pack .tar with --layout pack)")
    p.add_argument("--layout", choices=["camvid", "cityscapes", "custom", "pack"], help="dataset layout")
    p.add_argument("--epochs", type=int_range(1))
    p.add_argument("--batch-size", type=int_range(1), help="per process")
    p.add_argument("--lr", type=float_range(0, lo_open=True))
    p.add_argument("--max-minutes", type=float_range(0),
                   help="stop cleanly after the epoch that would overrun this (0: after the first epoch)")
    p.add_argument("--resume", help="last.pt to continue from, or 'auto' = <out>/last.pt if it exists")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    return p


def resolve_config(args) -> tuple:
    """-> (config dict, out dir, resume path or None)."""
    shortcuts = []
    for key, val in (("dataset.root", args.data_root), ("dataset.layout", args.layout),
                     ("train.epochs", args.epochs), ("train.batch_size", args.batch_size),
                     ("optim.lr", args.lr), ("train.max_minutes", args.max_minutes),
                     ("output.dir", args.out)):
        if val is not None:
            shortcuts.append(f"{key}={val}")
    overrides = list(args.set) + shortcuts
    resume = None
    out_hint = args.out
    if args.resume:
        if args.resume == "auto":
            if not out_hint and args.config:
                out_hint = load_config(args.config, overrides)["output"]["dir"]
            if not out_hint:
                raise UserError("--resume auto needs --out (or a --config naming output.dir)")
            candidate = Path(out_hint) / "last.pt"
            resume = str(candidate) if candidate.is_file() else None
            if resume is None and not args.config:
                raise UserError(f"--resume auto: no {candidate} yet and no --config to start a new run from")
        else:
            resume = args.resume
            if not Path(resume).is_file():
                raise UserError(f"--resume: checkpoint not found: {resume}")
    if args.config:
        cfg = load_config(args.config, overrides)
    elif resume:
        stored = read_checkpoint(resume)["metadata"].get("train_config")
        if not stored:
            raise UserError(f"{resume} stores no train_config; pass --config")
        cfg = apply_overrides(deep_merge(DEFAULTS, stored), overrides)
        validate(cfg)
    else:
        raise UserError("--config is required for a new run (e.g. config/train_camvid.yaml)")
    return cfg, Path(cfg["output"]["dir"]), resume


@friendly_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg, out, resume = resolve_config(args)
    check_output_dir(out)
    from ecmnet_core.utils.atomic import atomic_write_text

    from .distributed import cleanup, init_from_env
    from .trainer import Trainer

    dist_info, device = init_from_env(args.device)
    try:
        # the run directory appears only once data and model are set up: a missing dataset, an
        # unpaired image or a bad model section leaves nothing behind (nor overwrites config.yaml)
        trainer = Trainer(cfg, out, dist_info, device, resume=resume)
        if dist_info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "config.yaml", dump(cfg))
        result = trainer.fit()
    finally:
        cleanup()
    if dist_info.is_main:
        state = "finished" if result["finished"] else "stopped on time budget (resume with --resume auto)"
        print(f"done: {state}; epoch {result['epoch']}, best val mIoU {max(result['best_miou'], 0):.4f}; "
              f"checkpoints in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
