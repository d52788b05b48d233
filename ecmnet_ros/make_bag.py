"""`ecmnet-make-bag`: build a rosbag2 (mcap or sqlite3) from an image folder, optionally with
ground-truth label images, to replay through the node or evaluate with `ecmnet-bag-eval`.

Frames are written in sorted file-name order, stamped start + i / rate.  Labels (single-channel
PNGs of class ids, e.g. CamVid `valannot/`) are matched by file stem and written as mono8 on
--label-topic with the same header stamp as their image.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ecmnet_core.cli.common import (ArgumentParser, UserError, check_output_dir, float_range, friendly_main,
                                    int_range, parse_max_pixels, path_arg)
from ecmnet_core.runtime.images import DEFAULT_MAX_PIXELS, list_images, read_image, read_rgb

from . import bagio
from .conversions import encode_compressed, image_fields
from .topics import full_topic_name

# builtin_interfaces/Time.sec is an int32: the last frame's stamp must fit
MAX_STAMP_S = 2**31 - 1


def find_label(label_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.png", f"{stem}_L.png", f"{stem}_labelIds.png", f"{stem}_label.png"):
        if (label_dir / name).is_file():
            return label_dir / name
    raise UserError(f"no label for image {stem} in {label_dir} (tried {stem}.png, {stem}_L.png, ...)")


def read_label(path: Path, max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    lab = read_image(path, cv2.IMREAD_UNCHANGED, max_pixels)
    if lab.ndim != 2 or lab.dtype != np.uint8:
        raise UserError(f"label {path} must be a single-channel 8-bit image of class ids, "
                        f"got shape {lab.shape} dtype {lab.dtype}")
    return lab


def topic_arg(text: str) -> str:
    """argparse type: a ROS 2 topic name (relative names resolve to /name, as ros2 bag record does)."""
    try:
        return full_topic_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser():
    p = ArgumentParser(prog="ecmnet-make-bag", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_dir", type=path_arg, help="folder of images (png/jpg/...)")
    p.add_argument("--out", type=path_arg, required=True, help="output bag directory (must not exist)")
    p.add_argument("--label-dir", type=path_arg, default=None, help="folder of label PNGs matched by file stem")
    p.add_argument("--format", choices=bagio.FORMATS, default="mcap", help="storage plugin (default mcap)")
    p.add_argument("--rate", type=float_range(0, 1e6, lo_open=True), default=10.0,
                   help="frame rate for stamps in Hz (default 10)")
    p.add_argument("--topic", type=topic_arg, default="/camera/image_raw",
                   help="image topic (a /compressed suffix writes sensor_msgs/CompressedImage)")
    p.add_argument("--label-topic", type=topic_arg, default="/camera/labels", help="ground-truth topic (mono8)")
    p.add_argument("--compression", choices=("jpeg", "png"), default="jpeg",
                   help="codec when --topic ends in /compressed (default jpeg)")
    p.add_argument("--frame-id", default="camera", help="header.frame_id (default camera)")
    p.add_argument("--start", type=float_range(0, MAX_STAMP_S), default=1_700_000_000.0,
                   help="stamp of the first frame, seconds since the epoch")
    p.add_argument("--limit", type=int_range(0), default=0, help="use only the first N images (0 = all)")
    p.add_argument("--max-pixels", type=parse_max_pixels, default=DEFAULT_MAX_PIXELS,
                   help="refuse images and labels with more pixels (checked in the file header before "
                        f"decoding); a count or an area like 4096x2048, 0 = no limit (default {DEFAULT_MAX_PIXELS})")
    return p


@friendly_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.image_dir.is_dir():
        raise UserError(f"image folder not found: {args.image_dir}")
    if args.out.exists():
        raise UserError(f"output bag {args.out} already exists; remove it or choose another path")
    check_output_dir(args.out)
    files = list_images(args.image_dir)
    if args.limit > 0:
        files = files[: args.limit]
    if args.label_dir is not None and not args.label_dir.is_dir():
        raise UserError(f"label folder not found: {args.label_dir}")
    labels = [find_label(args.label_dir, f.stem) for f in files] if args.label_dir else None
    if labels and args.label_topic == args.topic:
        raise UserError(f"--label-topic and --topic are both {args.topic}; labels need their own topic")
    compressed = args.topic.endswith("/compressed")
    start_ns = int(round(args.start * 1e9))
    period_ns = int(round(1e9 / args.rate))
    last_s = (start_ns + (len(files) - 1) * period_ns) / 1e9
    if last_s > MAX_STAMP_S:
        raise UserError(f"the last frame's stamp ({last_s:.0f} s) does not fit a ROS time (int32 seconds); "
                        "lower --start or raise --rate")
    with bagio.bag_writer(args.out, args.format) as (writer, ts):
        img_conn = writer.add_connection(args.topic, bagio.COMPRESSED if compressed else bagio.IMAGE, typestore=ts)
        lab_conn = writer.add_connection(args.label_topic, bagio.IMAGE, typestore=ts) if labels else None
        for i, path in enumerate(files):
            t = start_ns + i * period_ns
            hdr = bagio.header(ts, t, args.frame_id)
            rgb = read_rgb(path, args.max_pixels)
            if compressed:
                fmt, data = encode_compressed(rgb, args.compression)
                msg, kind = bagio.compressed(ts, hdr, fmt, data), bagio.COMPRESSED
            else:
                msg, kind = bagio.image(ts, hdr, image_fields(rgb, "rgb8")), bagio.IMAGE
            writer.write(img_conn, t, ts.serialize_cdr(msg, kind))
            if labels:
                lab = read_label(labels[i], args.max_pixels)
                if lab.shape != rgb.shape[:2]:
                    raise UserError(f"label {labels[i]} is {lab.shape[1]}x{lab.shape[0]} but image {path} is "
                                    f"{rgb.shape[1]}x{rgb.shape[0]}")
                lmsg = bagio.image(ts, hdr, image_fields(lab, "mono8"))
                writer.write(lab_conn, t, ts.serialize_cdr(lmsg, bagio.IMAGE))
    extra = f" + {len(files)} labels on {args.label_topic}" if labels else ""
    print(f"wrote {len(files)} frames on {args.topic}{extra} to {args.out} ({args.format}, {args.rate:g} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
