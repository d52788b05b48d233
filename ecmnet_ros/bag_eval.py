"""`ecmnet-bag-eval`: replay a rosbag2 (mcap or sqlite3) through the model offline.

Writes into --out:
  masks/               output bag (same storage format as --out-format) with, per input topic,
                       <camera ns>/segmentation/mask (mono8 class ids) and .../color (rgb8),
                       same header stamp/frame_id and log time as the input frame
  latency.csv          one row per frame: decode / inference / total milliseconds, GT match
  summary.json         latency p50/p90/p99/mean, fps, device, and mIoU + per-class IoU when
                       ground truth exists
  latency_hist.png, latency_timeline.png

Ground truth (class-id label images, mono8; values >= num_classes or the checkpoint's
ignore_index are ignored):
  --gt-topic T   Image topic in the same bag; matched to frames by exact header stamp
                 (--match order pairs the i-th label with the i-th frame instead)
  --gt-dir D     PNG files; --match stamp uses files named <stamp_ns>.png, --match order pairs
                 sorted file names with frames in bag order (auto: stamp if every name is a
                 number, else order)
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from ecmnet_core.utils.atomic import atomic_path, atomic_write_text, staged_directory
from ecmnet_core.cli.common import (ArgumentParser, UserError, check_output_dir, friendly_main, int_range,
                                    parse_device, parse_max_pixels, path_arg, weights_arg)
from ecmnet_core.runtime.images import DEFAULT_MAX_PIXELS, check_pixels

from . import bagio
from .engine_setup import build_engine, resolution_text
from .conversions import ConversionError, compressed_to_rgb, image_fields, image_msg_to_rgb, image_to_numpy
from .params import ConfigError, parse_resolution
from .topics import camera_topics


def build_parser():
    p = ArgumentParser(prog="ecmnet-bag-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=path_arg, help="rosbag2 directory (or .mcap / .db3 file)")
    p.add_argument("--topic", action="append", required=True, help="image topic to segment (repeatable)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", default=None, help="ground-truth label topic (mono8) in the bag")
    gt.add_argument("--gt-dir", type=path_arg, default=None, help="folder of ground-truth label PNGs")
    p.add_argument("--match", choices=("auto", "stamp", "order"), default="auto", help="how labels pair with frames")
    p.add_argument("--out", type=path_arg, required=True, help="report directory (created if missing; written only "
                                                          "when at least one frame was segmented)")
    p.add_argument("--weights", type=weights_arg, default=None, help="checkpoint .pt (default: shipped CamVid weights)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--backend", default="auto", help="SS2D backend")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--resolution", default="model", help="model, native or HxW (as the node's parameter)")
    p.add_argument("--out-format", choices=bagio.FORMATS, default="mcap", help="output bag storage (default mcap)")
    p.add_argument("--no-bag", action="store_true", help="skip writing the output bag")
    p.add_argument("--limit", type=int_range(0), default=0, help="stop after N frames (0 = all)")
    p.add_argument("--max-pixels", type=parse_max_pixels, default=DEFAULT_MAX_PIXELS,
                   help="frames with more pixels are skipped as bad frames (read from the message / jpeg-png "
                        "header before decoding); also caps --resolution; a count or an area like 4096x2048, "
                        f"0 = no limit (default {DEFAULT_MAX_PIXELS} = 4096x2048)")
    return p


class GroundTruth:
    def __init__(self, by_stamp=None, ordered=None, mode="stamp"):
        self.by_stamp = by_stamp or {}
        self.ordered = ordered or []
        self.mode = mode

    def lookup(self, stamp: int, index: int):
        if self.mode == "stamp":
            return self.by_stamp.get(stamp)
        return self.ordered[index] if index < len(self.ordered) else None


def load_gt_topic(reader, topic: str, match: str) -> GroundTruth:
    conns = bagio.require_topic(reader, topic, allowed=(bagio.IMAGE,))
    by_stamp, ordered = {}, []
    for conn, _, raw in reader.messages(connections=conns):
        msg = reader.deserialize(raw, conn.msgtype)
        try:
            lab = np.array(image_to_numpy(msg))
        except ConversionError as exc:
            raise UserError(f"ground-truth message on {topic} is unusable: {exc}") from None
        if lab.ndim != 2:
            raise UserError(f"ground-truth topic {topic} must carry single-channel labels, got {msg.encoding}")
        by_stamp[bagio.stamp_ns(msg.header)] = lab
        ordered.append(lab)
    return GroundTruth(by_stamp, ordered, "order" if match == "order" else "stamp")


def load_gt_dir(folder: Path, match: str, max_pixels=DEFAULT_MAX_PIXELS) -> GroundTruth:
    from .make_bag import read_label

    if not folder.is_dir():
        raise UserError(f"ground-truth folder not found: {folder}")
    files = sorted(f for f in folder.glob("*.png") if f.is_file())
    if not files:
        raise UserError(f"no .png label files in {folder}")
    numeric = all(f.stem.isdigit() for f in files)
    if match == "stamp" and not numeric:
        raise UserError(f"--match stamp needs label files named <stamp_ns>.png in {folder}")
    mode = "stamp" if (match == "stamp" or (match == "auto" and numeric)) else "order"
    if mode == "stamp":
        return GroundTruth(by_stamp={int(f.stem): read_label(f, max_pixels) for f in files}, mode="stamp")
    return GroundTruth(ordered=[read_label(f, max_pixels) for f in files], mode="order")


def iou_report(conf: np.ndarray, classes) -> dict:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    present = union > 0
    return {
        "miou": float(np.nanmean(iou[present])) if present.any() else None,
        "pixel_accuracy": float(inter.sum() / max(conf.sum(), 1)),
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(classes, iou)},
        "labelled_pixels": int(conf.sum()),
    }


def latency_plots(out: Path, rows) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    total = np.array([r["total_ms"] for r in ok])
    written = []
    for name, draw in (("latency_hist.png", "hist"), ("latency_timeline.png", "timeline")):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if draw == "hist":
            ax.hist(total, bins=min(50, max(5, len(total) // 2)), color="#3a7bd5")
            for q, style in ((50, "--"), (99, ":")):
                ax.axvline(np.percentile(total, q), color="k", linestyle=style, label=f"p{q} {np.percentile(total, q):.1f} ms")
            ax.set_xlabel("decode + inference latency per frame [ms]")
            ax.set_ylabel("frames")
            ax.legend()
        else:
            ax.plot([r["index"] for r in ok], total, lw=1, label="total")
            ax.plot([r["index"] for r in ok], [r["inference_ms"] for r in ok], lw=1, label="inference")
            ax.set_xlabel("frame")
            ax.set_ylabel("latency [ms]")
            ax.legend()
        ax.set_title(name.replace(".png", "").replace("_", " "))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        with atomic_path(out / name) as tmp:
            Path(tmp).write_bytes(buf.getvalue())
        written.append(name)
    return written


def make_engine(args, resolution):
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device} requested but CUDA is not available")
    engine = build_engine(args.weights, args.device, args.backend, args.precision, resolution,
                          max_pixels=args.max_pixels, limit_name="--max-pixels")
    return engine


def percentiles(values) -> dict:
    if not len(values):
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "max": float(v.max())}


class FrameWarnings:
    """Per-frame warnings on stderr, held back until a frame succeeds: a run where no frame can be
    segmented ends with one `error:` line that quotes the first reason, not a wall of warnings."""

    def __init__(self):
        self.pending, self.first, self.live, self.count = [], None, False, 0

    def warn(self, text: str, short: str = "") -> None:
        self.count += 1
        self.first = self.first or short or text
        if self.live:
            print(f"warning: {text}", file=sys.stderr)
        else:
            self.pending.append(text)

    def succeeded(self) -> None:
        if not self.live:
            self.live = True
            for text in self.pending:
                print(f"warning: {text}", file=sys.stderr)
            self.pending = []


def segment_frames(args, reader, conns, engine, gt, writer, ts, out_conns, warnings):
    """Run every frame of the chosen topics (up to --limit); returns rows, confusion, matched, warm-up ms."""
    n = engine.num_classes
    ignore = engine.metadata.get("ignore_index", 255)
    conf = np.zeros((n, n), dtype=np.int64)
    rows, matched = [], 0
    warmup_ms, warmed = 0.0, set()      # first frame of each size runs once untimed (allocation, graphs)
    all_conns = [c for cs in conns.values() for c in cs]
    per_topic_index = {t: 0 for t in args.topic}
    for index, (conn, log_time, raw) in enumerate(reader.messages(connections=all_conns)):
        if args.limit and index >= args.limit:
            break
        topic = conn.topic
        i_topic = per_topic_index[topic]
        per_topic_index[topic] += 1
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = bagio.stamp_ns(msg.header)
        row = {"index": index, "topic": topic, "stamp_ns": stamp, "decode_ms": "", "inference_ms": "",
               "total_ms": "", "gt": "", "status": "ok"}
        t0 = time.perf_counter()
        try:
            if conn.msgtype == bagio.COMPRESSED:
                rgb = compressed_to_rgb(msg, args.max_pixels, "--max-pixels", quiet=True)
            else:
                rgb = image_msg_to_rgb(msg, args.max_pixels, "--max-pixels")
        except ConversionError as exc:
            row["status"] = f"bad image: {exc}"
            rows.append(row)
            warnings.warn(f"frame {index} on {topic} skipped: {exc}", f"frame {index} on {topic}: {exc}")
            continue
        rgb = np.ascontiguousarray(rgb)
        if rgb.shape not in warmed:
            t_warm = time.perf_counter()
            engine.infer(rgb, color=writer is not None)
            warmup_ms += (time.perf_counter() - t_warm) * 1000
            warmed.add(rgb.shape)
            t0 += time.perf_counter() - t_warm
        t1 = time.perf_counter()
        res = engine.infer(rgb, color=writer is not None)
        t2 = time.perf_counter()
        row.update(decode_ms=round((t1 - t0) * 1000, 3), inference_ms=round((t2 - t1) * 1000, 3),
                   total_ms=round((t2 - t0) * 1000, 3))
        if gt is not None:
            lab = gt.lookup(stamp, i_topic)
            if lab is not None and lab.shape == res.mask.shape:
                valid = (lab != ignore) & (lab < n)
                conf += np.bincount(lab[valid].astype(np.int64) * n + res.mask[valid],
                                    minlength=n * n).reshape(n, n)
                matched += 1
                row["gt"] = "matched"
            elif lab is not None:
                row["gt"] = f"size mismatch {lab.shape} vs {res.mask.shape}"
            else:
                row["gt"] = "missing"
        if writer:
            m_conn, c_conn = out_conns[topic]
            hdr = msg.header
            writer.write(m_conn, log_time, ts.serialize_cdr(bagio.image(ts, hdr, image_fields(res.mask, "mono8")),
                                                            bagio.IMAGE))
            writer.write(c_conn, log_time, ts.serialize_cdr(bagio.image(ts, hdr, image_fields(res.color, "rgb8")),
                                                            bagio.IMAGE))
        rows.append(row)
        warnings.succeeded()
    return rows, conf, matched, warmup_ms


def no_frame_error(args, rows, warnings) -> UserError:
    topics = ", ".join(args.topic)
    if not rows:
        return UserError(f"no frame of {topics} could be segmented: the topic has no messages in {args.bag}")
    return UserError(f"no frame of {topics} could be segmented ({len(rows)} read, all bad; first: "
                     f"{warnings.first})")


@friendly_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    out = check_output_dir(args.out)
    if not args.no_bag and (out / "masks").exists():
        raise UserError(f"output bag {out / 'masks'} already exists; remove it or choose another --out")
    try:
        resolution = parse_resolution(args.resolution)
    except ConfigError as exc:
        raise UserError(str(exc).replace("parameter resolution", "--resolution")) from None
    if isinstance(resolution, tuple):
        check_pixels(*resolution, args.max_pixels, f"--resolution {args.resolution}", show_dims=False)
    reader = bagio.open_reader(args.bag)
    try:
        conns = {t: bagio.require_topic(reader, t) for t in args.topic}
        if args.gt_topic:
            gt = load_gt_topic(reader, args.gt_topic, args.match)
        elif args.gt_dir:
            gt = load_gt_dir(args.gt_dir, args.match, args.max_pixels)
        else:
            gt = None
        engine = make_engine(args, resolution)
        cams = {t: camera_topics(t) for t in args.topic}
        warnings = FrameWarnings()
        # everything is written into a staging folder that replaces nothing until the run succeeded:
        # a run that fails (or segments no frame) leaves no output bag and no partial report
        with staged_directory(out) as stage:
            with (contextlib.nullcontext((None, None)) if args.no_bag else
                  bagio.bag_writer(stage / "masks", args.out_format)) as (writer, ts):
                out_conns = {}
                if writer:
                    for t, cam in cams.items():
                        out_conns[t] = (writer.add_connection(cam.output("mask"), bagio.IMAGE, typestore=ts),
                                        writer.add_connection(cam.output("color"), bagio.IMAGE, typestore=ts))
                rows, conf, matched, warmup_ms = segment_frames(args, reader, conns, engine, gt, writer, ts,
                                                                out_conns, warnings)
                if not any(r["status"] == "ok" for r in rows):
                    raise no_frame_error(args, rows, warnings)
            summary = write_report(args, stage, out, engine, cams, rows, conf, matched, warmup_ms, gt)
    finally:
        reader.close()
    ok = summary["segmented"]
    miou = (f", mIoU {summary['miou']:.4f} over {matched} frames"
            if gt is not None and summary.get("miou") is not None else "")
    print(f"segmented {ok}/{len(rows)} frames, latency p50 {summary['latency_ms']['total']['p50']:.1f} ms "
          f"p99 {summary['latency_ms']['total']['p99']:.1f} ms on {engine.device}{miou}; report in {out}")
    return 0


def write_report(args, stage: Path, out: Path, engine, cams, rows, conf, matched, warmup_ms, gt) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(stage / "latency.csv", buf.getvalue())
    plots = latency_plots(stage, rows)
    total = [r["total_ms"] for r in ok]
    summary = {
        "bag": str(args.bag), "topics": args.topic, "frames": len(rows), "segmented": len(ok),
        "skipped": len(rows) - len(ok), "device": str(engine.device),
        "resolution": resolution_text(engine),
        "weights": args.weights or "default", "warmup_ms": round(warmup_ms, 3),
        "latency_ms": {"total": percentiles(total), "inference": percentiles([r["inference_ms"] for r in ok]),
                       "decode": percentiles([r["decode_ms"] for r in ok])},
        "fps": 1000.0 / float(np.mean(total)),
        "output_bag": None if args.no_bag else str(out / "masks"),
        "output_topics": {t: [c.output("mask"), c.output("color")] for t, c in cams.items()},
        "plots": plots, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if gt is not None:
        summary["ground_truth"] = {"source": args.gt_topic or str(args.gt_dir), "match": gt.mode,
                                   "matched_frames": matched, "ignore_index": engine.metadata.get("ignore_index", 255)}
        summary.update(iou_report(conf, engine.classes) if matched else {"miou": None})
    atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(main())
