"""Helpers to drive the node over real DDS from tests and benchmarks.

`RosHarness` owns an isolated rclpy context spun on a background thread; `Probe` is a
plain node that publishes images and records whatever arrives on the topics it watches.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np


def stop_process(proc) -> str:
    """SIGINT a node process (rclpy shuts down cleanly), kill it after 30 s; return its output."""
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def isolate_ros_domain(seed: Optional[int] = None) -> int:
    """Pick a random ROS_DOMAIN_ID in 1..200 (once per process) and keep discovery on localhost."""
    if "ECMNET_TEST_DOMAIN" not in os.environ:
        rng = random.Random(seed if seed is not None else (os.getpid() ^ time.time_ns()))
        os.environ["ECMNET_TEST_DOMAIN"] = str(rng.randint(1, 200))
    os.environ["ROS_DOMAIN_ID"] = os.environ["ECMNET_TEST_DOMAIN"]
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return int(os.environ["ROS_DOMAIN_ID"])


def make_tiny_checkpoint(path, input_size=(64, 96), num_classes: int = 11, seed: int = 0) -> Path:
    """Random-init ECMNet with CamVid class names, small input_size so CPU inference is fast."""
    import torch

    from ecmnet_core.checkpoint import make_metadata, save_checkpoint
    from ecmnet_core.model import ECMNet
    from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS

    torch.manual_seed(seed)
    model = ECMNet(num_classes=num_classes).eval()
    names = CAMVID_CLASSES if num_classes == 11 else None
    colors = CAMVID_COLORS if num_classes == 11 else None
    return save_checkpoint(path, model, make_metadata(num_classes, names, colors, ignore_index=num_classes,
                                                      input_size=input_size, dataset="random-init"))


def stamp(sec: int, nanosec: int = 0):
    from builtin_interfaces.msg import Time

    return Time(sec=int(sec), nanosec=int(nanosec))


def image_msg(arr: np.ndarray, encoding: str, frame_id: str = "camera", sec: int = 1, nanosec: int = 0):
    from ecmnet_ros.conversions import numpy_to_image_msg

    msg = numpy_to_image_msg(arr, encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp(sec, nanosec)
    return msg


class RosHarness:
    """An rclpy context + executor thread; nodes added here spin until close()."""

    def __init__(self, domain_id: Optional[int] = None):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.domain_id = isolate_ros_domain() if domain_id is None else domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, Exception):  # noqa: BLE001 - shutting down
            pass

    def add(self, node):
        self.executor.add_node(node)
        return node

    def remove(self, node):
        self.executor.remove_node(node)
        node.destroy_node()

    def close(self):
        import rclpy

        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown(timeout_sec=5)
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Probe:
    """Publishes test images and records received messages per topic (thread-safe)."""

    def __init__(self, harness: RosHarness, name: str = "ecmnet_probe", reliable: bool = True, depth: int = 10):
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.node = harness.add(Node(name, context=harness.context))
        self.qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                              reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                              durability=DurabilityPolicy.VOLATILE)
        self.received: Dict[str, List] = defaultdict(list)
        self._cond = threading.Condition()
        self._pubs = {}
        self._subs = []

    def publisher(self, topic: str, msg_type):
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_type, topic, self.qos)
        return self._pubs[topic]

    def watch(self, topic: str, msg_type, qos=None, on_message: Optional[Callable] = None):
        def callback(msg, topic=topic):
            if on_message is not None:
                on_message(topic, msg)
            with self._cond:
                self.received[topic].append(msg)
                self._cond.notify_all()
        self._subs.append(self.node.create_subscription(msg_type, topic, callback, qos or self.qos))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def count(self, topic: str) -> int:
        return len(self.received[topic])

    def wait_matched(self, topic: str, timeout: float = 30.0) -> bool:
        """Wait until the publisher on `topic` sees a subscriber (discovery done)."""
        pub = self._pubs[topic]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pub.get_subscription_count() > 0:
                return True
            time.sleep(0.05)
        return False

    def publish_until(self, topic: str, msg, done: Callable[[], bool], period: float = 0.25,
                      timeout: float = 30.0) -> bool:
        """Re-publish `msg` until `done()` (best-effort inputs may lose the first sample)."""
        deadline = time.monotonic() + timeout
        pub = self._pubs[topic]
        while time.monotonic() < deadline:
            pub.publish(msg)
            if self.wait_for(done, period):
                return True
        return done()
