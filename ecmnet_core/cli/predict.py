"""`ecmnet-predict`: segment images or a folder and write colour mask + overlay PNGs.

For each image NAME it writes NAME_labels.png (class ids), NAME_mask.png (colours) and
NAME_overlay.png into --out (each file written atomically). In a folder, an image that cannot be
read or is over --max-pixels is skipped and listed on stdout; the others are still segmented, and
the run ends with one `error:` line and status 2 if any was skipped.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2

from ..runtime.images import DEFAULT_MAX_PIXELS, ImageError, check_pixels, list_images, read_rgb
from ..utils.atomic import atomic_write_bytes, name_fits
from .common import (ArgumentParser, UserError, check_output_dir, float_range, friendly_main, parse_device,
                     parse_max_pixels, parse_size, path_arg, weights_arg)


def build_parser():
    p = ArgumentParser(prog="ecmnet-predict", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=path_arg, help="an image file or a directory of images")
    p.add_argument("--weights", type=weights_arg, default=None, help="checkpoint (.pt), ONNX file or .pt2 package (ecmnet-export --aoti); default: shipped CamVid weights")
    p.add_argument("--out", type=path_arg, required=True, help="output directory (created if missing)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", default="auto", help="SS2D backend (auto, reference, cuda, mamba, export)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--size", type=parse_size, default=None, help="network input HxW (default: image size)")
    p.add_argument("--alpha", type=float_range(0.0, 1.0), default=0.5, help="overlay opacity of the mask, 0..1")
    p.add_argument("--max-pixels", type=parse_max_pixels, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images (and --size) with more pixels than this, read from the file header "
                        f"before decoding; a count or an area like 4096x2048, 0 = no limit "
                        f"(default {DEFAULT_MAX_PIXELS} = 4096x2048)")
    return p


def output_names(files):
    """Output stem per input: the file's stem, or stem_ext where two inputs share a stem (a.png, a.jpg);
    where that still collides (a.png, a.PNG, a_png.png) stem_ext_1, _2 ..., so that no image's outputs
    overwrite another's."""
    counts = Counter(p.stem for p in files)
    first = {p: (p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}") for p in files}
    clashes = Counter(first.values())
    taken = {name for name in first.values() if clashes[name] == 1}
    names = {}
    for p in files:                       # sorted: the same folder always gets the same names
        name = first[p]
        if clashes[name] > 1:
            i = 1
            while f"{name}_{i}" in taken:
                i += 1
            name = f"{name}_{i}"
            taken.add(name)
        names[p] = name
    return names


def _png(image, what) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"cannot encode {what} as PNG")
    return buf.tobytes()


@friendly_main
def main(argv=None):
    from ..runtime.engine import SegmentationEngine
    from ..runtime.postprocess import overlay

    args = build_parser().parse_args(argv)
    out = check_output_dir(args.out)
    files = list_images(args.input)
    names = output_names(files)
    too_long = [p for p in files if not name_fits(out, f"{names[p]}_overlay.png")]
    if too_long:
        name = too_long[0].name if len(too_long[0].name) <= 60 else too_long[0].name[:57] + "..."
        raise UserError(f"{len(too_long)} image name(s) too long for their output files in {out} (the file "
                        f"system's name limit), e.g. {name}; rename them")
    if args.size is not None:
        check_pixels(*args.size, args.max_pixels, f"--size {args.size[0]}x{args.size[1]}", show_dims=False)
    # one image: read it before the model is loaded, so a bad file fails fast
    first = read_rgb(files[0], args.max_pixels) if len(files) == 1 else None
    engine = SegmentationEngine(args.weights, device=args.device, ss2d_backend=args.backend,
                                precision=args.precision, input_size=args.size)
    if engine.input_size:                     # an ONNX file fixes its own input size
        check_pixels(*engine.input_size, args.max_pixels, f"the network input size {engine.input_size[0]}x"
                     f"{engine.input_size[1]} (HxW) of {args.weights}", show_dims=False)
    done, bad = [], []
    for path in files:
        try:
            rgb = first if first is not None else read_rgb(path, args.max_pixels)
        except ImageError as exc:
            bad.append((path, str(exc)))
            print(f"skipped: {exc}", flush=True)
            continue
        res = engine.infer(rgb, color=True)
        blend = overlay(rgb, res.color, args.alpha)
        outputs = {"labels": _png(res.mask, "the mask"),
                   "mask": _png(cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR), "the colour mask"),
                   "overlay": _png(cv2.cvtColor(blend, cv2.COLOR_RGB2BGR), "the overlay")}
        for kind, data in outputs.items():          # encoded first: a failure above writes nothing
            atomic_write_bytes(out / f"{names[path]}_{kind}.png", data)
        done.append(path)
    if done:
        print(f"wrote {3 * len(done)} files for {len(done)} image(s) to {out}")
    if bad:
        listed = ", ".join(p.name for p, _ in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UserError(f"{len(bad)} of {len(files)} images could not be segmented ({listed}; listed on stdout); "
                        f"the other {len(done)} were written to {out}" if done else
                        f"none of the {len(files)} images in {args.input} could be segmented ({listed}; "
                        f"listed on stdout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
