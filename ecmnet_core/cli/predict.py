"""`ecmnet-predict`: segment images or a folder and write colour mask + overlay PNGs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from ..runtime.engine import SegmentationEngine
from ..runtime.images import list_images, read_rgb
from ..runtime.postprocess import overlay
from .common import friendly_main, parse_size

def build_parser():
    p = argparse.ArgumentParser(prog="ecmnet-predict", description=__doc__)
    p.add_argument("input", type=Path, help="an image file or a directory of images")
    p.add_argument("--weights", default=None, help="checkpoint (.pt); default: shipped CamVid weights")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", default="auto", help="SS2D backend (auto, reference, cuda, mamba, export)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--size", type=parse_size, default=None, help="network input HxW (default: image size)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask")
    return p


@friendly_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    files = list_images(args.input)
    engine = SegmentationEngine(args.weights, device=args.device, ss2d_backend=args.backend,
                                precision=args.precision, input_size=args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in files:
        rgb = read_rgb(path)
        res = engine.infer(rgb, color=True)
        cv2.imwrite(str(args.out / f"{path.stem}_labels.png"), res.mask)
        cv2.imwrite(str(args.out / f"{path.stem}_mask.png"), cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR))
        blend = overlay(rgb, res.color, args.alpha)
        cv2.imwrite(str(args.out / f"{path.stem}_overlay.png"), cv2.cvtColor(blend, cv2.COLOR_RGB2BGR))
    print(f"wrote {3 * len(files)} files for {len(files)} image(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
