"""Same math check: the first N training steps' loss with the eager step and with the graphed step,
from the same initial weights, batches and augmentations (the recipe's data, LR schedule and loss).

  python -m training.compare_steps --config config/train_camvid.yaml --steps 300 --out runs/compare_steps.csv
  python -m training.compare_steps --plot runs/compare_steps.csv --out docs/img/compare_steps_300.png

Prints both curves' summary (mean |difference|, and the eager run against itself repeated, which is
the run-to-run noise of non-deterministic GPU kernels) and writes every step's losses as CSV.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import torch

from ecmnet_core.utils.atomic import atomic_path
from ecmnet_core.cli.common import ArgumentParser, friendly_main, int_range

from .config import load_config
from .distributed import DistInfo
from .trainer import Trainer


def losses_for(cfg: dict, step_mode: str, steps: int, device) -> list:
    """Per-step losses of the first `steps` steps; the eager reference runs uncompiled."""
    extra = {"compile": False} if step_mode == "eager" else {}
    cfg = {**cfg, "train": {**cfg["train"], "step": step_mode, "progress": "off", **extra}}
    trainer = Trainer(cfg, Path("/tmp/ecmnet_compare_steps"), DistInfo(), device, log=lambda *a, **k: None)
    out: list = []
    epoch = 0
    while len(out) < steps:
        trainer.train_epoch(epoch)
        out.extend(trainer.step_losses)
        epoch += 1
    return out[:steps]


def plot(csv_path: str, png: str) -> None:
    """The curves of a CSV written by this tool, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} holds no steps")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, style in zip([k for k in rows[0] if k != "step"], ("-", ":", "--", "-.")):
        ax.plot([int(r["step"]) for r in rows], [float(r[name]) for r in rows], style, label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


@friendly_main
def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m training.compare_steps", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/train_camvid.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int_range(1), default=300)
    p.add_argument("--out", default="runs/compare_steps.csv")
    p.add_argument("--plot", metavar="CSV", help="only draw CSV's curves into --out (a .png)")
    a = p.parse_args(argv)
    if a.plot:
        plot(a.plot, a.out)
        print(f"wrote {a.out}")
        return 0
    if not torch.cuda.is_available():
        print("error: the graphed step needs a CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    cfg = load_config(a.config, a.set)
    runs = {"eager": losses_for(cfg, "eager", a.steps, dev),
            "eager_repeat": losses_for(cfg, "eager", a.steps, dev),
            "graph": losses_for(cfg, "graph", a.steps, dev)}

    def mad(u, v):
        return sum(abs(x - y) for x, y in zip(u, v)) / len(u)

    noise, diff = mad(runs["eager"], runs["eager_repeat"]), mad(runs["eager"], runs["graph"])
    for name, vals in runs.items():
        k = max(1, len(vals) // 10)
        print(f"{name:>13}: first {sum(vals[:k]) / k:.4f}  last {sum(vals[-k:]) / k:.4f}  "
              f"(mean of {k} steps)")
    print(f"mean |eager - eager_repeat| {noise:.5f}  (run-to-run noise)")
    print(f"mean |eager - graph|        {diff:.5f}")
    if not all(math.isfinite(v) for vals in runs.values() for v in vals):
        print("error: non-finite loss", file=sys.stderr)
        return 1
    with atomic_path(a.out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *runs])
        for i, row in enumerate(zip(*runs.values())):
            w.writerow([i + 1, *(f"{v:.6f}" for v in row)])
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
