"""`ecmnet-flops`: parameter count and FLOPs of ECMNet at common driving resolutions.

Convolutions and matrix products are counted by torch's FlopCounterMode; the
selective scan (elementwise recurrences it cannot see) is added analytically.
Segmentation papers (and ptflops, which LETNet/ECMNet-style repos use) report
multiply-accumulates as "FLOPs", so both conventions are printed.
"""
from __future__ import annotations

import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model import ECMNet, ECMNetConfig, count_parameters
from ..ops.ss2d import K_DIRECTIONS
from .common import ArgumentParser, friendly_main, int_range

RESOLUTIONS = [(360, 480), (512, 1024), (1024, 1024), (1024, 2048)]
PAPER_GFLOPS = 8.27


def scan_flops(model: ECMNet, h: int, w: int) -> int:
    """Elementwise FLOPs of the 4-direction scan at the FFM's resolution."""
    ss2d = model.ffm.ss2d
    for _ in range(4):          # stem stride 2 + three downsamplings
        h, w = (h + 1) // 2, (w + 1) // 2
    d, n, r = ss2d.d_inner, ss2d.d_state, ss2d.dt_rank
    per_pos = d * (2 * r + 2)        # dt_proj (low rank) + bias + softplus
    per_pos += d * n * 7             # exp(dA), dA*h, delta*u*B, add, C*h, reduce
    per_pos += 2 * d                 # D skip
    return K_DIRECTIONS * per_pos * h * w


def measure(model: ECMNet, h: int, w: int) -> dict:
    x = torch.zeros(1, 3, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops() + scan_flops(model, h, w)
    return {"height": h, "width": w, "gflops": flops / 1e9, "gmacs": flops / 2e9}


def report(num_classes: int = 19, resolutions=RESOLUTIONS):
    model = ECMNet(ECMNetConfig(num_classes=num_classes)).eval()
    rows = [measure(model, h, w) for h, w in resolutions]
    return count_parameters(model), rows


@friendly_main
def main(argv=None):
    p = ArgumentParser(prog="ecmnet-flops", description=__doc__)
    p.add_argument("--classes", type=int_range(1, 256), default=19, help="number of classes, 1..256 (default 19)")
    args = p.parse_args(argv)
    params, rows = report(args.classes)
    print(f"ECMNet, {args.classes} classes: {params:,} parameters ({params / 1e6:.3f} M)")
    print(f"{'input':>11} | {'GMACs (paper convention)':>24} | {'GFLOPs (2 x MAC)':>16}")
    for r in rows:
        print(f"{r['height']:>5}x{r['width']:<5} | {r['gmacs']:>24.2f} | {r['gflops']:>16.2f}")
    best = min(rows, key=lambda r: abs(r["gmacs"] - PAPER_GFLOPS))
    print(f"paper reports {PAPER_GFLOPS}G: closest is {best['height']}x{best['width']} "
          f"at {best['gmacs']:.2f} GMACs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
