"""Helpers to drive the node over real DDS from tests and benchmarks.

`RosHarness` owns an isolated rclpy context whose nodes spin on background threads; `Probe` is a
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


def poll_until(predicate: Callable[[], bool], timeout: float = 30.0, period: float = 0.05) -> bool:
    """True as soon as predicate() holds, polled every `period` s; its last value after `timeout` s
    (for state no callback signals, e.g. the graph's publisher counts)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


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

    from ecmnet_core.runtime.checkpoint import make_metadata, save_checkpoint
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
    """An rclpy context whose nodes each spin on a thread of their own until removed or close().

    Why one executor per node: rclpy does not support destroying entities while an executor
    that holds them spins (ros2/rclpy#1284, #1355: the spin thread dies with InvalidHandle and
    every node on it goes silent). remove() first stops the node's own spin thread, then
    destroys the node, so no executor ever sees a destroyed entity. Each node gets a
    SingleThreadedExecutor, as under `rclpy.spin(node)` in production. An exception escaping a
    callback is recorded and raised by close() instead of silently stopping the spin.
    """

    SPIN_PERIOD_S = 0.05      # how often a spin thread checks its stop flag when idle

    def __init__(self, domain_id: Optional[int] = None):
        import rclpy

        self.domain_id = isolate_ros_domain() if domain_id is None else domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self._spinners: Dict[object, tuple] = {}
        self._lock = threading.Lock()
        self.errors: List[str] = []

    def _spin(self, executor, stop: threading.Event, name: str) -> None:
        from rclpy.executors import ExternalShutdownException, ShutdownException

        while not stop.is_set() and self.context.ok():
            try:
                executor.spin_once(timeout_sec=self.SPIN_PERIOD_S)
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception as exc:  # noqa: BLE001 - record, keep the node serving
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def add(self, node):
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        stop = threading.Event()
        thread = threading.Thread(target=self._spin, args=(executor, stop, node.get_name()), daemon=True,
                                  name=f"spin {node.get_name()}")
        with self._lock:
            self._spinners[node] = (executor, thread, stop)
        thread.start()
        return node

    def get_nodes(self) -> list:
        with self._lock:
            return list(self._spinners)

    def remove(self, node):
        """Stop the node's spin thread, then destroy the node."""
        with self._lock:
            executor, thread, stop = self._spinners.pop(node)
        stop.set()
        thread.join(timeout=30)
        if thread.is_alive():
            self.errors.append(f"{node.get_name()}: spin thread did not stop within 30 s")
        else:
            executor.shutdown(timeout_sec=5)
        node.destroy_node()

    def close(self):
        import rclpy

        for node in self.get_nodes():
            self.remove(node)
        rclpy.try_shutdown(context=self.context)
        if self.errors:
            raise RuntimeError("errors while spinning: " + "; ".join(self.errors))

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


# ------------------------------------------------------------------ real ROS 2 CLI processes
SHARED_ROS2_EXTRA = Path(__file__).resolve().parents[2].parent / "shared" / "ros2-extra"
CLEAN_EXIT_FORBIDDEN = ("Traceback", "KeyboardInterrupt", "terminate called", "process has died",
                        "exit code", "Segmentation fault", "core dumped", "XMLPARSER Error")


def require_ros2_cli():
    """Skip when the launch / ros2cli stack is not installed and cannot be (no ../shared/ros2-extra);
    fail when the wheels are there but were not installed, so CI never skips these silently."""
    import importlib.util

    import pytest

    missing = [m for m in ("launch", "launch_ros", "ros2cli", "ros2launch", "ros2lifecycle", "vision_msgs",
                           "lifecycle_msgs") if importlib.util.find_spec(m) is None]
    if missing and SHARED_ROS2_EXTRA.is_dir():
        pytest.fail(f"{missing} not installed although {SHARED_ROS2_EXTRA} exists: run scripts/setup_env.sh")
    if missing:
        pytest.skip(f"needs the ROS 2 launch/CLI stack ({', '.join(missing)})")


def ros2_env(prefixes=(), **extra) -> Dict[str, str]:
    """Environment for `ros2 ...` child processes: this venv as an ament prefix (after `prefixes`),
    the test's DDS domain on localhost, unbuffered Python output."""
    import sys

    isolate_ros_domain()
    env = dict(os.environ)
    venv = sys.prefix
    current = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(dict.fromkeys([*map(str, prefixes), venv, *current]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A child started in its own process group (as a terminal starts `ros2 launch`), its merged
    stdout/stderr collected line by line so a test can wait for a line while it runs."""

    def __init__(self, cmd, env=None, cwd=None):
        import subprocess

        self.cmd = [str(c) for c in cmd]
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float = 120.0, start: int = 0) -> Optional[int]:
        """Index of the first line from `start` on containing `needle` (None on timeout / exit)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(remaining, 0.5))

    def signal_group(self, sig) -> None:
        """Like Ctrl-C in a terminal: the signal goes to every process of the group."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 60.0) -> Optional[int]:
        import subprocess

        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=10)
        return rc

    def kill(self) -> None:
        """Last resort for a test that failed half-way: SIGKILL the whole group."""
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._reader.join(timeout=10)


def child_pids(output: str, name: str) -> List[int]:
    """PIDs launch reported for process `name` ('[INFO] [name-1]: process started with pid [N]')."""
    import re

    return [int(m) for m in re.findall(rf"\[{re.escape(name)}-\d+\]: process started with pid \[(\d+)\]", output)]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False
