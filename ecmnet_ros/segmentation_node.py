"""`ecmnet_segmentation` ROS 2 node: camera images in, class-id / colour / overlay /
confidence masks out, latest frame wins.

Threading: subscription callbacks only drop the message into a one-slot-per-camera
mailbox (cheap, never blocks the executor); a single worker thread decodes, runs the
model (batching cameras whose frames wait at the same time) and publishes.  A slow model
therefore drops frames instead of queueing them, and every drop is counted on /diagnostics.

Run:  ecmnet-segment --ros-args --params-file config/segment.yaml [-p weights:=model.pt]
Help: ecmnet-segment --help   (lists every parameter; see also docs/ros.md)
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Dict, List, Optional

import rclpy
from rclpy.exceptions import ParameterException, NameValidationException
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from . import conversions
from .conversions import ConversionError
from .engine_setup import backend_name, build_engine, resolution_text
from .mailbox import LatestFrameMailbox
from .params import PARAMETERS, ConfigError, validate
from .stats import CameraStats, ErrorThrottle
from .topics import CameraTopics, camera_topics

NODE_NAME = "ecmnet_segmentation"
_IGNORED_OVERRIDES = {"use_sim_time", "start_type_description_service", "start_parameter_event_publisher"}


def _descriptor(p) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.range is not None:
        if isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]),
                                                         step=0.0)]
        else:
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=0)]
    return d


class SegmentationNode(Node):
    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._running = False
        self._worker = None
        try:
            self._setup()
        except BaseException:
            super().destroy_node()
            raise

    def _setup(self):
        self.cfg = self._read_parameters()
        self.engine = self._make_engine()
        self.cameras: List[CameraTopics] = [camera_topics(t, p) for t, p in
                                            zip(self.cfg.input_topics, self.cfg.output_prefixes)]
        prefixes = [c.prefix for c in self.cameras]
        if len(set(prefixes)) != len(prefixes):
            raise ConfigError(f"cameras would publish to the same output namespace {prefixes}; "
                              "set output_prefixes (one per input topic)")
        self.mailbox = LatestFrameMailbox(range(len(self.cameras)))
        self.stats = [CameraStats(self.cfg.latency_window) for _ in self.cameras]
        self.throttle = ErrorThrottle(self.cfg.error_log_period)
        self._camera_info: Dict[int, CameraInfo] = {}
        self._overlay_alpha = float(self.cfg.overlay_alpha)
        self._last_diag = [(0, 0) for _ in self.cameras]       # (errors, processed) at last report
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.cfg.warmup:
            self._warmup()
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name="ecmnet-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"segmenting {', '.join(c.input for c in self.cameras)} on {self.engine.device} "
            f"(backend {self.backend_name}, {self.cfg.precision}, resolution {self._resolution_text()}); "
            f"outputs under {', '.join(prefixes)}")

    # ---------------------------------------------------------------- setup
    def _read_parameters(self):
        values = {}
        for p in PARAMETERS:
            try:
                values[p.name] = self.declare_parameter(p.name, p.default, _descriptor(p)).value
            except ParameterException as exc:
                raise ConfigError(f"parameter {p.name}: {exc}") from None
        overrides = set(getattr(self, "_parameter_overrides", {}) or {})
        unknown = sorted(n for n in overrides - set(values) - _IGNORED_OVERRIDES if not n.startswith("qos_overrides"))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (typo?); known: "
                                      f"{', '.join(values)}")
        return validate(values)

    def _make_engine(self):
        import torch

        device, precision = self.cfg.device, self.cfg.precision
        if device.startswith("cuda") and not torch.cuda.is_available():
            if not self.cfg.allow_cpu_fallback:
                raise ConfigError(f"device {device} requested but CUDA is not available "
                                  "(set allow_cpu_fallback:=true to run on CPU)")
            self.get_logger().warning(f"device {device} requested but CUDA is not available: running on CPU")
            device = "cpu"
        on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        if precision != "fp32" and on_cpu:
            self.get_logger().warning(f"precision {precision} needs CUDA: using fp32 on CPU")
            precision = "fp32"
        compile_ = bool(self.cfg.compile)
        if compile_ and on_cpu:
            self.get_logger().warning("compile needs CUDA: running uncompiled on CPU")
            compile_ = False
        if compile_ and self.cfg.resolution == "native":
            self.get_logger().warning("compile with resolution 'native': the first frame of every new image "
                                      "size compiles for ~2 min; set resolution to the camera size (HxW)")
        engine = build_engine(self.cfg.weights, device, self.cfg.backend, precision, self.cfg.resolution,
                              compile=compile_, max_pixels=self.cfg.max_input_pixels)
        self.backend_name = backend_name(engine)
        return engine

    def _resolution_text(self) -> str:
        return resolution_text(self.engine)

    def _create_interfaces(self):
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.qos_depth,
                             reliability=ReliabilityPolicy.BEST_EFFORT if self.cfg.qos_reliability == "best_effort"
                             else ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.output_qos_depth,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.pubs: List[Dict[str, object]] = []
        self.subs = []
        self.input_subs = []
        try:
            for i, cam in enumerate(self.cameras):
                msg_type = CompressedImage if cam.compressed else Image
                sub = self.create_subscription(msg_type, cam.input, lambda m, i=i: self._on_image(i, m), sub_qos)
                self.input_subs.append(sub)
                self.subs.append(sub)
                if self.cfg.camera_info_passthrough:
                    self.subs.append(self.create_subscription(CameraInfo, cam.camera_info,
                                                              lambda m, i=i: self._camera_info.__setitem__(i, m),
                                                              sub_qos))
                pubs = {"mask": self.create_publisher(Image, cam.output("mask"), pub_qos)}
                if self.cfg.publish_color:
                    pubs["color"] = self.create_publisher(Image, cam.output("color"), pub_qos)
                if self.cfg.publish_overlay:
                    pubs["overlay"] = self.create_publisher(Image, cam.output("overlay"), pub_qos)
                if self.cfg.publish_confidence:
                    pubs["confidence"] = self.create_publisher(Image, cam.output("confidence"), pub_qos)
                if self.cfg.camera_info_passthrough:
                    pubs["camera_info"] = self.create_publisher(CameraInfo, cam.output("camera_info"), pub_qos)
                self.pubs.append(pubs)
        except NameValidationException as exc:
            raise ConfigError(f"invalid topic name: {exc}") from None
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.class_info_pub = self.create_publisher(String, "~/class_info", latched)
        self.class_info_pub.publish(String(data=json.dumps(self.class_info())))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)

    def class_info(self) -> dict:
        meta = self.engine.metadata
        return {
            "classes": self.engine.classes, "colors": self.engine.colors,
            "ignore_index": meta.get("ignore_index"), "num_classes": self.engine.num_classes,
            "dataset": meta.get("dataset"), "weights": self.cfg.weights or "default",
            "resolution": self._resolution_text(), "mask_encoding": "mono8 (class id per pixel)",
            "confidence_encoding": self.cfg.confidence_encoding,
            "cameras": [{"input": self.resolve_topic_name(c.input),
                         **{k: self.resolve_topic_name(c.output(k)) for k in self.pubs[i]}}
                        for i, c in enumerate(self.cameras)],
        }

    def _warmup(self):
        import numpy as np

        h, w = self.engine.input_size or (64, 64)
        try:
            self.engine.infer_batch([np.zeros((h, w, 3), np.uint8)], confidence=self.cfg.publish_confidence,
                                    color=self.cfg.publish_color)
        except Exception as exc:  # noqa: BLE001 - surface as a start-up error with context
            raise ConfigError(f"warm-up inference failed on {self.engine.device}: {type(exc).__name__}: {exc}") from None

    def _on_set_parameters(self, params):
        for p in params:
            if p.name == "overlay_alpha":
                if not 0.0 <= float(p.value) <= 1.0:
                    return SetParametersResult(successful=False, reason="overlay_alpha must be in [0, 1]")
                self._overlay_alpha = float(p.value)
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- data path
    def _on_image(self, camera: int, msg) -> None:
        self.stats[camera].last_input = time.monotonic()
        self.mailbox.put(camera, msg)

    def _report(self, camera: int, kind: str, message: str, bad_frame: bool = True) -> None:
        """Log a problem (throttled per camera and kind); count it as a bad frame unless it is not one."""
        if bad_frame:
            self.stats[camera].error(message)
        suppressed = self.throttle.should_log((camera, kind))
        if suppressed is not None:
            extra = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            self.get_logger().error(f"[{self.cameras[camera].input}] {kind}: {message}{extra}")

    def _decode(self, camera: int, msg):
        limit = self.cfg.max_input_pixels          # checked from the header, before any decoding
        if self.cameras[camera].compressed:
            return conversions.compressed_to_rgb(msg, limit)
        return conversions.image_msg_to_rgb(msg, limit)

    def _worker_loop(self) -> None:
        while self._running:
            items = self.mailbox.take_all(timeout=0.2)
            if not items:
                continue
            frames = []
            for cam, msg, t_recv in items:
                try:
                    frames.append((cam, msg, t_recv, self._decode(cam, msg)))
                except ConversionError as exc:
                    self._report(cam, "bad image", str(exc))
                except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
                    self._report(cam, "bad image", f"{type(exc).__name__}: {exc}")
            groups: Dict[object, list] = {}
            for f in frames:
                key = f[3].shape if self.cfg.batch_cameras else id(f)
                groups.setdefault(key, []).append(f)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, group) -> None:
        t0 = time.monotonic()
        try:
            results = self.engine.infer_batch([f[3] for f in group], confidence=self.cfg.publish_confidence,
                                              color=self.cfg.publish_color or self.cfg.publish_overlay)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA OOM on a huge frame: log, keep serving
            for cam, *_ in group:
                self._report(cam, "inference failed", f"{type(exc).__name__}: {exc}")
            return
        t_inf = time.monotonic() - t0
        for (cam, msg, t_recv, rgb), res in zip(group, results):
            try:
                self._publish(cam, msg.header, rgb, res)
            except Exception as exc:  # noqa: BLE001
                if not self._running or not rclpy.ok(context=self.context):
                    return
                self._report(cam, "publish failed", f"{type(exc).__name__}: {exc}")
                continue
            done = time.monotonic()
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            age = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9 if stamp_ns else None
            self.stats[cam].record(done - t_recv, t_inf, age)

    def _publish(self, cam: int, header, rgb, res) -> None:
        from ecmnet_core.runtime.postprocess import overlay

        pubs = self.pubs[cam]
        pubs["mask"].publish(conversions.numpy_to_image_msg(res.mask, "mono8", header))
        if "color" in pubs:
            pubs["color"].publish(conversions.numpy_to_image_msg(res.color, "rgb8", header))
        if "overlay" in pubs:
            blend = overlay(rgb, res.color, self._overlay_alpha)
            pubs["overlay"].publish(conversions.numpy_to_image_msg(blend, "rgb8", header))
        if "confidence" in pubs:
            enc = self.cfg.confidence_encoding
            pubs["confidence"].publish(conversions.numpy_to_image_msg(
                conversions.confidence_to_array(res.confidence, enc), enc, header))
        info = self._camera_info.get(cam)
        if info is not None and "camera_info" in pubs:
            if (info.height, info.width) not in ((0, 0), tuple(res.mask.shape)):
                self._report(cam, "camera_info", f"CameraInfo is {info.width}x{info.height} but the image is "
                                                 f"{res.mask.shape[1]}x{res.mask.shape[0]}; republishing anyway")
            info.header = header
            pubs["camera_info"].publish(info)

    # ---------------------------------------------------------------- diagnostics
    def _check_graph(self, cam: int) -> Optional[str]:
        topic = self.input_subs[cam].topic_name
        expected = "sensor_msgs/msg/CompressedImage" if self.cameras[cam].compressed else "sensor_msgs/msg/Image"
        publishers = self.get_publishers_info_by_topic(topic)
        wrong = sorted({p.topic_type for p in publishers if p.topic_type != expected})
        if wrong:
            return f"topic {topic} carries {', '.join(wrong)}, this node expects {expected}"
        if not publishers:
            return f"no publisher on {topic}"
        return None

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        for i, cam in enumerate(self.cameras):
            snap = self.stats[i].snapshot(self.mailbox.received[i])
            level, message = DiagnosticStatus.OK, "ok"
            last_input = self.stats[i].last_input
            if last_input is None or now - last_input > self.cfg.stale_input_timeout:
                level = DiagnosticStatus.WARN
                graph = self._check_graph(i)
                message = f"no input for {self.cfg.stale_input_timeout:g} s" + (f": {graph}" if graph else "")
                if graph and "carries" in graph:
                    # a misconfigured graph, not a bad frame: ERROR on every tick until the publisher is fixed
                    level = DiagnosticStatus.ERROR
                    self._report(i, "topic type", graph, bad_frame=False)
            errors_before, processed_before = self._last_diag[i]
            if snap["errors"] > errors_before and level != DiagnosticStatus.ERROR:
                level = DiagnosticStatus.ERROR if snap["processed"] == processed_before else DiagnosticStatus.WARN
                message = f"{snap['errors'] - errors_before} bad frame(s): {snap['last_error']}"
            self._last_diag[i] = (snap["errors"], snap["processed"])
            values = {
                "input_topic": self.input_subs[i].topic_name,
                "device": str(self.engine.device), "backend": str(self.backend_name),
                "resolution": self._resolution_text(),
                "input_fps": f"{snap['input_fps']:.2f}", "output_fps": f"{snap['output_fps']:.2f}",
                "latency_p50_ms": f"{snap['latency_p50_ms']:.2f}", "latency_p99_ms": f"{snap['latency_p99_ms']:.2f}",
                "inference_p50_ms": f"{snap['inference_p50_ms']:.2f}",
                "stamp_age_p50_ms": f"{snap['stamp_age_p50_ms']:.2f}",
                "frames_received": str(self.mailbox.received[i]), "frames_processed": str(snap["processed"]),
                "frames_dropped": str(self.mailbox.dropped[i]), "errors": str(snap["errors"]),
                "last_error": snap["last_error"],
            }
            arr.status.append(DiagnosticStatus(
                level=level, name=f"{self.get_fully_qualified_name()}: {cam.input}", message=message,
                hardware_id=str(self.engine.device),
                values=[KeyValue(key=k, value=v) for k, v in values.items()]))
        self.diag_pub.publish(arr)

    # ---------------------------------------------------------------- shutdown
    def destroy_node(self):
        self._running = False
        if getattr(self, "mailbox", None) is not None:
            self.mailbox.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        return super().destroy_node()


def parameters_help() -> str:
    lines = ["parameters (set with --ros-args -p name:=value or --params-file config/segment.yaml):"]
    for p in PARAMETERS:
        rng = f" [{p.range[0]}..{p.range[1]}]" if p.range else ""
        lines.append(f"  {p.name} (default {p.default!r}){rng}: {p.description}")
    return "\n".join(lines)


def _rcl_message(exc) -> str:
    """First line of an rcl error without the C source locations (', at /project/src/...')."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text.split(", at /")[0].replace("Failed to parse ROS arguments: ", "")


def main(args=None) -> int:
    from rclpy.executors import ExternalShutdownException
    from rclpy.utilities import remove_ros_args

    from ecmnet_core.runtime.checkpoint import CheckpointError

    argv = list(sys.argv if args is None else args)
    try:
        extra = remove_ros_args(args=argv)[1:]
    except Exception as exc:  # noqa: BLE001 - e.g. unreadable --params-file
        print(f"error: invalid ROS arguments: {_rcl_message(exc)}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in extra):
        print(__doc__.strip() + "\n\n" + parameters_help())
        return 0
    if extra:
        print(f"error: unexpected arguments {extra}; pass parameters after --ros-args "
              "(e.g. --ros-args -p weights:=model.pt --params-file config/segment.yaml)", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=argv)
    except Exception as exc:  # noqa: BLE001 - e.g. unreadable --params-file
        print(f"error: cannot start ROS 2: {_rcl_message(exc)}", file=sys.stderr)
        return 2
    node = None
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        hint = " (node: --ros-args -p weights:=model.pt)" if "no default weights" in str(exc) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
