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
import os
import sys
import threading
import time
from typing import Dict, List

import rclpy
from rclpy.exceptions import ParameterException, NameValidationException
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from . import conversions
from .camera_input import CameraInput
from .conversions import ConversionError
from .engine_setup import backend_name, build_engine, release_cached_memory, resolution_text
from .label_info import UNLABELED, apply_threshold, label_info_msg, vision_msgs_types
from .mailbox import LatestFrameMailbox
from .params import PARAM_NAMES, PARAMETERS, ConfigError, validate
from .qos import input_qos, loaded_profile
from .stats import CameraStats, ErrorThrottle
from .topics import CameraTopics, camera_topics
from .transport_health import ERROR, diagnose

NODE_NAME = "ecmnet_segmentation"
_IGNORED_OVERRIDES = {"use_sim_time", "start_type_description_service", "start_parameter_event_publisher"}
_START_UP_PARAMETERS = {p.name for p in PARAMETERS if p.read_only}
WORKER_JOIN_TIMEOUT_S = 30.0     # launch sends SIGKILL 10 s after its SIGINT anyway
_vision_msgs_missing_logged = False


def _descriptor(p, writable: bool = False) -> ParameterDescriptor:
    """`writable`: the lifecycle node lets start-up parameters change while unconfigured (they
    apply at the next configure); _on_set_parameters refuses them once configured."""
    d = ParameterDescriptor(description=p.description, read_only=p.read_only and not writable)
    if p.range is not None:
        if isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]),
                                                         step=0.0)]
        else:
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=0)]
    return d


