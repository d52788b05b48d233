"""Node and camera in separate processes, each with a chosen Fast DDS environment, and the node's
/diagnostics read from a third participant: the transport tests and benchmarks/transport.py.

A frame counts as lost in transport when the camera published it and the node's subscription
callback never saw it (`frames_received` on /diagnostics vs the camera's count); frames the
one-slot mailbox later replaces are not transport loss.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ecmnet_ros.qos import PROFILE_ENV_VARS

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "config" / "fastdds.xml"
PARAMS_FILE = REPO / "config" / "segment.yaml"
# variables that change Fast DDS's transports or QoS: removed unless a run sets them on purpose
_TRANSPORT_VARS = PROFILE_ENV_VARS + ("FASTDDS_BUILTIN_TRANSPORTS", "RMW_FASTRTPS_USE_QOS_FROM_XML",
                                      "RMW_FASTRTPS_PUBLICATION_MODE", "SKIP_DEFAULT_XML_FILE")


def dds_env(profile: bool) -> Dict[str, str]:
    """This process's environment (domain id, discovery range) with Fast DDS at its defaults, or
    with config/fastdds.xml loaded through FASTDDS_DEFAULT_PROFILES_FILE."""
    env = {k: v for k, v in os.environ.items() if k not in _TRANSPORT_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return env


class DiagnosticsReader:
    """Keeps the newest /diagnostics status per input topic (and every level/message seen)."""

    def __init__(self, harness, name: str = "transport_diag_reader"):
        from diagnostic_msgs.msg import DiagnosticArray

        from ros_harness import Probe

        self._lock = threading.Condition()
        self.latest: Dict[str, tuple] = {}
        self.history: Dict[str, List[tuple]] = {}
        self.probe = Probe(harness, name)
        self.probe.watch("/diagnostics", DiagnosticArray, on_message=self._on_diag)

    def _on_diag(self, _topic, arr) -> None:
        with self._lock:
            for st in arr.status:
                topic = st.name.rsplit(": ", 1)[-1]
                entry = (st.level[0] if isinstance(st.level, bytes) else int(st.level), st.message,
                         {kv.key: kv.value for kv in st.values}, time.monotonic())
                self.latest[topic] = entry
                self.history.setdefault(topic, []).append(entry)
            self._lock.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    def values(self, topic: str) -> Dict[str, str]:
        with self._lock:
            return dict(self.latest[topic][2]) if topic in self.latest else {}


class NodeProcess:
    """`ecmnet-segment --params-file config/segment.yaml` (the shipped defaults) in its own process;
    only weights, device, input topics and the given overrides change."""

    def __init__(self, weights, topics: Iterable[str], profile: bool, log_path: Path,
                 params: Optional[Dict[str, str]] = None):
        self.topics = list(topics)
        self.profile = profile
        self.log_path = Path(log_path)
        overrides = {"weights": str(weights), "device": "cpu",
                     "input_topics": "[" + ",".join(self.topics) + "]", **(params or {})}
        script = Path(sys.executable).parent / "ecmnet-segment"
        exe = [str(script)] if script.exists() else [sys.executable, "-m", "ecmnet_ros.segmentation_node"]
        self.cmd = exe + ["--ros-args", "--params-file", str(PARAMS_FILE)]
        for k, v in overrides.items():
            self.cmd += ["-p", f"{k}:={v}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, text=True,
                                     env=dds_env(profile))

    def wait_ready(self, diag: DiagnosticsReader, timeout: float = 180.0) -> None:
        """Until the node publishes diagnostics for every input topic."""
        if not diag.wait(lambda: all(t in diag.latest for t in self.topics) or self.proc.poll() is not None,
                         timeout) or self.proc.poll() is not None:
            raise RuntimeError(f"node did not come up; its log:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> str:
        from ros_harness import stop_process

        stop_process(self.proc)
        self._log.close()
        return self.log_path.read_text()


def run_camera(topic: str, size: str = "1080x1920", fmt: Optional[str] = None, reliability: str = "reliable",
               profile: bool = False, frames: int = 120, rate: float = 30.0, timeout: float = 180.0) -> dict:
    """ecmnet_ros.fake_camera in its own process; its JSON summary (raises with its stderr on failure)."""
    cmd = [sys.executable, "-m", "ecmnet_ros.fake_camera", "--topic", topic, "--size", size, "--reliability",
           reliability, "--frames", str(frames), "--rate", str(rate), "--linger", "0.5"]
    if fmt:
        cmd += ["--format", fmt]
    done = subprocess.run(cmd, env=dds_env(profile), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"fake camera failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def settled_counts(diag: DiagnosticsReader, topic: str, ticks: int = 2, timeout: float = 30.0) -> Dict[str, str]:
    """The node's values for `topic` once frames_received stayed the same for `ticks` new messages
    (frames still in flight or being repaired when the camera stopped are counted)."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    seen = len(diag.history.get(topic, []))
    while time.monotonic() < deadline and same < ticks:
        if not diag.wait(lambda: len(diag.history.get(topic, [])) > seen, max(0.0, deadline - time.monotonic())):
            break
        seen = len(diag.history[topic])
        received = diag.values(topic).get("frames_received")
        same = same + 1 if received == last else 0
        last = received
    return diag.values(topic)


def measure(diag: DiagnosticsReader, topic: str, camera: dict) -> dict:
    """Transport loss and latency of one camera run, from the camera's count and the node's diagnostics.
    Each run must use a topic of its own (the node's counters are per topic and cumulative)."""
    v = settled_counts(diag, topic)
    received = int(v.get("frames_received", "0"))
    published = int(camera["published"])
    lost = published - received
    return {"published": published, "received": received, "lost": lost,
            "loss_pct": 100.0 * lost / published if published else float("nan"),
            "node_frames_lost_transport": int(v.get("frames_lost_transport", "0")),
            "node_dds_samples_lost": int(v.get("dds_samples_lost", "0")),
            "input_reliability": v.get("input_reliability", "?"),
            "latency_p50_ms": float(v.get("transport_latency_p50_ms", "nan")),
            "latency_p99_ms": float(v.get("transport_latency_p99_ms", "nan")),
            "callback_latency_p50_ms": float(v.get("callback_latency_p50_ms", "nan")),
            "callback_latency_p99_ms": float(v.get("callback_latency_p99_ms", "nan")),
            "message_bytes": camera.get("message_bytes_mean"), "camera_rate_hz": camera.get("rate_hz"),
            "publish_ms_p50": camera.get("publish_ms_p50")}
