"""Camera frames from another process into the ecmnet_segmentation node: loss and latency per
frame size, publisher QoS and Fast DDS profile (config/fastdds.xml) on either side.

Each row: a fake camera process (ecmnet_ros.fake_camera, rclpy, 30 Hz, depth 10) publishes
--frames frames on a topic of its own; the node process (`ecmnet-segment --params-file
config/segment.yaml`, random-init weights, CPU) reports on /diagnostics how many reached its
subscription callback, how many it saw missing (sequence gaps / DDS message-lost), and latency
from the camera's write to DDS reception (`transport`) and to the callback (`callback`, adds the
node's executor queueing). loss = published - received (mailbox drops are not counted).

Node configurations:
  profile     shipped YAML (qos_reliability auto, qos_depth 20) + config/fastdds.xml, as the launch file starts it
  no-profile  shipped YAML, no Fast DDS configuration (started by hand)
  depth5      shipped YAML + profile, but qos_depth 5 (the old default)
  old         the previous shipped config: qos_reliability best_effort, qos_depth 5, no profile

    python benchmarks/transport.py                      # full matrix, ~6 min on 2 cores
    python benchmarks/transport.py --quick              # 1080p rgb8 only
    python benchmarks/transport.py --nodes "" --ab-repeats 4   # only the qos_depth A/Bs (node, plain subscriber)
The host's 1-minute load average is printed per row: on a shared machine it explains outliers.
ROS_DOMAIN_ID: random in 1..200 unless ECMNET_TEST_DOMAIN is set (as in the tests).
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
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "test" / "ros"))      # ros_harness, transport_rig: the tests' DDS rig

from benchmarks.provenance import cpu_name, git_commit  # noqa: E402

NODES = {
    "profile": (True, {}),
    "no-profile": (False, {}),
    "depth5": (True, {"qos_depth": "5"}),
    "old": (False, {"qos_reliability": "best_effort", "qos_depth": "5"}),
}
CAMERAS = [("reliable", False), ("reliable", True), ("best_effort", False), ("best_effort", True)]


def plan(quick: bool):
    """[(node config, frame label, size HxW, format, camera reliability, camera profile)]."""
    frames = [("1080p rgb8", "1080x1920", "raw")]
    if not quick:
        frames = [("720p rgb8", "720x1280", "raw"), ("1080p rgb8", "1080x1920", "raw"),
                  ("2048x1024 rgb8", "1024x2048", "raw"), ("1080p jpeg", "1080x1920", "jpeg"),
                  ("1080p png", "1080x1920", "png")]
    runs = [("profile", *f, *c) for f in frames for c in CAMERAS]
    runs += [("no-profile", "1080p rgb8", "1080x1920", "raw", *c) for c in CAMERAS]
    runs += [("depth5", "1080p rgb8", "1080x1920", "raw", *c) for c in (("reliable", False), ("best_effort", True))]
    runs += [("old", "1080p rgb8", "1080x1920", "raw", *c) for c in (("reliable", False), ("best_effort", False))]
    return runs


def depth_ab(args, weights, diag, tmp: Path, run_camera, measure, NodeProcess) -> list:
    """Both node configurations up at once, camera runs alternating between them, so a drifting host
    load hits both alike: does the deeper input history keep the frames a slow repair delivers late?"""
    print(f"\nqos_depth A/B: reliable 1080p rgb8 camera without profile, node with profile, {args.ab_repeats} "
          "alternating runs each\n\n| node qos_depth | run | received / published | loss % | node-counted lost "
          "| callback p50 / p99 ms | load |\n|---|---|---|---|---|---|---|", flush=True)
    nodes, rows = {}, []
    try:
        for depth in ("20", "5"):
            topics = [f"/bench_ab_d{depth}/r{i}/image_raw" for i in range(args.ab_repeats)]
            nodes[depth] = (NodeProcess(weights, topics, profile=True, log_path=tmp / f"ab{depth}.log",
                                        params={"diagnostics_period": "0.5", "qos_depth": depth}), topics)
        for depth, (node, _) in nodes.items():
            node.wait_ready(diag)
        for i in range(args.ab_repeats):
            for depth, (_, topics) in nodes.items():
                try:
                    cam = run_camera(topics[i], "1080x1920", "raw", "reliable", profile=False, frames=args.frames,
                                     rate=args.rate)
                    r = measure(diag, topics[i], cam)
                except Exception as exc:  # noqa: BLE001
                    print(f"| {depth} | {i + 1} | failed: {exc} |", flush=True)
                    continue
                r.update(node=f"ab-depth{depth}", frame="1080p rgb8", camera_reliability="reliable",
                         camera_profile=False, load=os.getloadavg()[0])
                rows.append(r)
                print(f"| {depth} | {i + 1} | {r['received']} / {r['published']} | {r['loss_pct']:.1f} | "
                      f"{r['node_frames_lost_transport']} | {r['callback_latency_p50_ms']:.1f} / "
                      f"{r['callback_latency_p99_ms']:.1f} | {r['load']:.1f} |", flush=True)
    finally:
        for node, _ in nodes.values():
            node.stop()
    return rows


def run_subscriber(topic: str, depth: int, idle: float) -> int:
    """--subscriber role: a plain rclpy reliable subscription (no node, no worker) that counts frames and
    sequence gaps until `idle` s pass without a frame; prints one JSON line."""
    import time

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from ecmnet_ros.qos import input_qos

    rclpy.init()
    node = Node("transport_bench_subscriber")
    seen = {"received": 0, "gaps": 0, "last_seq": None, "last": None}

    def on_frame(_msg, info):
        seq = info.get("publication_sequence_number")
        if seen["last_seq"] is not None and seq is not None:
            seen["gaps"] += max(0, seq - seen["last_seq"] - 1)
        seen["last_seq"], seen["last"] = seq, time.monotonic()
        seen["received"] += 1
    node.create_subscription(Image, topic, on_frame, input_qos("reliable", depth))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (seen["last"] is None or time.monotonic() - seen["last"] < idle):
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"received": seen["received"], "gaps": seen["gaps"]}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def subscriber_ab(args, run_camera) -> list:
    """qos_depth 5 vs 20 without the node: a plain reliable subscriber process per run, alternating."""
    from transport_rig import dds_env

    print(f"\nqos_depth A/B without the node (plain rclpy subscriber process, reliable, no profile on either "
          f"side): reliable 1080p rgb8 camera, {args.ab_repeats} alternating runs each\n\n| subscriber depth | run "
          "| received / published | loss % | load |\n|---|---|---|---|---|", flush=True)
    rows = []
    for i in range(args.ab_repeats):
        for depth in (20, 5):
            topic = f"/bench_sub_d{depth}/r{i}/image_raw"
            sub = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--subscriber", topic,
                                    "--depth", str(depth)], stdout=subprocess.PIPE, text=True, env=dds_env(False))
            try:
                cam = run_camera(topic, "1080x1920", "raw", "reliable", profile=False, frames=args.frames,
                                 rate=args.rate)
                out, _ = sub.communicate(timeout=60)
                got = json.loads(out.strip().splitlines()[-1])
            except Exception as exc:  # noqa: BLE001
                sub.kill()
                print(f"| {depth} | {i + 1} | failed: {exc} |", flush=True)
                continue
            published = int(cam["published"])
            loss = 100.0 * (published - got["received"]) / published
            rows.append({"node": f"subscriber-depth{depth}", "published": published, "received": got["received"],
                         "loss_pct": loss, "load": os.getloadavg()[0]})
            print(f"| {depth} | {i + 1} | {got['received']} / {published} | {loss:.1f} | {rows[-1]['load']:.1f} |",
                  flush=True)
    return rows


def shm_cost(profile: bool) -> float:
    """MB of /dev/shm allocated for one idle rclpy process (its own segment and ports, from the files
    it maps), with Fast DDS defaults or with config/fastdds.xml."""
    import time

    from transport_rig import dds_env

    code = "import rclpy, time; rclpy.init(); n = rclpy.create_node('shm_probe'); print('up', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dds_env(profile))
    try:
        proc.stdout.readline()
        time.sleep(1.0)
        files = set()
        for line in Path(f"/proc/{proc.pid}/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1] if len(line.split(maxsplit=5)) == 6 else ""
            if path.startswith("/dev/shm/"):
                files.add(path)
        return sum(os.stat(f).st_blocks * 512 for f in files if os.path.exists(f)) / 1e6
    finally:
        proc.kill()
        proc.wait()


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=150, help="frames per row (default 150 = 5 s at 30 Hz)")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--quick", action="store_true", help="1080p rgb8 only")
    p.add_argument("--nodes", default=",".join(NODES), help=f"node configurations to run ({','.join(NODES)})")
    p.add_argument("--ab-repeats", type=int, default=3,
                   help="qos_depth 20 vs 5 A/B, in the node and in a plain subscriber process: alternating runs, "
                        "reliable 1080p camera without profile (0 skips it)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--subscriber", default=None, help=argparse.SUPPRESS)      # role used by the A/B
    p.add_argument("--depth", type=int, default=20, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.subscriber:
        return run_subscriber(args.subscriber, args.depth, idle=2.0)
    wanted = [n.strip() for n in args.nodes.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(NODES))
    if unknown or args.frames < 10 or args.rate <= 0:
        print(f"error: unknown node configuration(s) {unknown}" if unknown else
              "error: --frames must be >= 10 and --rate > 0", file=sys.stderr)
        return 2

    from ros_harness import RosHarness, isolate_ros_domain, make_tiny_checkpoint
    from transport_rig import DiagnosticsReader, NodeProcess, measure, run_camera

    domain = isolate_ros_domain()
    runs = [r for r in plan(args.quick) if r[0] in wanted]
    print(f"# transport benchmark\ndate: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
          f"commit: {git_commit()}\nhost: {cpu_name()} x{os.cpu_count()}, {platform.system()} {platform.release()}, "
          f"load average at start {os.getloadavg()[0]:.2f}\n"
          f"python {platform.python_version()}, rclpy {version('ros-rclpy')}, Fast DDS {version('ros-fastdds')}, "
          f"rmw_fastrtps_cpp {version('ros-kilted-rmw-fastrtps-cpp')}, RMW_IMPLEMENTATION="
          f"{os.environ.get('RMW_IMPLEMENTATION', 'default')}, ROS_DOMAIN_ID {domain}, "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')}\n"
          f"camera: {args.frames} frames at {args.rate:g} Hz per row, rclpy publisher depth 10; node: CPU, "
          f"random-init ECMNet at 64x96 (transport, not inference, is measured)", flush=True)
    try:
        print(f"/dev/shm allocated by one idle rclpy process: {shm_cost(False):.1f} MB with Fast DDS defaults, "
              f"{shm_cost(True):.1f} MB with config/fastdds.xml", flush=True)
    except OSError as exc:      # no /proc (not Linux)
        print(f"/dev/shm use not measured: {exc}")
    header = ("| node | frame | MB | camera QoS | camera profile | node input QoS | published | received | loss % "
              "| node-counted lost | transport p50 / p99 ms | callback p50 / p99 ms | load |")
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    rows, node_warnings = [], {}
    with tempfile.TemporaryDirectory() as tmp, RosHarness(domain) as harness:
        weights = make_tiny_checkpoint(Path(tmp) / "random_ecmnet.pt", input_size=(64, 96))
        diag = DiagnosticsReader(harness, "transport_bench_diag")
        for node_name in wanted:
            node_runs = [r for r in runs if r[0] == node_name]
            if not node_runs:
                continue
            profile, params = NODES[node_name]
            topics = [f"/bench_{node_name.replace('-', '_')}/r{i}/image_raw" + ("/compressed" if r[3] != "raw" else "")
                      for i, r in enumerate(node_runs)]
            node = NodeProcess(weights, topics, profile=profile, log_path=Path(tmp) / f"{node_name}.log",
                               params={"diagnostics_period": "0.5", **params})
            try:
                node.wait_ready(diag)
                for topic, (_, label, size, fmt, reliability, cam_profile) in zip(topics, node_runs):
                    try:
                        cam = run_camera(topic, size, fmt, reliability, profile=cam_profile, frames=args.frames,
                                         rate=args.rate)
                        r = measure(diag, topic, cam)
                    except Exception as exc:  # noqa: BLE001 - report the row, keep measuring
                        print(f"| {node_name} | {label} | | {reliability} | {'yes' if cam_profile else 'no'} | "
                              f"failed: {exc} |", flush=True)
                        continue
                    r.update(node=node_name, frame=label, camera_reliability=reliability,
                             camera_profile=cam_profile, load=os.getloadavg()[0])
                    rows.append(r)
                    print(f"| {node_name} | {label} | {r['message_bytes'] / 1e6:.2f} | {reliability} | "
                          f"{'yes' if cam_profile else 'no'} | {r['input_reliability']} | {r['published']} | "
                          f"{r['received']} | {r['loss_pct']:.1f} | {r['node_frames_lost_transport']} | "
                          f"{r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} | "
                          f"{r['callback_latency_p50_ms']:.1f} / {r['callback_latency_p99_ms']:.1f} | "
                          f"{r['load']:.1f} |", flush=True)
            finally:
                log = node.stop()
            node_warnings[node_name] = [ln for ln in log.splitlines() if "[WARN]" in ln or "[ERROR]" in ln]
        if args.ab_repeats:
            rows += depth_ab(args, weights, diag, Path(tmp), run_camera, measure, NodeProcess)
            rows += subscriber_ab(args, run_camera)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    for name, lines in node_warnings.items():
        if lines:     # what the node said about the lossy rows (transport diagnostics)
            print(f"\nnode '{name}': {len(lines)} warning/error lines, first 3:")
            for ln in lines[:3]:
                print("  " + ln[:500])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
