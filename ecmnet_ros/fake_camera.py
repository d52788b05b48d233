"""A camera driver stand-in: publishes synthetic frames at a fixed rate from its own process.

Used by the transport tests and benchmarks/transport.py, and handy to check a machine's DDS
setup before a real camera is plugged in (run it once without and once with the Fast DDS
profile, watch the node's /diagnostics `frames_lost_transport`):

    python -m ecmnet_ros.fake_camera --topic /camera/image_raw --size 1080x1920 --rate 30 --frames 300
    python -m ecmnet_ros.fake_camera --topic /camera/image_raw/compressed --format jpeg --reliability best_effort

It waits until a subscriber has matched and the topic's subscriptions have stopped changing
(a node with `qos_reliability: auto` may re-subscribe once it has seen this publisher's QoS),
then publishes `--frames` frames on an absolute 1/rate schedule, stamped with the wall clock,
and prints one JSON line: frames published, message size, achieved rate, publish() times.
Exit status 2 when no subscriber appears within --wait.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DISTINCT_FRAMES = 8      # prepared once; the loop only stamps and publishes


def _parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW like 1080x1920, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def synthetic_frames(h: int, w: int, count: int = DISTINCT_FRAMES, seed: int = 0):
    """Street-scene-like RGB frames: smooth gradients, blocks and mild sensor noise, so jpeg/png sizes are
    those of camera images (1080p jpeg at quality 95: ~0.8 MB) rather than of pure noise or flat colour.
    The frames are one image panned sideways, as a moving camera would see it."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(xx / w) * 180, (yy / h) * 200, 255 - (xx + yy) / (w + h) * 200], axis=2)
    small = rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
    blocks = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    noise = rng.normal(0, 6, (h, w, 3)).astype(np.float32)
    image = np.clip(0.55 * base + 0.45 * blocks + noise, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(np.roll(image, i * max(1, w // 64), axis=1)) for i in range(count)]


def build_messages(frames, fmt: str, frame_id: str):
    """rclpy messages for the frames: Image rgb8, or CompressedImage jpeg/png."""
    import array

    from sensor_msgs.msg import CompressedImage, Image

    msgs = []
    for rgb in frames:
        if fmt == "raw":
            h, w = rgb.shape[:2]
            msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
            msg.data = array.array("B", rgb.tobytes())
        else:
            from ecmnet_ros.conversions import encode_compressed

            msg = CompressedImage()
            msg.format, data = encode_compressed(rgb, fmt)
            msg.data = array.array("B", data)
        msg.header.frame_id = frame_id
        msgs.append(msg)
    return msgs


def wait_for_subscribers(node, pub, topic: str, settle: float, timeout: float) -> bool:
    """True once >= 1 subscription matched and the topic's subscriptions (count, QoS) have not
    changed for `settle` s."""
    deadline = time.monotonic() + timeout
    signature, since = None, time.monotonic()
    while time.monotonic() < deadline:
        subs = node.get_subscriptions_info_by_topic(topic)
        now_sig = sorted((s.node_name, int(s.qos_profile.reliability)) for s in subs)
        if now_sig != signature:
            signature, since = now_sig, time.monotonic()
        if pub.get_subscription_count() > 0 and time.monotonic() - since >= settle:
            return True
        time.sleep(0.05)
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--size", type=_parse_size, default=(1080, 1920), help="HxW (default 1080x1920)")
    p.add_argument("--format", choices=("raw", "jpeg", "png"), default=None,
                   help="raw = sensor_msgs/Image rgb8; jpeg/png = CompressedImage (default: jpeg when the "
                        "topic ends in /compressed, else raw)")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--frames", type=int, default=150, help="frames to publish (default 150)")
    p.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable",
                   help="publisher QoS (default reliable, depth 10 = rclpy's default profile)")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds the topic's subscriptions must stay unchanged before publishing")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a subscriber")
    p.add_argument("--linger", type=float, default=1.0, help="seconds to stay alive after the last frame")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.frames < 1 or args.depth < 1:
        print("error: --rate, --frames and --depth must be positive", file=sys.stderr)
        return 2
    fmt = args.format or ("jpeg" if args.topic.rstrip("/").endswith("/compressed") else "raw")

    import rclpy
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    msgs = build_messages(synthetic_frames(*args.size), fmt, "fake_camera")
    sizes = [len(m.data) for m in msgs]
    rclpy.init()
    node = Node("fake_camera")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth, durability=DurabilityPolicy.VOLATILE,
                     reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image if fmt == "raw" else CompressedImage, args.topic, qos)
    try:
        if not wait_for_subscribers(node, pub, pub.topic_name, args.settle, args.wait):
            print(f"error: no subscriber on {pub.topic_name} within {args.wait:g} s", file=sys.stderr)
            return 2
        publish_s = []
        start = time.monotonic()
        for i in range(args.frames):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = msgs[i % len(msgs)]
            msg.header.stamp = node.get_clock().now().to_msg()
            t0 = time.perf_counter()
            pub.publish(msg)
            publish_s.append(time.perf_counter() - t0)
        elapsed = time.monotonic() - start
        time.sleep(args.linger)
        ms = np.asarray(publish_s) * 1000
        print(json.dumps({
            "topic": pub.topic_name, "format": fmt, "size": f"{args.size[0]}x{args.size[1]}",
            "reliability": args.reliability, "published": args.frames,
            "message_bytes_mean": int(np.mean(sizes)), "rate_hz": round((args.frames - 1) / elapsed, 2)
            if args.frames > 1 else None, "publish_ms_p50": round(float(np.percentile(ms, 50)), 3),
            "publish_ms_max": round(float(ms.max()), 3)}), flush=True)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