class SegmentationNode(Node):
    """Configured and active from construction on. `lifecycle_node.SegmentationLifecycleNode` runs
    the same steps from lifecycle transitions: _configure (parameters, engine, warm-up) ->
    _activate (topics, worker) -> _deactivate -> _cleanup (engine freed)."""

    MANAGED = False     # True: parameters stay writable while unconfigured, transitions drive the steps

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._running = False
        self._worker = None
        self.cfg = None
        self.engine = None
        self.subs, self.input_subs, self.pubs = [], [], []
        self.class_info_pub = self.diag_pub = self.diag_timer = None
        try:
            self._declare_parameters()
            self.add_on_set_parameters_callback(self._on_set_parameters)
            if not self.MANAGED:
                self._configure()
                self._activate()
        except BaseException:
            self._release()
            super().destroy_node()
            raise

    def _configure(self):
        """Read parameters, load and warm up the engine (no topics yet)."""
        weights = self.get_parameter("weights").value or "the shipped CamVid weights"
        started = time.monotonic()
        self.cfg = self._read_parameters()
        self.engine = self._make_engine()
        # after the load, not before: a refused start-up prints only its one error line
        self.get_logger().info(f"loaded {weights} on {self.engine.device} in {time.monotonic() - started:.1f} s")
        self.cameras: List[CameraTopics] = [camera_topics(t, p) for t, p in
                                            zip(self.cfg.input_topics, self.cfg.output_prefixes)]
        prefixes = [c.prefix for c in self.cameras]
        if len(set(prefixes)) != len(prefixes):
            raise ConfigError(f"cameras would publish to the same output namespace {prefixes}; "
                              "set output_prefixes (one per input topic)")
        if self.cfg.confidence_threshold > 0 and self.engine.num_classes > UNLABELED:
            raise ConfigError(f"confidence_threshold marks pixels with class id {UNLABELED}, but the model has "
                              f"{self.engine.num_classes} classes")
        self.throttle = ErrorThrottle(self.cfg.error_log_period)
        self._camera_info: Dict[int, CameraInfo] = {}
        self._overlay_alpha = float(self.cfg.overlay_alpha)
        self._fastdds_profile = loaded_profile() or "none (Fast DDS defaults)"
        import torch                               # loaded by the engine already
        self._cpu_threading = {"cpu_threads": str(torch.get_num_threads()),    # fixed once torch has loaded
                               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "default"}
        self.get_logger().debug(f"parameters: {self.cfg.values}")
        if self.cfg.warmup:
            self._warmup()

    def _activate(self):
        """Create the topics and start the inference worker."""
        self.mailbox = LatestFrameMailbox(range(len(self.cameras)))
        self.stats = [CameraStats(self.cfg.latency_window) for _ in self.cameras]
        self._last_diag = [(0, 0) for _ in self.cameras]       # (errors, processed) at last report
        self._create_interfaces()
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name="ecmnet-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"segmenting {', '.join(c.input for c in self.cameras)} on {self.engine.device} "
            f"(backend {self.backend_name}, {self.cfg.precision}, resolution {self._resolution_text()}); "
            f"outputs under {', '.join(c.prefix for c in self.cameras)}")

    def _deactivate(self):
        """Stop the worker (waits for the frame in flight) and remove every topic; the engine stays."""
        self._stop_worker()
        self._destroy_interfaces()

    def _cleanup(self):
        """Drop the engine and give its memory back (the CUDA cache too)."""
        self.engine = None
        self.cfg = None
        release_cached_memory()

    def _release(self):
        """Whatever state the node is in: stop work, remove topics, free the engine."""
        self._deactivate()
        self._cleanup()

    # ---------------------------------------------------------------- setup
    def _declare_parameters(self):
        for p in PARAMETERS:
            try:
                self.declare_parameter(p.name, p.default, _descriptor(p, writable=self.MANAGED))
            except ParameterException as exc:
                raise ConfigError(f"parameter {p.name}: {exc}") from None
        overrides = set(getattr(self, "_parameter_overrides", {}) or {})
        unknown = sorted(n for n in overrides - set(PARAM_NAMES) - _IGNORED_OVERRIDES
                         if not n.startswith("qos_overrides"))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (typo?); known: "
                                      f"{', '.join(PARAM_NAMES)}")

    def _read_parameters(self):
        return validate({p.name: self.get_parameter(p.name).value for p in PARAMETERS})

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
        # after the load (a refused start prints only its error line), before the warm-up compiles
        if compile_ and engine.runtime == "aoti":        # the engine ignores compile for a .pt2
            self.get_logger().info("compile: not needed, the .pt2 package is compiled already")
        elif compile_:
            self.get_logger().info("compile: torch.compile runs now and at every start (minutes); to pay it "
                                   "once, make a package with ecmnet-export --aoti model.pt2 --device cuda "
                                   "and set weights:=model.pt2 (docs/deployment.md)")
        self.backend_name = backend_name(engine)
        return engine

    def _resolution_text(self) -> str:
        return resolution_text(self.engine)

    def autostart(self) -> None:
        """Called by run_node before spinning. Nothing here: a plain node serves from its start (the
        lifecycle node configures and activates itself when its autostart parameter says so)."""

    def _create_interfaces(self):
        # camera_info is small: best effort (matches every publisher) unless a reliability is forced
        info_qos = input_qos("best_effort" if self.cfg.qos_reliability == "auto" else self.cfg.qos_reliability,
                             self.cfg.qos_depth)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.output_qos_depth,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.pubs: List[Dict[str, object]] = []
        self.subs = []
        self.input_subs = []
        try:
            for i, cam in enumerate(self.cameras):
                msg_type = CompressedImage if cam.compressed else Image
                expected = "sensor_msgs/msg/CompressedImage" if cam.compressed else "sensor_msgs/msg/Image"
                cam_input = CameraInput(self, msg_type, cam.input, lambda m, i=i: self._on_image(i, m),
                                        self.cfg.qos_reliability, self.cfg.qos_depth, expected,
                                        self.cfg.latency_window)
                self.input_subs.append(cam_input)
                if self.cfg.camera_info_passthrough:
                    self.subs.append(self.create_subscription(CameraInfo, cam.camera_info,
                                                              lambda m, i=i: self._camera_info.__setitem__(i, m),
                                                              info_qos))
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
        self._create_label_info_publishers(latched)
        self.class_info_pub = self.create_publisher(String, "~/class_info", latched)
        self.class_info_pub.publish(String(data=json.dumps(self.class_info())))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)

    def _create_label_info_publishers(self, latched: QoSProfile) -> None:
        """vision_msgs/LabelInfo on <prefix>/label_info per camera (see label_info.py); without
        vision_msgs the node says so once per process and carries on (~/class_info still has the names)."""
        global _vision_msgs_missing_logged
        types = vision_msgs_types()
        if types is None:
            if not _vision_msgs_missing_logged:
                _vision_msgs_missing_logged = True
                self.get_logger().warning("vision_msgs is not installed: no <prefix>/label_info (vision_msgs/LabelInfo); "
                                          "class names are only on ~/class_info (JSON)")
            return
        msg = label_info_msg(types, self.engine.classes, self.cfg.confidence_threshold,
                             stamp=self.get_clock().now().to_msg())
        for i, cam in enumerate(self.cameras):
            pub = self.create_publisher(types[0], cam.output("label_info"), latched)
            self.pubs[i]["label_info"] = pub
            pub.publish(msg)

    def class_info(self) -> dict:
        meta = self.engine.metadata
        return {
            "classes": self.engine.classes, "colors": self.engine.colors,
            "unlabeled_id": UNLABELED if self.cfg.confidence_threshold > 0 else None,
            "confidence_threshold": self.cfg.confidence_threshold,
            "ignore_index": meta.get("ignore_index"), "num_classes": self.engine.num_classes,
            "dataset": meta.get("dataset"), "weights": self.cfg.weights or "default",
            "resolution": self._resolution_text(), "mask_encoding": "mono8 (class id per pixel)",
            "confidence_encoding": self.cfg.confidence_encoding,
            "cameras": [{"input": self.resolve_topic_name(c.input),
                         **{k: self.resolve_topic_name(c.output(k)) for k in self.pubs[i]}}
                        for i, c in enumerate(self.cameras)],
        }

    def _wants_confidence(self) -> bool:
        return bool(self.cfg.publish_confidence or self.cfg.confidence_threshold > 0)

    def _warmup(self):
        import numpy as np

        h, w = self.engine.input_size or (64, 64)
        try:
            self.engine.infer_batch([np.zeros((h, w, 3), np.uint8)], confidence=self._wants_confidence(),
                                    color=self.cfg.publish_color)
        except Exception as exc:  # noqa: BLE001 - surface as a start-up error with context
            raise ConfigError(f"warm-up inference failed on {self.engine.device}: {type(exc).__name__}: {exc}") from None

    def _on_set_parameters(self, params):
        for p in params:
            if self.cfg is not None and p.name in _START_UP_PARAMETERS:
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read when the node is configured; change it while unconfigured "
                    "(ros2 lifecycle set <node> cleanup), then configure again"))
            if p.name == "overlay_alpha":
                if not 0.0 <= float(p.value) <= 1.0:
                    return SetParametersResult(successful=False, reason="overlay_alpha must be in [0, 1]")
                self._overlay_alpha = float(p.value)
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- data path
    def _on_image(self, camera: int, msg) -> None:
        self.stats[camera].last_input = time.monotonic()
        self.mailbox.put(camera, msg)

    def _report(self, camera: int, kind: str, message: str, bad_frame: bool = True, warn: bool = False) -> None:
        """Log a problem (throttled per camera and kind); count it as a bad frame unless it is not one."""
        if bad_frame:
            self.stats[camera].error(message)
        suppressed = self.throttle.should_log((camera, kind))
        if suppressed is not None:
            extra = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            text = f"[{self.cameras[camera].input}] {kind}: {message}{extra}"
            if warn:      # one call site per severity: rclpy refuses a severity change at one call site
                self.get_logger().warning(text)
            else:
                self.get_logger().error(text)

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
            results = self.engine.infer_batch([f[3] for f in group], confidence=self._wants_confidence(),
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
        mask, color = apply_threshold(res.mask, res.confidence, self.cfg.confidence_threshold, res.color)
        pubs["mask"].publish(conversions.numpy_to_image_msg(mask, "mono8", header))
        if "color" in pubs:
            pubs["color"].publish(conversions.numpy_to_image_msg(color, "rgb8", header))
        if "overlay" in pubs:
            blend = overlay(rgb, color, self._overlay_alpha)
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
    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        for i, cam in enumerate(self.cameras):
            snap = self.stats[i].snapshot(self.mailbox.received[i])
            # no input / QoS mismatch / transport loss, with the likely cause (ecmnet_ros.transport_health)
            health, message, kind = diagnose(self.input_subs[i].facts(self.cfg.stale_input_timeout))
            if kind:
                self._report(i, kind, message, bad_frame=False, warn=health < ERROR)
            level = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)[health]
            errors_before, processed_before = self._last_diag[i]
            if snap["errors"] > errors_before and level != DiagnosticStatus.ERROR:
                level = DiagnosticStatus.ERROR if snap["processed"] == processed_before else DiagnosticStatus.WARN
                message = f"{snap['errors'] - errors_before} bad frame(s): {snap['last_error']}"
            self._last_diag[i] = (snap["errors"], snap["processed"])
            values = {
                "input_topic": self.input_subs[i].topic,
                "device": str(self.engine.device), "backend": str(self.backend_name),
                "resolution": self._resolution_text(),
                "input_fps": f"{snap['input_fps']:.2f}", "output_fps": f"{snap['output_fps']:.2f}",
                "latency_p50_ms": f"{snap['latency_p50_ms']:.2f}", "latency_p99_ms": f"{snap['latency_p99_ms']:.2f}",
                "inference_p50_ms": f"{snap['inference_p50_ms']:.2f}",
                "stamp_age_p50_ms": f"{snap['stamp_age_p50_ms']:.2f}",
                "frames_received": str(self.mailbox.received[i]), "frames_processed": str(snap["processed"]),
                "frames_dropped": str(self.mailbox.dropped[i]), "errors": str(snap["errors"]),
                "last_error": snap["last_error"],
                **self.input_subs[i].totals(), "fastdds_profile": self._fastdds_profile,
                **self._cpu_threading,
            }
            arr.status.append(DiagnosticStatus(
                level=level, name=f"{self.get_fully_qualified_name()}: {cam.input}", message=message,
                hardware_id=str(self.engine.device),
                values=[KeyValue(key=k, value=v) for k, v in values.items()]))
        self.diag_pub.publish(arr)

    # ---------------------------------------------------------------- shutdown
    def _stop_worker(self):
        self._running = False
        if getattr(self, "mailbox", None) is not None:
            self.mailbox.close()
        worker, self._worker = self._worker, None
        if worker is not None and worker.is_alive():
            worker.join(timeout=WORKER_JOIN_TIMEOUT_S)
            if worker.is_alive():
                print(f"warning: {self.get_name()}: the inference in flight did not finish within "
                      f"{WORKER_JOIN_TIMEOUT_S:g} s; not waiting for it", file=sys.stderr)

    def _destroy_interfaces(self):
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        for sub in self.subs:
            self.destroy_subscription(sub)
        for pub in [p for pubs in self.pubs for p in pubs.values()] + [self.class_info_pub, self.diag_pub]:
            if pub is not None:
                self.destroy_publisher(pub)
        self.subs, self.input_subs, self.pubs = [], [], []
        self.class_info_pub = self.diag_pub = self.diag_timer = None

    def destroy_node(self):
        self._release()
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
    return run_node(SegmentationNode, args)


