"""`ecmnet-pack-data`: write a dataset's splits into one compact tar the GPU device can receive.

The device accepts at most 64 MiB per call, so the pack stores canonical labels (train ids,
255 = ignore) as PNG and images as JPEG (train, default quality 95) or lossless WebP (val by
default, so validation mIoU is measured on the original pixels). Lossless encodings are
verified by decoding them back. meta.json records classes, colours, per-split pixel histograms
(ENet class weights need no extra pass on the device) and the source.

  ecmnet-pack-data --layout camvid --root ../shared/datasets/camvid --out .data/camvid.tar
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

from ecmnet_core.utils.atomic import atomic_path
from ecmnet_core.cli.common import (ArgumentParser, UserError, check_output_file, float_range, friendly_main,
                                    int_range, path_arg)

from .datasets import PACK_FORMAT, build_dataset

FORMATS = {
    "jpg": (".jpg", lambda q: [cv2.IMWRITE_JPEG_QUALITY, q], False),
    "png": (".png", lambda q: [cv2.IMWRITE_PNG_COMPRESSION, 9], True),
    "webp": (".webp", lambda q: [cv2.IMWRITE_WEBP_QUALITY, 101], True),    # >100 = lossless
}


def encode(arr_rgb_or_label: np.ndarray, fmt: str, quality: int, name: str) -> tuple:
    ext, params, lossless = FORMATS[fmt]
    arr = arr_rgb_or_label
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, arr, params(quality))
    if not ok:
        raise UserError(f"cannot encode {name} as {fmt} with this OpenCV build")
    data = buf.tobytes()
    if lossless:
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if back is None or back.shape != arr.shape or not np.array_equal(back, arr):
            raise UserError(f"{fmt} round trip of {name} is not lossless with this OpenCV build; use png")
    return ext, data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_pack(dcfg: dict, splits, out: Path, formats: dict, quality: int, max_mib: float, log=print) -> dict:
    meta = {"format": PACK_FORMAT, "version": 1, "splits": {}, "class_counts": {},
            "source": {"layout": dcfg["layout"], "root": str(dcfg["root"])},
            "encoding": {s: formats.get(s, formats["default"]) for s in splits}, "jpeg_quality": quality,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(out) as tmp:
        with tarfile.open(tmp, "w") as tar:
            for split in splits:
                ds = build_dataset(dcfg, split)
                meta.update(dataset=ds.info.name, classes=ds.info.classes, colors=ds.info.colors, ignore_index=255)
                fmt = formats.get(split, formats["default"])
                counts = np.zeros(ds.info.num_classes, np.int64)
                entries = []
                for i in range(len(ds)):
                    img, lab = ds.load(i)
                    name = ds.items[i].name
                    ext, data = encode(img, fmt, quality, name)
                    _, ldata = encode(lab, "png", 0, name)
                    entry = {"name": name, "image": f"{split}/images/{name}{ext}", "label": f"{split}/labels/{name}.png"}
                    _add(tar, entry["image"], data)
                    _add(tar, entry["label"], ldata)
                    entries.append(entry)
                    counts += np.bincount(lab.reshape(-1), minlength=256)[: ds.info.num_classes]
                meta["splits"][split] = entries
                meta["class_counts"][split] = [int(c) for c in counts]
                log(f"{split}: {len(entries)} samples ({fmt})")
            _add(tar, "meta.json", json.dumps(meta, indent=1).encode())
        size = Path(tmp).stat().st_size / 2**20
        if size > max_mib:
            raise UserError(f"pack would be {size:.1f} MiB > --max-mib {max_mib}; lower --jpeg-quality or "
                            f"use --train-format jpg / --val-format jpg")
    log(f"wrote {out} ({size:.1f} MiB)")
    return meta


@friendly_main
def main(argv=None) -> int:
    p = ArgumentParser(prog="ecmnet-pack-data", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--layout", required=True, choices=["camvid", "cityscapes", "custom"])
    p.add_argument("--root", type=path_arg, required=True, help="dataset root folder")
    p.add_argument("--classes", help="classes YAML (custom layout)")
    p.add_argument("--splits", default="train,val", help="comma-separated splits (default train,val)")
    p.add_argument("--out", type=path_arg, default=None, help="output tar (default .data/<layout>.tar)")
    p.add_argument("--train-format", default="jpg", choices=sorted(FORMATS))
    p.add_argument("--val-format", default="webp", choices=sorted(FORMATS))
    p.add_argument("--jpeg-quality", type=int_range(1, 100), default=95)
    p.add_argument("--resize", type=int_range(16, 8192), nargs=2, metavar=("H", "W"), help="resize every sample first")
    p.add_argument("--max-mib", type=float_range(0, lo_open=True), default=60.0,
                   help="fail if the pack is larger (device limit)")
    args = p.parse_args(argv)
    dcfg = {"layout": args.layout, "root": args.root, "classes": args.classes, "name": None,
            "resize_to": args.resize}
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        raise UserError(f"--splits names no split, got {args.splits!r} (e.g. train,val)")
    formats = {"default": args.train_format, "train": args.train_format}
    for s in splits:
        if s != "train":
            formats[s] = args.val_format
    out = check_output_file(Path(args.out or f".data/{args.layout}.tar"))
    write_pack(dcfg, splits, out, formats, args.jpeg_quality, args.max_mib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
