"""Image message in -> mask message out latency of the ecmnet_segmentation node over real DDS.

Three measurements per image size, closed loop (next frame only after the previous mask came
back, so the numbers are latency, not queueing):
  engine   SegmentationEngine.infer (mask + colour, as the node publishes) in this process
  echo     DDS transport + message conversion only: a second process decodes each Image and
           publishes a mono8 mask + rgb8 image of the same size, no model
  node     the real node (`python -m ecmnet_ros.segmentation_node`) in a second process
The node's overhead over the model is roughly node - engine; echo shows how much of it is DDS.

    python benchmarks/node_latency.py                       # random-init ECMNet, native resolution
    python benchmarks/node_latency.py --weights model.pt --device cuda --frames 50
Without rclpy (e.g. a GPU box without ROS) only the engine rows are measured and printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "test" / "ros"))      # ros_harness: the tests' DDS harness (Probe, RosHarness)

from benchmarks.provenance import git_commit  # noqa: E402


def parse_sizes(text):
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s]


def stats_ms(samples):
    a = np.asarray(samples, dtype=np.float64) * 1000.0
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "n": int(a.size)}


def test_image(h, w, seed=0):
    import cv2
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def device_name(device: str) -> str:
    import torch
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} (torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- engine only
def bench_engine(args, size, frames):
    from ecmnet_ros.engine_setup import build_engine
    from ecmnet_ros.params import parse_resolution

    engine = build_engine(args.weights, args.device, args.backend, args.precision, parse_resolution(args.resolution),
                          compile=args.compile)
    img = test_image(*size)
    for _ in range(args.warmup):
        engine.infer(img, color=True)
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        engine.infer(img, color=True)
        times.append(time.perf_counter() - t0)
    from ecmnet_ros.engine_setup import backend_name
    return stats_ms(times), f"{engine.device}, backend {backend_name(engine)}"


# ---------------------------------------------------------------- echo server (DDS only)
def run_echo():
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ecmnet_ros.conversions import image_msg_to_rgb, numpy_to_image_msg

    rclpy.init()
    node = Node("ecmnet_echo")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_mask = node.create_publisher(Image, "/bench/segmentation/mask", qos)
    pub_color = node.create_publisher(Image, "/bench/segmentation/color", qos)

    def on_image(msg):
        rgb = np.ascontiguousarray(image_msg_to_rgb(msg))
        pub_mask.publish(numpy_to_image_msg(np.zeros(rgb.shape[:2], np.uint8), "mono8", msg.header))
        pub_color.publish(numpy_to_image_msg(rgb, "rgb8", msg.header))
    node.create_subscription(Image, "/bench/image_raw", on_image, qos)
    try:
        rclpy.spin(node)
    except Exception:  # noqa: BLE001 - SIGINT / shutdown
        pass
    return 0


# ---------------------------------------------------------------- DDS round trips
def round_trips(harness, size, frames, warmup, timeout, role):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from ros_harness import Probe, image_msg

    probe = Probe(harness, f"bench_probe_{size[0]}x{size[1]}_{time.monotonic_ns()}", depth=5)
    probe.watch("/bench/segmentation/mask", Image)
    latest = [{}]

    def on_diag(_, arr):
        for st in arr.status:
            if st.name.endswith("/bench/image_raw"):
                latest[0] = {kv.key: kv.value for kv in st.values}      # swapped atomically
    probe.watch("/diagnostics", DiagnosticArray, on_message=on_diag)
    processed_before = 0
    if role == "node":
        if not probe.wait_for(lambda: "frames_processed" in latest[0], timeout):
            raise RuntimeError("no /diagnostics from the node")
        processed_before = int(latest[0]["frames_processed"])
    pub = probe.publisher("/bench/image_raw", Image)
    if not probe.wait_matched("/bench/image_raw", timeout):
        raise RuntimeError("the node/echo process never subscribed to /bench/image_raw")
    img = test_image(*size)
    times = []
    for i in range(warmup + frames):
        msg = image_msg(img, "rgb8", "bench", 1000 + i)
        got = lambda sec=1000 + i: any(m.header.stamp.sec == sec for m in probe.received["/bench/segmentation/mask"])
        t0 = time.perf_counter()
        pub.publish(msg)
        if not probe.wait_for(got, timeout):
            # a lost first sample right after discovery: publish again, do not count it
            if i < warmup and probe.publish_until("/bench/image_raw", msg, got, period=1.0, timeout=timeout):
                continue
            raise RuntimeError(f"no mask for frame {i} at {size} within {timeout} s")
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        probe.received["/bench/segmentation/mask"].clear()
    result = stats_ms(times)
    if role == "node":
        # the node's own view of the same frames (its latency window holds exactly the last
        # `frames` samples): model time and receive -> publish time inside the node process
        target = processed_before + warmup + frames
        if probe.wait_for(lambda: int(latest[0].get("frames_processed", "0")) >= target, timeout):
            diag = latest[0]
            result["node_inference_p50"] = float(diag["inference_p50_ms"])
            result["node_internal_p50"] = float(diag["latency_p50_ms"])
            result["node_internal_p99"] = float(diag["latency_p99_ms"])
    harness.remove(probe.node)
    return result


def spawn(cmd, env):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def stop(proc):
    from ros_harness import stop_process
    return stop_process(proc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="360x480,1024x1024,1024x2048")
    p.add_argument("--frames", type=int, default=0, help="timed frames per size (default 30 on CUDA, 8 on CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--weights", default=None, help="checkpoint; default: random-init ECMNet (same speed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--compile", action="store_true", help="node parameter compile:=true (torch.compile, CUDA)")
    p.add_argument("--resolution", default="native", help="node resolution parameter (default native)")
    p.add_argument("--only", choices=("all", "engine", "dds"), default="all",
                   help="engine: skip DDS rows; dds: only the echo + node rows")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--json", type=Path, default=None, help="also write results as JSON here")
    p.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo:
        return run_echo()

    import torch
    sizes = parse_sizes(args.sizes)
    on_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    frames = max(10, args.frames or (30 if on_cuda else 10))     # >= the node's minimum latency_window
    tmp = tempfile.TemporaryDirectory()
    if args.weights is None:
        from ros_harness import make_tiny_checkpoint
        args.weights = str(make_tiny_checkpoint(Path(tmp.name) / "random_ecmnet.pt", input_size=(360, 480)))
        weights_label = "random-init ECMNet (11 classes)"
    else:
        weights_label = args.weights
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dev = device_name(args.device)
    print(f"# node latency benchmark\ndate: {date}\ncommit: {git_commit()}\ndevice: {dev}\nweights: {weights_label}, resolution "
          f"{args.resolution}, backend {args.backend}, precision {args.precision}{', compile' if args.compile else ''}, frames/size {frames} "
          f"(+{args.warmup} warm-up)", flush=True)
    results = {"date": date, "device": dev, "weights": weights_label, "resolution": args.resolution,
               "precision": args.precision, "frames": frames, "sizes": {}}
    for size in sizes:
        results["sizes"][f"{size[0]}x{size[1]}"] = {}
        if args.only == "dds":
            continue
        eng, engine_device = bench_engine(args, size, frames)
        results["sizes"][f"{size[0]}x{size[1]}"] = {"engine": eng}
        print(f"engine {size[0]}x{size[1]}: p50 {eng['p50']:.2f} ms  p99 {eng['p99']:.2f} ms  ({engine_device})",
              flush=True)
    ros_error = None
    transport = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT")
    results["fastdds_builtin_transports"] = transport
    print(f"rmw: {os.environ.get('RMW_IMPLEMENTATION', 'default')}, FASTDDS_BUILTIN_TRANSPORTS={transport}")
    if args.only != "engine":
        try:
            import rclpy  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            ros_error = f"rclpy not importable here ({type(exc).__name__}: {exc})"
    else:
        ros_error = "skipped (--only engine)"
    if ros_error is None:
        from ros_harness import RosHarness, isolate_ros_domain
        isolate_ros_domain()
        env = os.environ.copy()
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        with RosHarness() as harness:
            for role in ("echo", "node"):
                if role == "echo":
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--echo"]
                else:
                    cmd = [sys.executable, "-m", "ecmnet_ros.segmentation_node", "--ros-args",
                           "-p", f"weights:={args.weights}", "-p", f"device:={args.device}",
                           "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}",
                           "-p", f"resolution:={args.resolution}", "-p", "input_topics:=[/bench/image_raw]",
                           "-p", f"compile:={'true' if args.compile else 'false'}",
                           "-p", "qos_reliability:=reliable", "-p", "camera_info_passthrough:=false",
                           "-p", "publish_color:=true", "-p", f"latency_window:={frames}",
                           "-p", "diagnostics_period:=0.2"]
                proc = spawn(cmd, env)
                try:
                    for size in sizes:
                        rt = round_trips(harness, size, frames, args.warmup, args.timeout, role)
                        results["sizes"][f"{size[0]}x{size[1]}"][role] = rt
                        extra = (f"  (inside the node: inference p50 {rt['node_inference_p50']:.2f} ms, receive->publish "
                                 f"p50 {rt['node_internal_p50']:.2f} / p99 {rt['node_internal_p99']:.2f} ms)"
                                 if "node_inference_p50" in rt else "")
                        print(f"{role} {size[0]}x{size[1]}: p50 {rt['p50']:.2f} ms  p99 {rt['p99']:.2f} ms{extra}", flush=True)
                except Exception as exc:  # noqa: BLE001 - report and keep the engine numbers
                    out = stop(proc)
                    print(f"{role} failed: {exc}\n{out[-3000:]}", flush=True)
                    results[f"{role}_error"] = str(exc)
                    continue
                stop(proc)
    else:
        results["dds"] = ros_error
        print(f"DDS rows not measured: {ros_error}")
    print("\n| image | engine p50 / p99 [ms] | DDS echo round trip p50 / p99 [ms] | node round trip p50 / p99 [ms] "
          "| in node: inference p50 [ms] | in node: receive->publish p50 [ms] | round trip - in-node inference p50 [ms] |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["sizes"].items():
        def cell(key):
            return f"{r[key]['p50']:.1f} / {r[key]['p99']:.1f}" if key in r else "n/a"
        node = r.get("node", {})
        inf = f"{node['node_inference_p50']:.1f}" if "node_inference_p50" in node else "n/a"
        internal = f"{node['node_internal_p50']:.1f}" if "node_internal_p50" in node else "n/a"
        over = f"{node['p50'] - node['node_inference_p50']:.1f}" if "node_inference_p50" in node else "n/a"
        print(f"| {name} | {cell('engine')} | {cell('echo')} | {cell('node')} | {inf} | {internal} | {over} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
