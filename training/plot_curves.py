"""`python -m training.plot_curves metrics.csv --out curves.png`: loss and val mIoU per epoch."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from ecmnet_core.utils.atomic import atomic_path
from ecmnet_core.cli.common import ArgumentParser, UserError, friendly_main


@friendly_main
def main(argv=None):
    p = ArgumentParser(prog="plot_curves", description=__doc__)
    p.add_argument("metrics", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="ECMNet training")
    args = p.parse_args(argv)
    if not args.metrics.is_file():
        raise UserError(f"no such metrics file: {args.metrics}")
    with open(args.metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{args.metrics} has no epochs")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) for r in rows]
    loss = [float(r["train_loss"]) for r in rows]
    val = [(int(r["epoch"]), 100 * float(r["val_miou"])) for r in rows if r["val_miou"]]
    lr = [float(r["lr"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(ep, loss)
    axes[0].set(xlabel="epoch", ylabel="train loss (weighted CE)", title="loss")
    axes[1].plot([v[0] for v in val], [v[1] for v in val], marker="o")
    axes[1].set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
    axes[2].plot(ep, lr)
    axes[2].set(xlabel="epoch", ylabel="learning rate", title="LR schedule")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(args.title)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
