"""`python -m benchmarks.peers`: each peer's parameter count as built here, next to the published
count and Cityscapes test mIoU (the numbers docs/benchmarks/inference.md quotes)."""
from __future__ import annotations

import argparse
import sys

from . import PEERS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--classes", type=int, default=19)
    args = ap.parse_args(argv)
    if args.classes < 1:
        print(f"error: --classes must be >= 1, got {args.classes}", file=sys.stderr)
        return 2
    print(f"{'peer':<15} {'parameters':>11} {'published':>9}  {'Cityscapes test mIoU':<22} source")
    for name, peer in PEERS.items():
        n = sum(p.numel() for p in peer.cls(args.classes).parameters())
        pub = f"{peer.published_params_m:.1f} M" if peer.published_params_m else "-"
        miou = f"{peer.cityscapes_test_miou:.1f} %" if peer.cityscapes_test_miou else "-"
        print(f"{name:<15} {n:>11,} {pub:>9}  {miou:<22} {peer.source}"
              + (f" (mIoU: {peer.miou_note})" if peer.miou_note else ""))
    print(f"({args.classes} classes; published counts and mIoU as stated by the papers / official repositories)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