def run_node(node_class, args=None) -> int:
    """Parse the command line, run `node_class` until Ctrl-C / SIGTERM and exit 0; start-up
    errors print one `error: ...` line and return 2. See shutdown.py for the signal handling."""
    from ecmnet_core.utils.openmp import prefer_passive_wait

    from .shutdown import ShutdownRequested, ShutdownSignals

    prefer_passive_wait()                        # before torch loads: CPU inference beside other processes
    signals = ShutdownSignals().install()        # before rclpy.init(): rclpy chains to these
    try:
        return _run_node(node_class, args, signals)
    except ShutdownRequested:                    # the first signal came in a gap of the start-up
        return 0
    finally:
        signals.ignore_until_exit()


def _run_node(node_class, args, signals) -> int:
    from rclpy.executors import ExternalShutdownException
    from rclpy.utilities import remove_ros_args

    from ecmnet_core.runtime.checkpoint import CheckpointError

    from .shutdown import ShutdownRequested, spin_until_shutdown

    argv = list(sys.argv if args is None else args)
    try:
        extra = remove_ros_args(args=argv)[1:]
    except Exception as exc:  # noqa: BLE001 - e.g. unreadable --params-file
        print(f"error: invalid ROS arguments: {_rcl_message(exc)}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in extra):
        doc = sys.modules[node_class.__module__].__doc__ or __doc__
        print(doc.strip() + "\n\n" + parameters_help())
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
        with signals.interruptible():
            node = node_class()
            node.autostart()
        spin_until_shutdown(node, signals)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        if not signals.requested:
            hint = " (node: --ros-args -p weights:=model.pt)" if "no default weights" in str(exc) else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
            return 2
    except (ShutdownRequested, ExternalShutdownException, KeyboardInterrupt):
        pass
    except Exception:
        # A signal shuts the rcl context down from rclpy's own handler; start-up calls that were
        # running then fail with RCLError before our handler could raise. Not an error then.
        if not signals.requested:
            raise
    finally:
        signals.cleanup_started()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
